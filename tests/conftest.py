"""Shared fixtures: small synthetic MRC files and a CLI runner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cryocare_torch.io.mrc import write_volume

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


@pytest.fixture
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip(f"real side files not found at {REALDATA} (they live in ../shared/realdata beside the checkout)")
    return REALDATA


@pytest.fixture
def small_pair(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(16, 32, 32)).astype(np.float32)
    even = write_volume(tmp_path / "t_even.mrc", signal + rng.normal(size=signal.shape).astype(np.float32),
                        voxel_size=10.0)
    odd = write_volume(tmp_path / "t_odd.mrc", signal + rng.normal(size=signal.shape).astype(np.float32),
                       voxel_size=10.0)
    return even, odd


def _run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cryocare_torch.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=timeout,
    )


@pytest.fixture
def cli():  # type: ignore[no-untyped-def]
    """Run ``cryocare ARGS`` in a subprocess (as a user would); returns the CompletedProcess."""
    return _run_cli
