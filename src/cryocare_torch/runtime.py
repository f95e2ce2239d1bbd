"""Device, precision and thread selection shared by training and prediction.

Never falls back silently: :func:`resolve_device` raises :class:`DeviceError` when the requested
device is missing, and :func:`describe` gives the one line the CLI prints about where work runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from .errors import ConfigError, DeviceError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available else ``cpu``; explicit names are checked."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("device 'cuda' requested but no CUDA GPU is available; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device '{name}' requested but only {torch.cuda.device_count()} GPU(s) exist")
    return dev


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype for ``precision`` on ``device`` (float32 means no autocast)."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise DeviceError("fp16 precision needs a CUDA GPU; use bf16 or fp32 on CPU")
        return torch.float16
    # auto
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Autocast to ``dtype`` on ``device``; a no-op for float32."""
    if dtype == torch.float32:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def set_threads(num_threads: int | None) -> int:
    """Set torch's intra-op threads (default: the CPUs this process may use). Returns the count."""
    if num_threads is None:
        try:
            num_threads = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - non-Linux
            num_threads = os.cpu_count() or 1
    torch.set_num_threads(max(1, int(num_threads)))
    return torch.get_num_threads()


def memory_format(ndim: int, device: torch.device) -> torch.memory_format:
    """channels_last(_3d) where it helps (oneDNN on CPU, cuDNN on GPU)."""
    return torch.channels_last_3d if ndim == 3 else torch.channels_last


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def place_model(model: ModuleT, device: torch.device | None, fmt: torch.memory_format) -> ModuleT:
    """``model.to(device, memory_format=fmt)`` in place; returns ``model``.

    ``nn.Module.to`` accepts ``memory_format`` (torch/nn/modules/module.py passes it to ``torch._C._nn._parse_to``)
    but torch's annotated overloads of ``Module.to`` omit it, hence the one ignore.
    """
    return model.to(device=device, memory_format=fmt)  # type: ignore[call-overload]


def tune_backend(device: torch.device) -> None:
    """On CUDA let cuDNN pick the fastest convolution algorithms (tile and patch shapes are fixed)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def describe(device: torch.device, dtype: torch.dtype) -> str:
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(idx)
        where = f"GPU {idx} ({name})"
    else:
        where = f"CPU ({torch.get_num_threads()} threads)"
    return f"running on {where}, precision {str(dtype).replace('torch.', '')}"


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None where the C library has none: musl, macOS, Windows)."""
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


def release_free_memory() -> None:
    """Give the pages that the C allocator keeps after ``free`` back to the system (glibc ``malloc_trim(0)``,
    all arenas). Without it, buffers freed between the z-slabs of a long prediction stay resident as heap
    fragments and resident memory creeps up with the number of slabs; a no-op on other C libraries."""
    fn = _malloc_trim()
    if fn is not None:
        fn(0)


@dataclass(frozen=True)
class Torchrun:
    """This process's place as torchrun describes it (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``LOCAL_WORLD_SIZE``); a single process without torchrun is rank 0 of 1."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.lstrip("-").isdigit():
        raise ConfigError(f"environment variable {name}={value!r} is not an integer (set by torchrun)")
    return int(value)


def torchrun_env() -> Torchrun:
    """The one reader of torchrun's environment; :class:`ConfigError` for a non-integer or a rank outside."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Torchrun()
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} is outside 0..{world - 1} (WORLD_SIZE={world}); start it with torchrun")
    return Torchrun(rank, world, local_rank, _env_int("LOCAL_WORLD_SIZE", world))


def torchrun_device(name: str, local_rank: int, option: str = "--device") -> torch.device:
    """A torchrun process's device: ``cuda:LOCAL_RANK`` where ``name`` resolves to CUDA, else as resolved."""
    device = resolve_device(name)
    if device.type != "cuda":
        return device
    if device.index is not None:
        raise ConfigError(f"{option} {name!r} names one GPU, but under torchrun each process uses cuda:LOCAL_RANK; "
                          "use --device cuda or auto")
    if local_rank >= torch.cuda.device_count():
        raise DeviceError(f"torchrun process with LOCAL_RANK {local_rank} needs GPU {local_rank} but only "
                          f"{torch.cuda.device_count()} GPU(s) exist; lower --nproc-per-node")
    return torch.device("cuda", local_rank)

