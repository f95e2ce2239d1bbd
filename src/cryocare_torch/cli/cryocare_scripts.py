"""``cryoCARE_extract_train_data.py``, ``cryoCARE_train.py``, ``cryoCARE_predict.py``: cryoCARE's three scripts.

RELION 5's Denoise job, Scipion and TomoBEAR call these by name with ``--conf FILE.json``; installed as console
scripts of this package, they run cryocare-torch's one training and prediction with the settings mapped in
:mod:`.cryocare_json`. Differences from cryoCARE 0.3 (juglab/cryoCARE_pip ``cryocare/scripts/``):

* extract writes ``{path}/cryocare_torch_train_data.json`` (the checked pairs and patch settings) instead of
  ``train_data.npz``/``val_data.npz``: patches are drawn when training starts, by the same code as ``cryocare train``;
* train writes the model folder ``{path}/{model_name}/`` (``best.pt``, ``history.json``, ``norm.json``) and the
  archive ``{path}/{model_name}.tar.gz`` (cryoCARE 0.3 ``cryoCARE_train.py``; RELION's ``cryoCARE/train.py`` checks
  ``{output_directory}/denoising_model.tar.gz``);
* predict writes ``{output}/{even file name}`` (cryoCARE ``cryoCARE_predict.py``: ``os.path.join(config['output'],
  os.path.basename(even))``; RELION's ``rename_predicted_tomograms`` then strips ``_half1``), float32 unless
  ``predict.output_dtype`` says float16, with the even half's voxel size, origin and labels.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError, OutputError
from ..io.atomic import atomic_path, atomic_write_json, check_output
from ..io.halves import validate_pairs
from ..logs import log_stderr
from ..train.checkpoint import load_checkpoint
from ..workflows import api
from .cryocare_json import (
    PREDICT_KEYS,
    TRAIN_DATA_KEYS,
    TRAIN_KEYS,
    build_config,
    flag,
    gpu_device,
    read_json_config,
    resolve_pairs,
    unknown_keys,
)
from .main import guarded

MANIFEST = "cryocare_torch_train_data.json"
MODEL_MARKER = "cryocare_torch_model.json"
_FORMAT = "cryocare-torch train data 1"
_MODEL_FILES = ("best.pt", "history.json", "norm.json", MODEL_MARKER)
Log = Callable[[str], None]


def _entry(prog: str, work: Callable[[Path, Log], None], argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=f"cryocare-torch's drop-in for cryoCARE's {prog}.")
    parser.add_argument("--conf", required=True, help="cryoCARE JSON config (as RELION 5 writes it)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("CRYOCARE_DEBUG") == "1"
    code = guarded(lambda: work(Path(args.conf), log_stderr), debug=debug, prog=prog)
    if argv is None:
        sys.exit(code)
    return code


def extract_train_data(argv: Sequence[str] | None = None) -> int:
    """``cryoCARE_extract_train_data.py --conf train_data_config.json``."""
    return _entry("cryoCARE_extract_train_data.py", _extract, argv)


def train(argv: Sequence[str] | None = None) -> int:
    """``cryoCARE_train.py --conf train_config.json``."""
    return _entry("cryoCARE_train.py", _train, argv)


def predict(argv: Sequence[str] | None = None) -> int:
    """``cryoCARE_predict.py --conf predict_config.json``."""
    return _entry("cryoCARE_predict.py", _predict, argv)


def _note_unknown(data: dict[str, Any], required: tuple[str, ...], log: Log) -> None:
    extra = unknown_keys(data, required)
    if extra:
        log(f"warning: ignoring key(s) {', '.join(extra)}: cryoCARE's script does not read them either")


def _patch_size(value: Any, log: Log) -> int:
    edges = value if isinstance(value, list) else [value]
    if not edges or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in edges):
        raise ConfigError(f"patch_shape: expected [z, y, x] positive integers, got {value!r}")
    if len(set(edges)) > 1:
        log(f"warning: patch_shape {edges}: cryocare-torch uses cubic patches; using {min(edges)}^3")
    return int(min(edges))


def _mask(value: Any) -> str | None:
    masks = value if isinstance(value, list) else [value]
    masks = [str(m) for m in masks if m]
    if len(set(masks)) > 1:
        raise ConfigError("mask: one mask per tomogram is not supported; give one mask for all pairs or none")
    return masks[0] if masks else None


def _extract(conf: Path, log: Log) -> None:
    data = read_json_config(conf, TRAIN_DATA_KEYS)
    _note_unknown(data, TRAIN_DATA_KEYS, log)
    pairs = validate_pairs(resolve_pairs(data["even"], data["odd"], conf))
    split = float(data["split"])
    patches = {"patch_size": _patch_size(data["patch_shape"], log), "n_patches": int(data["num_slices"]),
               "val_fraction": round(1.0 - split, 6), "mask": _mask(data.get("mask"))}
    cfg = build_config({"patches": patches}, data, conf)
    if str(data["tilt_axis"]).strip().upper() != "Y":
        log(f"warning: tilt_axis {data['tilt_axis']!r}: cryocare-torch takes y as the tilt axis (flips and "
            "rotations of the augmentation, validation slab); reorient the tomograms so that y is the tilt axis")
    log(f"n_normalization_samples {data['n_normalization_samples']} not used: cryocare-torch normalises each pair "
        "from up to 4M voxels of sampled rows")
    out = Path(str(data["path"]))
    if out.exists() and not flag(data.get("overwrite"), "overwrite", False):
        raise OutputError("folder exists; set \"overwrite\": \"True\" or choose another path", out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"format": _FORMAT, "pairs": [[str(e.resolve()), str(o.resolve())] for e, o in pairs],
                "patches": cfg.patches.model_dump(mode="json")}
    atomic_write_json(out / MANIFEST, manifest)
    log(f"{len(pairs)} pair(s) checked; {cfg.patches.n_patches} patches of {cfg.patches.patch_size}^3 per pair, "
        f"{cfg.patches.val_fraction:g} for validation, are drawn when training starts; wrote {out / MANIFEST}")


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        hint = (" it holds TensorFlow cryoCARE's train_data.npz; " if (folder / "train_data.npz").exists() else " ")
        raise ConfigError(f"no {MANIFEST} in train_data;{hint}run cryocare-torch's cryoCARE_extract_train_data.py "
                          "first", folder)
    try:
        manifest = json.loads(path.read_text())
        ok = manifest.get("format") == _FORMAT and manifest["pairs"] and isinstance(manifest["patches"], dict)
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise ConfigError("damaged or foreign train-data manifest; rerun cryoCARE_extract_train_data.py", path)
    return manifest


def _device(gpu_id: Any, log: Log) -> dict[str, Any]:
    device, note = gpu_device(gpu_id)
    if note:
        log(f"warning: {note}")
    if device is None:
        return {}
    if not torch.cuda.is_available():
        log(f"warning: gpu_id {gpu_id} given but no CUDA GPU is visible; running on the CPU")
        return {}
    return {"device": device}


def _train(conf: Path, log: Log) -> None:
    data = read_json_config(conf, TRAIN_KEYS)
    _note_unknown(data, TRAIN_KEYS, log)
    manifest = _read_manifest(Path(str(data["train_data"])))
    train_keys = {"epochs": data["epochs"], "steps_per_epoch": data["steps_per_epoch"],
                  "batch_size": data["batch_size"], "learning_rate": data["learning_rate"]}
    mapped = {"patches": manifest["patches"], "train": {**train_keys, **_device(data.get("gpu_id"), log)},
              "model": {"kernel_size": data["unet_kern_size"], "depth": data["unet_n_depth"],
                        "n_first": data["unet_n_first"]}}
    cfg = build_config(mapped, data, conf)
    name, base = str(data["model_name"]), Path(str(data["path"]))
    overwrite = flag(data.get("overwrite"), "overwrite", True)  # cryoCARE's train never refuses an existing model
    base.mkdir(parents=True, exist_ok=True)
    archive = check_output(base / f"{name}.tar.gz", overwrite=overwrite)
    m = cfg.model
    log(f"cryoCARE settings: U-Net depth {m.depth}, {m.n_first} first-level channels, kernel {m.kernel_size}, "
        f"{cfg.train.epochs} epochs x {cfg.train.steps_per_epoch} steps of {cfg.train.batch_size}, "
        f"learning rate {cfg.train.learning_rate:g}" + (f", at most {cfg.train.max_minutes:g} min"
                                                         if cfg.train.max_minutes else ""))
    pairs = [(Path(e), Path(o)) for e, o in manifest["pairs"]]
    model_dir = base / name
    best = api.train(pairs, model_dir, cfg, overwrite=overwrite, log=log)
    norm = load_checkpoint(best).normalization
    atomic_write_json(model_dir / "norm.json", {"mean": float(norm["mean"]), "std": float(norm["std"])})
    atomic_write_json(model_dir / MODEL_MARKER, {"format": "cryocare-torch model 1", "checkpoint": "best.pt"})
    _write_archive(archive, model_dir, name, overwrite)
    log(f"wrote {archive}")


def _write_archive(archive: Path, model_dir: Path, name: str, overwrite: bool) -> None:
    with atomic_path(archive, overwrite=overwrite) as tmp, tarfile.open(tmp, "w:gz") as tar:
        for f in _MODEL_FILES:
            if (model_dir / f).exists():
                tar.add(model_dir / f, arcname=f"{name}/{f}")


@contextlib.contextmanager
def model_checkpoint(path: Path) -> Iterator[Path]:
    """The ``best.pt`` inside a model archive (or a model folder); TensorFlow cryoCARE models are refused."""
    if path.is_dir():
        found = [p for p in (path / "best.pt", *path.glob("*/best.pt")) if p.is_file()]
        if not found:
            raise CheckpointError("model folder has no cryocare-torch best.pt; give the .tar.gz that "
                                  "cryocare-torch's cryoCARE_train.py wrote", path)
        yield found[0]
        return
    if not path.is_file():
        raise CheckpointError("model archive not found; check 'path' in the predict config", path)
    try:
        tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by the with statement below
    except (tarfile.TarError, OSError):
        raise CheckpointError("not a model .tar.gz archive", path) from None
    with tar, tempfile.TemporaryDirectory(prefix="cryocare_model_") as tmp:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        if "best.pt" not in members:
            tf = any(n.endswith(".h5") for n in members) or "config.json" in members
            what = "a TensorFlow cryoCARE model (weights .h5)" if tf else "no cryocare-torch model (best.pt)"
            raise CheckpointError(f"holds {what}; cryocare-torch cannot use TensorFlow weights: retrain with "
                                  "cryocare-torch's cryoCARE_train.py (same train_config.json)", path)
        src = tar.extractfile(members["best.pt"])
        if src is None:
            raise CheckpointError("best.pt in the archive cannot be read; retrain", path)
        out = Path(tmp) / "best.pt"
        with src, open(out, "wb") as fh:
            fh.write(src.read())
        yield out


def _output_name(even: Path) -> str:
    """cryoCARE names the output as the even file; a non-MRC input gets the .mrc suffix of the MRC written."""
    return even.name if even.suffix.lower() in (".mrc", ".rec", ".map") else f"{even.stem}.mrc"


def _predict(conf: Path, log: Log) -> None:
    data = read_json_config(conf, PREDICT_KEYS)
    _note_unknown(data, PREDICT_KEYS, log)
    overwrite = flag(data.get("overwrite"), "overwrite", False)
    out_dir = Path(str(data["output"]))
    if out_dir.exists() and not overwrite:  # as cryoCARE_predict.py
        raise OutputError("output folder exists; set \"overwrite\": \"True\" or choose another folder", out_dir)
    pairs = validate_pairs(resolve_pairs(data["even"], data["odd"], conf))
    names = [_output_name(e) for e, _ in pairs]
    if len(set(names)) != len(names):
        raise ConfigError("two even files have the same name; their outputs would collide in 'output'", conf)
    cfg = build_config({"predict": _device(data.get("gpu_id"), log)}, data, conf)
    with model_checkpoint(Path(str(data["path"]))) as best:  # a TensorFlow model is refused before any work
        log(f"n_tiles {data['n_tiles']} not used: tiles are sized from predict.memory_budget_gb "
            f"({cfg.predict.memory_budget_gb:g} GB) and halved on GPU out-of-memory")
        out_dir.mkdir(parents=True, exist_ok=True)
        for (even, odd), name in zip(pairs, names, strict=True):
            out = api.predict(best, even, odd, out_dir / name, cfg, overwrite=overwrite,
                              log=log)
            log(f"wrote {out}")
