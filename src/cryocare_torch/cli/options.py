"""Option groups shared by several commands, and their mapping onto :class:`CryocareConfig`.

Precedence: defaults < ``--config FILE`` (YAML/JSON) < ``--set section.key=value`` < explicit flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from cyclopts import Group, Parameter

from ..config import CryocareConfig, load_config
from ..errors import ConfigError
from ..io.imod import read_tlt
from ..io.mdoc import read_mdoc
from ..io.star import read_tilt_angles_star

G_CONFIG = Group("Configuration", sort_key=10)
G_TRAIN = Group("Training", sort_key=20)
G_PREDICT = Group("Prediction", sort_key=30)
G_RUNTIME = Group("Hardware", sort_key=40)


@Parameter(name="*", group=G_CONFIG)
@dataclass
class ConfigOptions:
    config: Path | None = None
    "YAML or JSON file with sections model, patches, train, predict, simulate, motion, evaluate, slurm, watch "
    "(see 'cryocare config')."
    set_: Annotated[list[str] | None, Parameter(name="--set")] = None
    "Override any setting, e.g. --set train.learning_rate=2e-4 --set model.depth=3 (repeatable)."


@Parameter(name="*", group=G_TRAIN)
@dataclass
class TrainOptions:
    max_minutes: float | None = None
    "Wall-time budget for training, in minutes (training stops cleanly and keeps the best model)."
    epochs: int | None = None
    "Maximum number of epochs (default 100; usually --max-minutes ends training first)."
    batch_size: int | None = None
    "Patch pairs per optimisation step."
    patch_size: int | None = None
    "Patch edge in voxels (default 64 for tomograms, 128 for images)."
    n_patches: int | None = None
    "Patch pairs per tomogram pair (default 1200 in 3D, 1000 in 2D)."
    learning_rate: float | None = None
    "Initial Adam learning rate."
    depth: int | None = None
    "U-Net depth (default 2, as in cryo-CARE)."
    seed: int | None = None
    "Random seed; the same seed, data and device give the same result."
    missing_wedge: Annotated[tuple[float, float] | None, Parameter(allow_leading_hyphen=True)] = None
    "Tilt range MIN MAX (degrees about y) of the tilt series: also learn to fill the missing wedge (DeepDeWedge-style)."
    missing_wedge_from: Path | None = None
    "The series' .tlt/.rawtlt, .mdoc or RELION 5 tilt-series .star (e.g. OUTPUT_DIR/tiltseries/NAME.tlt of " \
        "'cryocare prepare'): --missing-wedge from its smallest and largest angle."


@Parameter(name="*", group=G_PREDICT)
@dataclass
class PredictOptions:
    tile_size: int | None = None
    "Tile edge in voxels (default: chosen from --memory-budget)."
    overlap: int | None = None
    "Overlap between tiles in voxels (default: the model's, 7 x 2^depth for a U-Net; else tile / 4)."
    memory_budget: float | None = None
    "Memory (GB) for tiles and activations during prediction (default 1)."
    write_halves: bool = False
    "Also write the restored halves (OUTPUT_even/_odd.mrc); their FSC is not a resolution (one network made both)."
    output_dtype: Literal["float32", "float16"] | None = None
    "Restored MRC data type: float32 (mode 2, default) or float16 (mode 12, half the size)."
    voxel_size: float | None = None
    "Voxel size (Angstrom) for the outputs, replacing the input's (TIFF/Zarr inputs without one)."
    average_flips: bool = False
    "Average the network's outputs over 4 wedge-keeping flips of each tile (4x the prediction time)."


@Parameter(name="*", group=G_RUNTIME)
@dataclass
class RuntimeOptions:
    device: str | None = None
    "auto (GPU if present), cpu, cuda or cuda:N. The device used is always printed."
    precision: Literal["auto", "fp32", "bf16", "fp16"] | None = None
    "auto: bf16 on GPUs and on CPUs with bf16 instructions, else fp32."
    threads: int | None = None
    "CPU threads (default: all available cores)."


def tilt_range(path: Path) -> tuple[float, float]:
    """``(min, max)`` tilt angle of a ``.mdoc`` (SerialEM), ``.star`` (RELION 5 tilt series, or a tomograms.star
    of one) or ``.tlt``/``.rawtlt`` (IMOD) file."""
    suffix = path.suffix.lower()
    if suffix == ".star":
        angles: Any = read_tilt_angles_star(path)[0]
    else:
        angles = read_mdoc(path).tilt_angle if suffix == ".mdoc" else read_tlt(path)
    return float(np.min(angles)), float(np.max(angles))


def parse_sets(sets: list[str] | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in sets or []:
        key, sep, raw = item.partition("=")
        section, dot, field = key.strip().partition(".")
        if not sep or not dot or not section or not field:
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. train.epochs=50")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        out.setdefault(section, {})[field] = value
    return out


def build_config(
    cfg_opts: ConfigOptions | None = None,
    train: TrainOptions | None = None,
    predict: PredictOptions | None = None,
    runtime: RuntimeOptions | None = None,
    extra: dict[str, dict[str, Any]] | None = None,
) -> CryocareConfig:
    """Merge config file, --set overrides and flags into one validated configuration."""
    cfg_opts = cfg_opts or ConfigOptions()
    overrides = parse_sets(cfg_opts.set_)
    for section, values in (extra or {}).items():
        overrides.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})

    def put(section: str, **values: Any) -> None:
        overrides.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})

    if train is not None:
        if train.missing_wedge_from is not None:
            if train.missing_wedge is not None:
                raise ConfigError("give either --missing-wedge MIN MAX or --missing-wedge-from FILE, not both")
            put("train", missing_wedge=tilt_range(train.missing_wedge_from))
        put("train", max_minutes=train.max_minutes, epochs=train.epochs, batch_size=train.batch_size,
            learning_rate=train.learning_rate, seed=train.seed, missing_wedge=train.missing_wedge)
        put("patches", patch_size=train.patch_size, n_patches=train.n_patches)
        put("model", depth=train.depth)
    if predict is not None:
        put("predict", tile_size=predict.tile_size, overlap=predict.overlap,
            memory_budget_gb=predict.memory_budget, write_halves=predict.write_halves or None,
            output_dtype=predict.output_dtype, voxel_size=predict.voxel_size,
            average_flips=predict.average_flips or None)
    if runtime is not None:
        for section in ("train", "predict"):
            put(section, device=runtime.device, precision=runtime.precision, num_threads=runtime.threads)
    return load_config(cfg_opts.config, overrides)
