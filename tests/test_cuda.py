"""CUDA paths on real hardware: training in mixed precision, prediction agreement, OOM retry, device errors.

Skipped where no CUDA GPU is present (CI has none); run on a GPU machine with ``pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cryocare_torch.config import CryocareConfig, ModelConfig
from cryocare_torch.errors import DeviceError
from cryocare_torch.io.mrc import read_volume, write_volume
from cryocare_torch.model import build_model
from cryocare_torch.predict import predict_tensor
from cryocare_torch.runtime import resolve_device
from cryocare_torch.workflows import api

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _pair(tmp_path: Path, shape: tuple[int, int, int] = (32, 64, 64)) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    signal = (np.sin(6 * xx) * np.cos(5 * yy) * np.cos(3 * zz)).astype(np.float32)
    paths = []
    for name in ("even", "odd"):
        noisy = signal + rng.normal(0, 1.0, shape).astype(np.float32)
        paths.append(write_volume(tmp_path / f"t_{name}.mrc", noisy, voxel_size=10.0))
    return paths[0], paths[1]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_learns_and_checkpoint_runs_on_cpu(tmp_path: Path, precision: str) -> None:
    even, odd = _pair(tmp_path)
    cfg = CryocareConfig()
    cfg.patches.patch_size, cfg.patches.n_patches = 16, 200
    cfg.train.device, cfg.train.precision = "cuda", precision
    cfg.train.epochs, cfg.train.steps_per_epoch, cfg.train.batch_size = 3, 40, 8
    logs: list[str] = []
    best = api.train([(even, odd)], tmp_path / "m", cfg, progress=False, log=logs.append)
    assert any("running on GPU" in m for m in logs), logs  # says which device runs
    hist = __import__("json").loads((tmp_path / "m" / "history.json").read_text())
    assert hist[-1]["val_loss"] < hist[0]["train_loss"]
    out_gpu, out_cpu = tmp_path / "gpu.mrc", tmp_path / "cpu.mrc"
    cfg.predict.device, cfg.predict.precision = "cuda", "fp32"
    api.predict(best, even, odd, out_gpu, cfg, progress=False)
    cfg.predict.device = "cpu"
    api.predict(best, even, odd, out_cpu, cfg, progress=False)
    a, meta = read_volume(out_gpu)
    b, _ = read_volume(out_cpu)
    assert meta.pixel_size == pytest.approx(10.0)
    assert np.abs(a - b).max() < 2e-3 * np.abs(b).max()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_prediction_agrees_with_fp32(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(), ndim=3).cuda().eval()
    vol = torch.nn.functional.avg_pool3d(torch.randn(1, 1, 48, 96, 96), 5, 1, 2)[0, 0]
    ref = predict_tensor(model, vol, device="cuda", dtype=torch.float32, tile_size=32, overlap=8)
    half = predict_tensor(model, vol, device="cuda", dtype=dtype, tile_size=32, overlap=8)
    mse = float(torch.mean((ref - half) ** 2))
    assert 10 * np.log10(float(ref.max() - ref.min()) ** 2 / mse) > 35.0


def test_oom_retries_with_smaller_tiles_and_matches_cpu() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(), ndim=3).eval()
    vol = torch.randn(64, 256, 256)
    cpu = predict_tensor(model, vol, device="cpu", dtype=torch.float32, tile_size=64, overlap=16)
    free, _ = torch.cuda.mem_get_info()
    hog = torch.empty(int(free - 1.5 * 2**30), dtype=torch.uint8, device="cuda")  # leave ~1.5 GiB
    logs: list[str] = []
    try:
        gpu = predict_tensor(model.cuda(), vol, device="cuda", dtype=torch.float32, tile_size=256, overlap=16,
                             batch_size=8, log=logs.append)
    finally:
        del hog
        torch.cuda.empty_cache()
    assert any("out of GPU memory" in m for m in logs), logs
    assert torch.allclose(gpu, cpu, atol=1e-3 * float(cpu.abs().max()))


def test_missing_gpu_index_is_a_clear_error(tmp_path: Path) -> None:
    n = torch.cuda.device_count()
    with pytest.raises(DeviceError, match=f"only {n} GPU"):
        resolve_device(f"cuda:{n}")
    even, odd = _pair(tmp_path, (16, 32, 32))
    proc = subprocess.run([sys.executable, "-m", "cryocare_torch.cli.main", "denoise", "--even", str(even), "--odd",
                           str(odd), "--output", str(tmp_path / "o.mrc"), "--device", f"cuda:{n}"],
                          capture_output=True, text=True)
    assert proc.returncode == 7 and proc.stderr.count("\n") == 1 and "GPU" in proc.stderr, proc.stderr
