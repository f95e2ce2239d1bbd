"""Logs without a terminal: plain lines (no carriage returns), few of them, with loss, rate and time left."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from cryocare_torch.io.mrc import write_volume
from cryocare_torch.logs import LinePacer, PercentLog, format_duration, pace_text


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_line_pacer_prints_milestones_and_spaces_the_rest() -> None:
    clock = Clock()
    pacer = LinePacer(100, min_interval=10.0, heartbeat=30.0, clock=clock)
    printed = []
    for epoch in range(1, 101):  # 100 epochs of 1 s each
        clock.t += 1.0
        if pacer.due(epoch, final=epoch == 100):
            printed.append(epoch)
    # the first epoch, every 10th (milestones, which also restart the 10 s spacing), and the last
    assert printed == [1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    slow = LinePacer(100, min_interval=10.0, clock=clock)
    assert [e for e in range(1, 6) if (setattr(clock, "t", clock.t + 12.0) or slow.due(e))] == [1, 2, 3, 4, 5]
    beat = LinePacer(10, heartbeat=30.0, clock=clock)
    clock.t += 29.0
    assert not beat.heartbeat_due()
    clock.t += 2.0
    assert beat.heartbeat_due() and not beat.heartbeat_due()


def test_percent_log_one_line_per_tenth() -> None:
    clock, lines = Clock(), []
    log = PercentLog(200, "restoring t.mrc", lines.append, clock=clock)
    for _ in range(200):
        clock.t += 0.5
        log.update(1)
    assert len(lines) == 10
    assert lines[0] == "restoring t.mrc: 10% (20/200), 0:10 elapsed, 1:30 left"
    assert lines[-1].startswith("restoring t.mrc: 100% (200/200), 1:40 elapsed, 0:00 left")


def test_pace_text_and_durations() -> None:
    assert format_duration(59.6) == "1:00" and format_duration(3725) == "1:02:05"
    assert pace_text(100, 50.0, 300) == "2.00 steps/s, 2:30 left"
    assert pace_text(100, 50.0, 300, budget_left_s=60.0) == "2.00 steps/s, 1:00 left"
    assert pace_text(0, 0.0, 300) == "0.00 steps/s, ? left"


def test_denoise_log_without_terminal_is_plain_and_short(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    truth = ndimage.gaussian_filter(rng.normal(size=(32, 64, 64)), 1.5).astype(np.float32)
    for half in ("even", "odd"):
        write_volume(tmp_path / f"t_{half}.mrc", truth + rng.normal(size=truth.shape).astype(np.float32),
                     voxel_size=8.0)
    log_file = tmp_path / "denoise.log"
    minutes = 0.5
    t0 = time.monotonic()
    with open(log_file, "w") as fh:  # stderr redirected to a file, as under SLURM/RELION/nohup
        proc = subprocess.run([sys.executable, "-m", "cryocare_torch.cli", "denoise", "--even",
                               str(tmp_path / "t_even.mrc"), "--odd", str(tmp_path / "t_odd.mrc"), "--output",
                               str(tmp_path / "out.mrc"), "--max-minutes", str(minutes), "--patch-size", "16",
                               "--n-patches", "64", "--threads", "2"], stdout=fh, stderr=subprocess.STDOUT, timeout=600)
    wall = time.monotonic() - t0
    text = log_file.read_text()
    assert proc.returncode == 0, text
    assert "\r" not in text
    lines = text.splitlines()
    epochs = [ln for ln in lines if re.match(r"epoch \d+/\d+: train", ln)]
    assert epochs and all(re.search(r"val [\d.]+, .*[\d.]+ steps/s, \d+:\d\d left", ln) for ln in epochs), epochs
    assert len(lines) / minutes < 50, (len(lines), wall, lines)
    print(f"{len(lines)} log lines for {minutes} min of training ({wall:.0f} s wall): "
          f"{len(lines) / minutes:.0f} lines per training minute")
