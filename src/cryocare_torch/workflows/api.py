"""Python API mirroring the CLI: ``train``, ``predict``, ``denoise``.

>>> from cryocare_torch import denoise
>>> denoise([("tomo_even.mrc", "tomo_odd.mrc")], "tomo_denoised.mrc", max_minutes=15)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..config import CryocareConfig
from ..errors import ConfigError
from ..io.atomic import check_output
from ..io.halves import pair_stem, validate_pairs
from ..io.volumes import read_volume_meta
from ..logs import quiet
from ..predict import predict_files
from ..predict.deconvolve_files import deconvolve_file, tomogram_defocus
from ..predict.wedge_merge import merge_files
from ..train import train as _train
from ..train.checkpoint import checkpoint_file, config_from, read_checkpoint
from ..train.warmup import PLAIN_DIR, uses_warmup

PathLike = str | Path
Pair = tuple[PathLike, PathLike]
MERGE_PARTS = ("wedge", "plain")  # the models whose restorations a merged one keeps beside it (component_path)


def output_paths(pairs: Sequence[tuple[Path, Path]], output: PathLike | Sequence[PathLike]) -> list[Path]:
    """One output per pair: a list of the same length, a file for a single pair, else a folder."""
    if isinstance(output, (str, Path)):
        out = Path(output)
    else:
        outs = [Path(p) for p in output]
        if len(outs) == len(pairs):
            return outs
        if len(outs) != 1:
            raise ConfigError(f"{len(outs)} outputs for {len(pairs)} pairs; give one per pair or one folder")
        out = outs[0]
    if len(pairs) == 1 and out.suffix:
        return [out]
    if out.exists() and not out.is_dir():
        raise ConfigError(f"several pairs need --output to be a folder, but {out} is a file")
    names = [pair_stem(e) for e, _ in pairs]
    if len(set(names)) != len(names):
        names = [f"{n}_{i:03d}" for i, n in enumerate(names)]
    return [out / f"{n}_denoised.mrc" for n in names]


def train(
    pairs: Sequence[Pair],
    output_dir: PathLike,
    config: CryocareConfig | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Train a model on even/odd pairs; returns the path of the best checkpoint."""
    checked = validate_pairs(pairs)
    result = _train(checked, Path(output_dir), config or CryocareConfig(), resume=resume, progress=progress, log=log,
                    overwrite=overwrite)
    return Path(result.best)


def warmup_partner(checkpoint: PathLike, cfg: CryocareConfig) -> tuple[Path, tuple[float, float]] | None:
    """The plain warm-up model saved beside a missing-wedge ``checkpoint`` (``<model_dir>/plain/best.pt``) and the
    tilt range, when ``cfg.predict.merge_plain`` asks for the merge and the checkpoint was trained with the warm-up
    (:mod:`cryocare_torch.train.warmup`); else ``None``."""
    if not cfg.predict.merge_plain:
        return None
    ck = checkpoint_file(checkpoint)
    plain = ck.parent / PLAIN_DIR / "best.pt"
    if not plain.exists():
        return None
    tc = config_from(read_checkpoint(ck), ck).train
    if tc.missing_wedge is None or tc.wedge_warmup_fraction <= 0:
        return None
    return plain, (float(tc.missing_wedge[0]), float(tc.missing_wedge[1]))


def predict(
    checkpoint: PathLike,
    even: PathLike,
    odd: PathLike,
    output: PathLike,
    config: CryocareConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Restore one pair with a trained model (network applied to both halves, outputs averaged).

    A missing-wedge model trained with the plain warm-up (``train.wedge_warmup_fraction``) restores with both of its
    models into :func:`component_path` (``<output>_wedge.mrc``, ``<output>_plain.mrc``) and writes their Fourier
    merge (:func:`cryocare_torch.predict.wedge_merge.merge_files`) to ``output``, unless
    ``config.predict.merge_plain`` is off."""
    cfg = config or CryocareConfig()
    out = Path(output)
    partner = warmup_partner(checkpoint, cfg)
    if partner is None:
        return predict_files(
            Path(checkpoint), Path(even), Path(odd), out, cfg.predict, overwrite=overwrite, progress=progress,
            log=log,
        )
    plain, tilt_range = partner
    check_output(out, overwrite=overwrite, inputs=[Path(even), Path(odd)])
    parts = {m: component_path(out, m) for m in MERGE_PARTS}
    for model, ck in zip(MERGE_PARTS, (Path(checkpoint), plain), strict=True):
        (log or quiet)(f"restoring with the {model} model {checkpoint_file(ck)}")
        predict_files(ck, Path(even), Path(odd), parts[model], cfg.predict, overwrite=overwrite, progress=progress,
                      log=log)
    return merge_files(parts["plain"], parts["wedge"], out, tilt_range, overwrite=overwrite,
                       dtype=cfg.predict.output_dtype, log=log or quiet)


def restored_path(out: Path) -> Path:
    """Where ``denoise`` keeps the restoration before CTF deconvolution when ``out`` receives the deconvolved one."""
    return out.with_name(f"{out.stem}_restored{out.suffix or '.mrc'}")


def component_path(out: Path, model: str) -> Path:
    """Where a merged restoration ``out`` keeps the restoration by one of its models (``plain``, ``wedge``)."""
    return out.with_name(f"{out.stem}_{model}{out.suffix or '.mrc'}")


def denoise(
    pairs: Sequence[Pair],
    output: PathLike | Sequence[PathLike],
    config: CryocareConfig | None = None,
    *,
    model_dir: PathLike | None = None,
    max_minutes: float | None = None,
    defocus_file: PathLike | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """Train on all pairs, then restore each one. Inputs and outputs are checked before training.

    With a defocus (``config.deconvolve.defocus`` or ``defocus_file``) each restoration is then CTF-deconvolved
    (:func:`cryocare_torch.predict.deconvolve_files.deconvolve_file`): the output holds the deconvolved tomogram
    and :func:`restored_path` (``<output>_restored.mrc``) the restoration before it."""
    cfg = (config or CryocareConfig()).model_copy(deep=True)
    if max_minutes is not None:
        cfg.train.max_minutes = max_minutes
    dfile = None if defocus_file is None else Path(defocus_file)
    deconv = cfg.deconvolve.defocus is not None or dfile is not None
    if deconv:  # both kinds, or an unreadable defocus file, fail now rather than after training
        tomogram_defocus(cfg.deconvolve, dfile)
    checked = validate_pairs(pairs)
    outs = output_paths(checked, output)
    merge = uses_warmup(cfg) and cfg.predict.merge_plain  # measured region from the warm-up's plain model
    inputs = [p for pair in checked for p in pair]
    if dfile is not None:
        inputs.append(dfile)
    for out, (even, _) in zip(outs, checked, strict=True):
        if out.parent and not out.parent.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
        n_vox = 1
        for s in read_volume_meta(even).shape:
            n_vox *= s
        factor = (3 if cfg.predict.write_halves else 1) * (2 if cfg.predict.output_dtype == "float16" else 4)
        restored = restored_path(out) if deconv else out
        extra = [component_path(restored, m) for m in MERGE_PARTS] if merge else []
        for path in dict.fromkeys([out, restored, *extra]):  # restored is out itself without deconvolution
            check_output(path, overwrite=overwrite, inputs=inputs, nbytes=n_vox * factor)
    mdir = Path(model_dir) if model_dir is not None else outs[0].parent / f"{outs[0].stem}_model"
    best = train(checked, mdir, cfg, resume=resume, overwrite=overwrite and not resume, progress=progress, log=log)
    done = []
    for out, (even, odd) in zip(outs, checked, strict=True):
        restored = restored_path(out) if deconv else out
        predict(best, even, odd, restored, cfg, overwrite=overwrite, progress=progress, log=log)
        if deconv:
            deconvolve_file(restored, out, cfg.deconvolve, defocus_file=dfile, overwrite=overwrite, log=log or quiet)
        done.append(out)
    return done
