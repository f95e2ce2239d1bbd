"""cryoCARE 0.2/0.3 JSON configs -> one :class:`CryocareConfig` and the even/odd pairs.

The keys and their types are those cryoCARE's scripts read (juglab/cryoCARE_pip 0.3.0,
``cryocare/scripts/cryoCARE_extract_train_data.py``, ``cryoCARE_train.py``, ``cryoCARE_predict.py``) and
RELION 5 writes (3dem/relion ``src/tomography_python_programs/denoise/cryoCARE/_utils.py``:
``generate_train_data_config_json``, ``generate_train_config_json``, ``generate_predict_json``):

* train data: ``even``/``odd`` (lists, one file each, or two folders), ``patch_shape`` [z, y, x], ``num_slices``
  (patches per tomogram), ``split`` (training fraction), ``tilt_axis``, ``n_normalization_samples``, ``path``,
  ``overwrite`` (RELION writes the *string* "True"), optional ``mask``;
* train: ``train_data``, ``epochs``, ``steps_per_epoch``, ``batch_size``, ``unet_kern_size``, ``unet_n_depth``,
  ``unet_n_first``, ``learning_rate``, ``model_name``, ``path``, optional ``gpu_id`` (int or list), ``overwrite``;
* predict: ``path`` (the model .tar.gz), ``even``, ``odd``, ``n_tiles``, ``output``, ``overwrite``, ``gpu_id``.

Our own settings may be added on top, in this order: a ``"cryocare_torch"`` key in the JSON holding config
sections, the file named by ``$CRYOCARE_TORCH_CONFIG`` (YAML/JSON), then ``$CRYOCARE_TORCH_SET``
(``section.key=value`` items separated by ``;``), e.g. ``CRYOCARE_TORCH_SET="train.max_minutes=30"``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..config import CryocareConfig, load_config
from ..errors import ConfigError, InputFileError
from ..io.pairs import find_pairs
from .options import parse_sets

TRAIN_DATA_KEYS = ("even", "odd", "patch_shape", "num_slices", "split", "tilt_axis", "n_normalization_samples",
                   "path")
TRAIN_KEYS = ("train_data", "epochs", "steps_per_epoch", "batch_size", "unet_kern_size", "unet_n_depth",
              "unet_n_first", "learning_rate", "model_name", "path")
PREDICT_KEYS = ("path", "even", "odd", "n_tiles", "output")
OPTIONAL_KEYS = ("overwrite", "gpu_id", "mask", "cryocare_torch")
ENV_CONFIG, ENV_SET = "CRYOCARE_TORCH_CONFIG", "CRYOCARE_TORCH_SET"


def read_json_config(path: str | Path, required: tuple[str, ...]) -> dict[str, Any]:
    """The JSON mapping with every key cryoCARE's script would read (one-line :class:`ConfigError` otherwise)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("config file not found; check the --conf path", p)
    try:
        data = json.loads(p.read_text(encoding="utf-8", errors="replace"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON ({exc.msg}, line {exc.lineno})", p) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a JSON object of cryoCARE settings", p)
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"missing key(s) {', '.join(missing)} that cryoCARE's script reads", p)
    return data


def unknown_keys(data: Mapping[str, Any], required: tuple[str, ...]) -> list[str]:
    return sorted(k for k in data if k not in required and k not in OPTIONAL_KEYS)


def flag(value: Any, key: str, default: bool) -> bool:
    """cryoCARE's ``overwrite``: RELION writes the strings "True"/"False"; a JSON bool is accepted too.

    cryoCARE itself tests the value's truth (``if config['overwrite']``), which makes the string "False" true;
    here "False" means False.
    """
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise ConfigError(f"{key}: expected \"True\" or \"False\", got {value!r}")


def gpu_device(value: Any) -> tuple[str | None, str | None]:
    """``gpu_id`` (int or non-empty list, as cryoCARE's ``set_gpu_id``) -> (device, note); (None, None) if absent."""
    if value is None:
        return None, None
    if isinstance(value, bool) or not isinstance(value, (int, list)):
        raise ConfigError(f"gpu_id: expected an integer or a list of integers, got {value!r}")
    ids = value if isinstance(value, list) else [value]
    if not ids or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise ConfigError(f"gpu_id: expected a non-empty list of GPU numbers, got {value!r}")
    note = None
    if len(ids) > 1:
        note = (f"gpu_id lists {len(ids)} GPUs; this script uses cuda:{ids[0]} (for data-parallel training on "
                f"several GPUs run 'torchrun --nproc-per-node {len(ids)} -m -- cryocare_torch train ...')")
    return f"cuda:{ids[0]}", note


def resolve_pairs(even: Any, odd: Any, where: Path) -> list[tuple[Path, Path]]:
    """``even``/``odd`` as cryoCARE takes them: equal-length lists (paired by position, as RELION writes them
    from one tomograms.star row each), two files, or two folders (paired by file name, never by glob order)."""
    if isinstance(even, list) or isinstance(odd, list):
        if not (isinstance(even, list) and isinstance(odd, list)) or len(even) != len(odd) or not even:
            raise ConfigError("even and odd must be two non-empty lists of the same length", where)
        pairs = [(Path(str(e)), Path(str(o))) for e, o in zip(even, odd, strict=True)]
        for f in (f for pair in pairs for f in pair):
            if not f.exists():
                raise InputFileError("listed in the config but not found; check the path", f)
        return pairs
    if not isinstance(even, str) or not isinstance(odd, str):
        raise ConfigError("even and odd must be file or folder paths, or lists of files", where)
    return [(p.even, p.odd) for p in find_pairs(even=even, odd=odd)]


def _env_layers() -> tuple[Path | None, dict[str, dict[str, Any]]]:
    cfg_file = os.environ.get(ENV_CONFIG) or None
    sets = [s for s in os.environ.get(ENV_SET, "").split(";") if s.strip()]
    return (Path(cfg_file) if cfg_file else None), parse_sets(sets)


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, Mapping) else value
    return out


def build_config(mapped: dict[str, Any], data: Mapping[str, Any], where: Path) -> CryocareConfig:
    """Defaults < the mapped cryoCARE keys < JSON ``cryocare_torch`` < ``$CRYOCARE_TORCH_CONFIG`` < ``$..._SET``."""
    ours = data.get("cryocare_torch") or {}
    if not isinstance(ours, dict):
        raise ConfigError("cryocare_torch: expected an object of config sections (train, patches, predict...)", where)
    merged = _merge(mapped, ours)
    cfg_file, sets = _env_layers()
    if cfg_file is not None:
        # only the keys the file sets, so that its defaults do not undo the cryoCARE mapping
        merged = _merge(merged, load_config(cfg_file).model_dump(mode="json", exclude_unset=True))
    merged = _merge(merged, sets)
    try:
        return CryocareConfig.model_validate(merged)
    except ValidationError as err:
        msg = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"invalid setting ({msg})", where) from None

