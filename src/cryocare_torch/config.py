"""One typed configuration shared by the CLI, config files (YAML/JSON) and the Python API.

Every field has its one default, bounds and a description. ``cryocare config`` prints the whole tree (defaults,
or a file with ``--set`` overrides applied); ``--config FILE`` and ``--set section.key=value`` reach every field.
The sections of ``prepare`` (motion, CTF) are in :mod:`.config_prepare`, those of evaluation, SLURM and live
mode in :mod:`.config_runs`; this module re-exports them. The CLI expands the motion, evaluation, SLURM and
watch models into their flags, so those flags' ``--help`` text and defaults are the models' (checked by
tests/test_config_cli.py). The CTF flags (``cli/prepare_options.py``) and the common training/prediction flags
(``cli/options.py``: ``--max-minutes``, ``--memory-budget``, ``--threads``...) are still written by hand and
mapped onto their sections, because several of them set fields of two sections or have other names.
Checkpoints embed ``model_dump()`` of the configuration they were trained with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from .config_prepare import CtfConfig, DeconvConfig, MotionConfig
from .config_runs import EvalConfig, SlurmConfig, WatchConfig
from .config_runs import Section as _Section
from .errors import ConfigError

Precision = Literal["auto", "fp32", "bf16", "fp16"]
DeviceName = str  # "auto", "cpu", "cuda", "cuda:1", ...


class ModelConfig(_Section):
    """U-Net architecture (cryo-CARE: depth 2, 3x3(x3) kernels, linear last layer)."""

    depth: int = Field(2, ge=1, le=5, description="Number of down-sampling levels of the U-Net.")
    n_first: int = Field(16, ge=4, le=128, description="Feature channels at the first level (doubled per level).")
    kernel_size: int = Field(3, ge=3, le=7, description="Convolution kernel size (odd).")
    residual: bool = Field(
        False,
        description=(
            "Add the input to the network output (learn a correction). Off by default: at cryo-ET SNR (~0.05 per "
            "voxel) a residual net starts at the identity and spends its budget unlearning the noise; on the "
            "simulator a non-residual net reached 29.8 dB in 5 CPU-minutes vs 27.6 dB for a residual one in 15."
        ),
    )
    gaussian_skip: bool = Field(
        True,
        description=(
            "Add a Gaussian-smoothed copy of the input to the network output (ignored with residual). The widths are "
            "chosen before training as those whose smoothing of one half best predicts the other (the Noise2Noise "
            "loss, no clean data needed), and the U-Net's last layer starts at zero: an untrained model is already "
            "that self-tuned Gaussian filter and training learns what a linear filter cannot. On the simulator: "
            "+1.3 dB over the plain U-Net at the same 300 CPU steps."
        ),
    )
    skip_sigma: tuple[float, ...] | None = Field(
        None,
        description="Widths in voxels ((z, y, x) or (y, x)) of the Gaussian skip; None: estimated from the data.",
    )
    norm: Literal["none", "batch", "group"] = Field("none", description="Normalisation layer after each conv.")
    activation: Literal["relu", "leaky_relu"] = Field("relu", description="Activation after each conv.")

    @model_validator(mode="after")
    def _odd_kernel(self) -> ModelConfig:
        if self.kernel_size % 2 == 0:
            raise ValueError("kernel_size must be odd")
        if self.skip_sigma is not None and (
            len(self.skip_sigma) not in (2, 3) or not all(0.0 <= v <= 16.0 for v in self.skip_sigma)
        ):
            raise ValueError("skip_sigma must be 2 or 3 widths between 0 and 16 voxels")
        return self


class PatchConfig(_Section):
    """Random sub-volume (3D) or sub-image (2D) pairs extracted from the even/odd halves."""

    patch_size: int | None = Field(
        None,
        ge=16,
        le=512,
        description=(
            "Edge length of a patch in voxels. Default: 128 in 2D; in 3D 64 on a GPU (the paper's setting) and 32 on "
            "a CPU, where the time budget binds: in a fixed CPU budget 32^3 patches give ~8x more optimisation "
            "steps and restored far better (bench/RESULTS.md); in the missing-wedge mode 48 on a CPU (the wedge is "
            "filled from context: 48^3 patches scored better against the object in the same budget, "
            "bench/RESULTS.md)."
        ),
    )
    n_patches: int | None = Field(
        None, ge=8, description="Patch pairs per tomogram/image pair (default 1200 in 3D, 1000 in 2D)."
    )
    val_fraction: float = Field(
        0.1, ge=0.0, lt=0.5, description="Fraction of patches held out for validation, from a separate region."
    )
    mask: Path | None = Field(None, description="Optional MRC mask: patches are centred where mask > 0.")
    augment: bool = Field(
        True,
        description="Random half swaps and flips that keep an (asymmetric) missing wedge: y, and z with x "
        "together (the 180-degree rotation about the tilt axis y); 2D data: y and x.",
    )
    cache_gb: float = Field(
        2.0,
        ge=0,
        description="Host memory for a float16 copy of the extracted patch pairs; when they need more, "
        "patches are read from the (memory-mapped) inputs for every batch instead.",
    )

    def resolved_patch_size(self, ndim: int, device_type: str = "cuda", *, missing_wedge: bool = False) -> int:
        if self.patch_size is not None:
            return self.patch_size
        if ndim == 2:
            return 128
        return 64 if device_type == "cuda" else (48 if missing_wedge else 32)

    def resolved_n_patches(self, ndim: int) -> int:
        return self.n_patches if self.n_patches is not None else (1200 if ndim == 3 else 1000)


class TrainConfig(_Section):
    """Noise2Noise training (MSE between the network output on one half and the other half)."""

    epochs: int = Field(100, ge=1, le=100000, description="Maximum number of epochs.")
    batch_size: int = Field(8, ge=1, le=1024, description="Patch pairs per optimisation step.")
    steps_per_epoch: int | None = Field(
        None, ge=1, description="Optimisation steps per epoch (default: one pass over the training patches)."
    )
    learning_rate: float = Field(4e-4, gt=0, le=1.0, description="Initial Adam learning rate.")
    lr_schedule: Literal["cosine", "plateau", "constant"] = Field(
        "cosine", description="Learning-rate schedule (cosine decays over the epoch or time budget)."
    )
    max_minutes: float | None = Field(
        None, gt=0, description="Wall-time budget for training in minutes; training stops cleanly when reached."
    )
    seed: int = Field(0, ge=0, description="Random seed (patches, initialisation, augmentation).")
    precision: Precision = Field(
        "auto", description="auto: bf16 on CPUs with bf16 support and on GPUs, else fp32."
    )
    device: DeviceName = Field("auto", description="auto, cpu, cuda or cuda:N.")
    num_threads: int | None = Field(None, ge=1, description="CPU threads for torch (default: all cores).")
    checkpoint_every_minutes: float = Field(
        5.0, gt=0, description="Write the resumable 'last' checkpoint at least this often."
    )
    compile: bool = Field(False, description="Use torch.compile (GPU; slower start, faster steps).")
    missing_wedge: tuple[float, float] | None = Field(
        None,
        description="Tilt range (min, max) in degrees about y of the series the tomograms came from: learn to fill "
        "the missing wedge as DeepDeWedge does (3D only; patches rotated by one of the 24 cube rotations, the "
        "input given the wedge again in its own frame, the loss in Fourier space where the rotated target was "
        "measured). None: plain Noise2Noise (the default).",
    )
    wedge_refresh_epochs: int = Field(
        3, ge=0, le=10000, description="Missing-wedge mode: every this many epochs, fill the wedge of every cached "
        "patch with the model's output, keeping the measured data (DeepDeWedge's update; 0: never).",
    )
    wedge_missing_weight: float = Field(
        2.0, ge=0, le=100, description="Missing-wedge mode: weight of the loss where the target was measured but the "
        "input lies in the wedge, relative to where both were measured (DeepDeWedge: 2).",
    )
    wedge_upright_fraction: float | None = Field(
        0.0, ge=0, le=1, description="Missing-wedge mode: share of patch pairs given a rotation that leaves the wedge "
        "in place (4 of the 24 for a symmetric range: the identity and the 180-degree turns about z, y, x), on which "
        "the loss is pure denoising; the rest get one of the others. 0 (default): every pair teaches filling, which "
        "scored best against the object (bench/RESULTS.md); None: all 24 alike (1 in 6 upright, DeepDeWedge's draw).",
    )

    wedge_warmup_fraction: float = Field(
        0.33, ge=0, le=0.9, description="Missing-wedge mode: train plain Noise2Noise (its own patches) for this "
        "share of the budget (max_minutes, else epochs) into MODEL_DIR/plain/, then the missing-wedge mode from "
        "those weights for the rest; 'cryocare predict'/'denoise' then take the measured Fourier region from the "
        "plain restoration and the wedge from the wedge one (predict.merge_plain). 0.33 (default) restored the "
        "measured directions as sharply as plain mode and correlated better with the object than the wedge mode "
        "alone (bench/RESULTS.md); 0: no warm-up.",
    )
    init_from: Path | None = Field(
        None, description="Start the model from this checkpoint's weights (same model settings); the optimiser, "
        "schedule and patches start anew. None: random initialisation.",
    )

    @model_validator(mode="after")
    def _tilt_range(self) -> TrainConfig:
        mw = self.missing_wedge
        if mw is not None and not -90.0 <= mw[0] < mw[1] <= 90.0:
            raise ValueError("missing_wedge must be (min, max) tilt angles with -90 <= min < max <= 90 degrees")
        return self


class PredictConfig(_Section):
    """Tiled, memory-bounded prediction."""

    tile_size: int | None = Field(
        None, ge=16, description="Tile edge in voxels (default: chosen from memory_budget_gb)."
    )
    overlap: int | None = Field(
        None, ge=0,
        description="Overlap between tiles in voxels (default: the model's, 7 x 2^depth for a U-Net; else tile / 4).",
    )
    batch_size: int | None = Field(None, ge=1, description="Tiles per forward pass (default: from budget).")
    memory_budget_gb: float = Field(
        1.0, gt=0, description="Memory for tile batches and activations (host on CPU, GPU on GPU).")
    precision: Precision = Field("auto", description="Inference precision (auto: bf16 where supported).")
    device: DeviceName = Field("auto", description="auto, cpu, cuda or cuda:N.")
    num_threads: int | None = Field(None, ge=1, description="CPU threads for torch (default: all cores).")
    write_halves: bool = Field(
        False,
        description="Also write the two restored halves (<output>_even/_odd); their FSC is not a resolution (one "
        "network made both); 'cryocare evaluate --model' estimates the FSC against the truth from them.",
    )
    voxel_size: float | None = Field(
        None, gt=0, description="Voxel size in Angstrom written to the outputs instead of the input's (for TIFF or "
        "Zarr inputs without one)."
    )
    output_dtype: Literal["float32", "float16"] = Field(
        "float32",
        description="Data type of the restored MRC: float32 (mode 2) or float16 (mode 12: half the size; its PSNR "
        "cost against float32 is in bench/RESULTS.md).",
    )
    normalization: Literal["input", "checkpoint"] = Field(
        "input",
        description="input: normalise with mean/std of the pair being restored (robust to a different scale); "
        "checkpoint: use the training data's statistics.",
    )
    merge_plain: bool = Field(
        True, description="'cryocare predict'/'denoise' with a missing-wedge model trained after a plain warm-up "
        "(train.wedge_warmup_fraction): "
        "restore with both models and keep the plain model's output where the tilt series measured, the wedge "
        "model's in the missing wedge.",
    )
    average_flips: bool = Field(
        False,
        description="Pass every tile four times, flipped in the ways that keep a missing wedge about y in place "
        "(none, y, z+x, z+y+x; 2D: none, y, x, both), and average the flipped-back outputs: 4x the prediction "
        "time, the same memory (gain measured in bench/RESULTS.md).",
    )


class SimulateConfig(_Section):
    """Built-in simulator of a cryo-ET acquisition with known ground truth."""

    shape: tuple[int, int, int] = Field((64, 192, 192), description="Tomogram shape (z, y, x) in voxels.")
    pixel_size: float = Field(8.0, gt=0, description="Pixel size in Angstrom.")
    tilt_min: float = Field(-60.0, ge=-80, le=0, description="First tilt angle (degrees).")
    tilt_max: float = Field(60.0, ge=0, le=80, description="Last tilt angle (degrees).")
    tilt_step: float = Field(3.0, gt=0, le=30, description="Tilt increment (degrees).")
    dose_per_tilt: float = Field(3.0, gt=0, description="Electron dose per tilt in e-/A^2.")
    n_frames: int = Field(8, ge=2, le=200, description="Dose-fractionated frames per tilt (split even/odd).")
    defocus_um: float = Field(3.0, ge=0, le=15, description="Underfocus in micrometres (0: no CTF).")
    voltage_kv: float = Field(300.0, gt=0, description="Acceleration voltage in kV.")
    n_membranes: int = Field(2, ge=0, description="Number of lipid vesicles.")
    n_filaments: int = Field(3, ge=0, description="Number of decorated filaments.")
    n_complexes: int = Field(30, ge=0, description="Number of globular complexes.")
    seed: int = Field(0, ge=0, description="Random seed; the same seed gives the same dataset.")
    ice_fraction: float = Field(0.8, gt=0.1, le=1.0, description="Ice slab thickness as a fraction of the depth.")
    decoration_period_nm: float = Field(24.0, gt=2, description="Spacing of the decorations along a filament (nm).")
    spherical_aberration_mm: float = Field(2.7, ge=0, description="Spherical aberration Cs in mm.")
    amplitude_contrast: float = Field(0.07, ge=0, le=1, description="Amplitude contrast fraction of the CTF.")
    contrast_scale: float = Field(1.0, gt=0, description="Multiplier on the physical phase contrast (lower: noisier).")
    tilt_order: Literal["dose_symmetric", "sequential", "bidirectional"] = Field(
        "dose_symmetric", description="Acquisition order of the tilts (sets the dose each tilt received before).")
    dose_symmetric_group: int = Field(2, ge=1, le=20, description="Tilts per side before switching (dose-symmetric).")
    defocus_spread_um: float = Field(0.0, ge=0, le=5, description="Per-tilt defocus offsets, uniform in +-this (um).")
    defocus_gradient: bool = Field(False, description="Defocus changes across each tilted image (x tan(tilt)).")
    phantom_file: Path | None = Field(
        None, description="Volume (MRC/TIFF/Zarr, z y x) used as the specimen instead of the generated one: "
        "standardised, added to the ice inside the slab, centre-cropped or mirrored to the shape. Labels and "
        "particle lists are then empty.")
    phantom_axes: tuple[int, int, int] = Field(
        (0, 1, 2), description="Order in which the phantom file's axes become z y x, e.g. 1 0 2 to turn a "
        "tomogram's own missing wedge (around its z) away from the simulated one (to around y).")
    phantom_contrast_v: float = Field(
        1.0, gt=0, le=10, description="Standard deviation (V) of the phantom file's values inside the ice.")
    phantom_invert: bool = Field(False, description="Negate the phantom file (for tomograms where protein is dark).")


class CryocareConfig(_Section):
    """Everything a run needs; sections map to config-file keys and CLI option groups."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    patches: PatchConfig = Field(default_factory=PatchConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)
    simulate: SimulateConfig = Field(default_factory=SimulateConfig)
    motion: MotionConfig = Field(default_factory=MotionConfig)
    ctf: CtfConfig = Field(default_factory=CtfConfig)
    deconvolve: DeconvConfig = Field(default_factory=DeconvConfig)
    evaluate: EvalConfig = Field(default_factory=EvalConfig)
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)
    watch: WatchConfig = Field(default_factory=WatchConfig)


def _format_validation_error(err: ValidationError, source: str) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        parts.append(f"{loc}: {e['msg']}")
    return f"invalid configuration in {source}: " + "; ".join(parts)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> CryocareConfig:
    """Read a YAML or JSON config file (optional) and apply nested ``overrides`` on top.

    Raises :class:`ConfigError` naming the file and the offending keys.
    """
    data: dict[str, Any] = {}
    source = "options"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError("config file not found; check the path", p)
        text = p.read_text(encoding="utf-8", errors="replace")
        try:
            if p.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text) or {}
        except Exception as exc:  # noqa: BLE001 - any parse error becomes one line
            raise ConfigError(f"cannot parse config file ({type(exc).__name__}: {exc})", p) from None
        if not isinstance(data, dict):
            raise ConfigError("config file must hold a mapping of sections (model, patches, train, ...)", p)
    for section, values in (overrides or {}).items():
        if values:
            data.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    try:
        return CryocareConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def config_to_dict(cfg: BaseModel) -> dict[str, Any]:
    """JSON-safe dump (paths as strings, tuples as lists)."""
    return json.loads(cfg.model_dump_json())
