"""Core commands: simulate, train, predict, denoise, demo, config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from cyclopts import Parameter

from ..config import config_to_dict
from ..errors import ConfigError
from ..logs import Log
from ..logs import log_stderr as _log
from ..simulate import write_dataset
from ..train.distributed import is_main_process
from ..workflows import api
from ..workflows.demo import run_demo
from ..workflows.shard import from_torchrun, process_config
from .app import app
from .options import ConfigOptions, PredictOptions, RuntimeOptions, TrainOptions, build_config


def _pairs(even: list[Path], odd: list[Path]) -> list[tuple[Path, Path]]:
    if len(even) != len(odd):
        raise ConfigError(f"{len(even)} --even but {len(odd)} --odd files; give them in matching pairs")
    return list(zip(even, odd, strict=True))


@app.command
def simulate(
    output_dir: Path,
    *,
    shape: tuple[int, int, int] | None = None,
    pixel_size: float | None = None,
    seed: int | None = None,
    phantom: Path | None = None,
    phantom_axes: tuple[int, int, int] | None = None,
    overwrite: bool = False,
    cfg: ConfigOptions | None = None,
) -> int:
    """Simulate a cryo-ET acquisition with known ground truth (the built-in test data).

    Writes even/odd/full tomograms (weighted back-projection of even/odd frame sums), the
    noise-free reconstruction (tomo_clean.mrc), tilt series, .tlt, SerialEM-style .mdoc and labels.

    Parameters
    ----------
    output_dir
        Folder to write into (created).
    shape
        Tomogram shape z y x in voxels, e.g. --shape 64 192 192.
    pixel_size
        Pixel size in Angstrom.
    seed
        Random seed (the same seed gives the same data).
    phantom
        A tomogram or map (MRC/TIFF/Zarr) to use as the specimen instead of the generated one (real structure;
        standardised and placed in the ice slab, see simulate.phantom_contrast_v / phantom_invert).
    phantom_axes
        Order in which the phantom's axes become z y x, e.g. --phantom-axes 1 0 2 to turn a tomogram's own
        missing wedge (around its z) away from the simulated one (to around y).
    overwrite
        Replace existing files.
    """
    config = build_config(cfg, extra={"simulate": {"shape": shape, "pixel_size": pixel_size, "seed": seed,
                                                   "phantom_file": phantom, "phantom_axes": phantom_axes}})
    paths = write_dataset(config.simulate, output_dir, overwrite=overwrite)
    for name, p in paths.items():
        print(f"{name}: {p}")
    return 0


@app.command
def train(
    *,
    even: list[Path],
    odd: list[Path],
    model_dir: Path,
    resume: bool = False,
    train_opts: TrainOptions | None = None,
    runtime: RuntimeOptions | None = None,
    cfg: ConfigOptions | None = None,
) -> int:
    """Train a cryo-CARE model on even/odd half pairs (Noise2Noise; no clean data needed).

    Parameters
    ----------
    even
        Even half (tomogram or image); repeat --even/--odd for several pairs.
    odd
        Odd half, same shape and voxel size as its even partner.
    model_dir
        Folder for checkpoints (best.pt, last.pt) and history.json.
    resume
        Continue from model_dir/last.pt with its optimiser, schedule and random state.
    """
    config = build_config(cfg, train_opts, None, runtime)
    best = api.train(_pairs(even, odd), model_dir, config, resume=resume, log=_log)
    if is_main_process():  # under torchrun only rank 0 reports
        print(f"best model: {best}")
    return 0


@app.command
def predict(
    *,
    model: Path,
    even: list[Path],
    odd: list[Path],
    output: list[Path],
    overwrite: bool = False,
    predict_opts: PredictOptions | None = None,
    runtime: RuntimeOptions | None = None,
    cfg: ConfigOptions | None = None,
) -> int:
    """Restore even/odd pairs with a trained model (both halves restored and averaged).

    A missing-wedge model trained after a plain warm-up (MODEL_DIR/plain/best.pt beside it) restores with both
    models, writes OUTPUT_wedge.mrc and OUTPUT_plain.mrc, and into OUTPUT their Fourier merge: the measured region
    from the plain model, the wedge from the wedge model (--set predict.merge_plain=false: the wedge model alone).

    Under torchrun each process restores every Nth pair on its own GPU (cuda:LOCAL_RANK) or on CPU.

    Parameters
    ----------
    model
        Checkpoint written by 'cryocare train' (best.pt).
    even
        Even half; repeat --even/--odd for several pairs.
    odd
        Odd half.
    output
        Output MRC (float32, same shape, voxel size and origin as the input); one per pair, or one folder.
    overwrite
        Replace existing outputs.
    """
    config = build_config(cfg, None, predict_opts, runtime)
    pairs = api.validate_pairs(_pairs(even, odd))
    outputs = api.output_paths(pairs, output)
    log: Log = _log
    todo, label = list(range(len(pairs))), ""
    shard = from_torchrun()
    if shard is not None:  # every process checked all pairs; each restores its share
        config, todo = process_config(config, shard), shard.take(len(pairs))
        log, label = shard.prefixed(_log), f"{shard.label} "
        log(f"{len(todo)} of the {len(pairs)} pairs are this process's, on {config.predict.device}")
    for i in todo:
        outputs[i].parent.mkdir(parents=True, exist_ok=True)
        api.predict(model, pairs[i][0], pairs[i][1], outputs[i], config, overwrite=overwrite, log=log)
        print(f"{label}wrote {outputs[i]}")
    return 0


@app.command
def denoise(
    *,
    even: list[Path],
    odd: list[Path],
    output: list[Path],
    model_dir: Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    defocus: float | None = None,
    defocus_file: Path | None = None,
    phase_flipped: bool = False,
    train_opts: TrainOptions | None = None,
    predict_opts: PredictOptions | None = None,
    runtime: RuntimeOptions | None = None,
    cfg: ConfigOptions | None = None,
) -> int:
    """Train on the pairs and restore them in one go.

    Example: cryocare denoise --even E.mrc --odd O.mrc --output OUT.mrc --max-minutes 15

    Past the reconstruction's limits (missing wedge, then CTF): add --missing-wedge -60 60 --defocus 3

    Parameters
    ----------
    even
        Even half; repeat --even/--odd for several tomograms (one model is trained on all).
    odd
        Odd half.
    output
        Output MRC for one pair; for several pairs one per pair or a folder.
    model_dir
        Where checkpoints go (default: OUTPUT_model next to the first output).
    overwrite
        Replace existing outputs.
    resume
        Continue an interrupted training in model_dir.
    defocus
        Underfocus (um): CTF-deconvolve each restoration afterwards as 'cryocare deconvolve' does (default
        settings, or the config's deconvolve section); OUTPUT then holds the deconvolved tomogram and
        OUTPUT_restored.mrc the restoration before it.
    defocus_file
        Instead of --defocus: the series' defocus file (CTFFIND4, AreTomo _CTF.txt, IMOD .defocus, .mdoc); its
        median is used.
    phase_flipped
        The halves were reconstructed from phase-flipped views (prepare --ctf phaseflip): deconvolve with |CTF|.
    """
    config = build_config(cfg, train_opts, predict_opts, runtime)
    if defocus is not None:
        config.deconvolve.defocus = defocus
    if phase_flipped:
        config.deconvolve.phase_flipped = True
    outs = api.denoise(
        _pairs(even, odd), output, config, model_dir=model_dir, defocus_file=defocus_file, overwrite=overwrite,
        resume=resume, log=_log,
    )
    for out in outs:
        print(f"wrote {out}")
    return 0


@app.command
def demo(
    output_dir: Path = Path("cryocare_demo"),
    *,
    minutes: float = 4.0,
    overwrite: bool = False,
    missing_wedge: bool = False,
    runtime: RuntimeOptions | None = None,
) -> int:
    """The main job on built-in data: simulate a tomogram pair, denoise it, compare with the truth.

    Writes the simulated dataset, the restored tomogram, demo.png (central slices: raw average,
    restored, noise-free truth) and demo.json, and prints PSNR/SSIM against the truth.

    Parameters
    ----------
    output_dir
        Folder for everything the demo writes.
    minutes
        Training budget in minutes (the whole demo takes about this plus one to two minutes).
    overwrite
        Replace files of an earlier demo.
    missing_wedge
        Also train the missing-wedge mode (same budget: the demo takes twice as long), CTF-deconvolve both
        restorations and score all four against the true object (demo_modes.png, demo_modes.json).
    """
    config = build_config(None, None, None, runtime)
    run_demo(output_dir, config, minutes=minutes, overwrite=overwrite, missing_wedge=missing_wedge, log=_log)
    return 0


@app.command(name="config")
def show_config(
    *,
    cfg: ConfigOptions | None = None,
    fmt: Annotated[str, Parameter(name="--format")] = "yaml",
) -> int:
    """Print the full configuration (defaults, or a file with --set overrides applied) as YAML or JSON.

    Save it, edit it, and pass it back with --config to any command.

    Parameters
    ----------
    fmt
        yaml or json.
    """
    config = config_to_dict(build_config(cfg))
    if fmt == "json":
        print(json.dumps(config, indent=2))
    else:
        import yaml

        print(yaml.safe_dump(config, sort_keys=False), end="")
    return 0
