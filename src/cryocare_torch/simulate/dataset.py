"""A complete simulated cryo-ET dataset: phantom -> tilt series -> even/odd/full/clean tomograms.

The tomograms are weighted back-projections at the output shape ``(d, h, w)`` of the normalised tilt
images ``counts / expected_mean - 1`` (see :meth:`TiltSeries.normalised`), all four from one call so
they share every processing step: ``even`` and ``odd`` carry half the dose each, ``full`` all of it,
and ``clean`` (the reference) is the same reconstruction of the noise-free tilt series, with the same
missing wedge and CTF. ``E[even] = E[odd] ~ clean``. Dense matter is dark (negative), as in real data.
``object_map`` is the specimen itself on the same grid and in the same units and sign, without noise, missing
wedge or CTF (:mod:`.object_map`): what a restoration that also fills the wedge and undoes the CTF aims at.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import SimulateConfig, config_to_dict
from ..errors import OutputError
from ..io.atomic import atomic_write_json, atomic_write_text, check_output
from ..io.mrc import VolumeMeta, write_volume
from ..tomo.backproject import weighted_backprojection
from .acquisition import TiltSeries, required_lateral_pad, simulate_tilt_series, tilt_angles
from .object_map import object_contrast
from .phantom import Phantom, make_phantom

TOMOGRAM_FILES = {"even": "tomo_even.mrc", "odd": "tomo_odd.mrc", "full": "tomo_full.mrc", "clean": "tomo_clean.mrc"}
TILT_FILES = {"even": "tilt_even.mrc", "odd": "tilt_odd.mrc", "full": "tilt_full.mrc", "clean": "tilt_clean.mrc"}


@dataclass
class SimulatedData:
    """Everything :func:`simulate` produces, as in-memory tensors (field of view ``(d, h, w)``)."""

    config: SimulateConfig
    truth_density: torch.Tensor
    """(d, h, w) float32 mean inner potential (V) of the specimen in the field of view."""
    object_map: torch.Tensor
    """(d, h, w) float32 the specimen as the tomograms show it (sign, units), without noise, wedge or CTF."""
    labels: torch.Tensor
    """(d, h, w) uint8 classes (see ``phantom.LABEL_NAMES``)."""
    decoration_centres: torch.Tensor
    """(N, 3) zyx voxel centres of the filament decorations inside the field of view."""
    decoration_filament: torch.Tensor
    complex_centres: torch.Tensor
    complex_kinds: list[str]
    tilt_series: TiltSeries
    even: torch.Tensor
    odd: torch.Tensor
    full: torch.Tensor
    clean: torch.Tensor

    @property
    def angles(self) -> torch.Tensor:
        return self.tilt_series.angles

    @property
    def pixel_size(self) -> float:
        return float(self.config.pixel_size)


def _reconstruct(ts: TiltSeries, shape: tuple[int, int, int]) -> dict[str, torch.Tensor]:
    """WBP of the four normalised image sets, stacked along y so they share one reconstruction."""
    d, h, w = shape
    names = ("even", "odd", "full", "clean")
    stack = torch.cat([ts.normalised(k) for k in names], dim=1)
    vol = weighted_backprojection(stack, ts.angles, d, width=w)
    return {k: vol[:, i * h : (i + 1) * h].contiguous().float() for i, k in enumerate(names)}


def _in_fov(centres: torch.Tensor, shape: tuple[int, int, int], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    c = centres.clone()
    c[:, 2] -= pad
    hi = torch.tensor(shape, dtype=c.dtype) - 1
    keep = ((c >= 0) & (c <= hi)).all(dim=1) if len(c) else torch.zeros(0, dtype=torch.bool)
    return c[keep], keep


def simulate(
    cfg: SimulateConfig | None = None, *, keep_frames: bool = False, frame_drift: torch.Tensor | None = None
) -> SimulatedData:
    """Simulate the specimen, the dose-fractionated tilt series and the four tomograms for ``cfg``."""
    cfg = cfg or SimulateConfig()
    d, h, w = (int(s) for s in cfg.shape)
    shape = (d, h, w)
    pad = required_lateral_pad(shape, max(abs(cfg.tilt_min), abs(cfg.tilt_max)))
    phantom: Phantom = make_phantom(cfg, lateral_pad=pad)
    ts = simulate_tilt_series(phantom, cfg, keep_frames=keep_frames, frame_drift=frame_drift)
    tomos = _reconstruct(ts, shape)
    dec, keep = _in_fov(phantom.decoration_centres, shape, pad)
    cx, keep_cx = _in_fov(phantom.complex_centres, shape, pad)
    truth = phantom.density[..., pad : pad + w].contiguous()
    return SimulatedData(
        config=cfg,
        truth_density=truth,
        object_map=object_contrast(truth, cfg),
        labels=phantom.labels[..., pad : pad + w].contiguous(),
        decoration_centres=dec,
        decoration_filament=phantom.decoration_filament[keep],
        complex_centres=cx,
        complex_kinds=[k for k, m in zip(phantom.complex_kinds, keep_cx.tolist(), strict=True) if m],
        tilt_series=ts,
        **tomos,
    )


def format_tlt(angles: torch.Tensor) -> str:
    """IMOD .tlt text: one angle per line."""
    return "".join(f"{float(a):.2f}\n" for a in angles)


def format_mdoc(
    ts: TiltSeries, image_file: str, image_size: tuple[int, int], frame_paths: list[str], voltage_kv: float = 300.0
) -> str:
    """A minimal SerialEM-style .mdoc: one ``[ZValue = i]`` section per tilt of the angle-sorted stack.

    ``DateTime`` follows the acquisition order (one tilt per minute), ``PriorRecordDose`` the dose
    received before the tilt, ``Defocus`` the tilt's true underfocus with SerialEM's sign (negative = under;
    left out without a CTF), so that ``cryocare deconvolve --defocus-file`` and ``prepare`` can read it.
    """
    start = _dt.datetime(2025, 1, 1, 10, 0, 0)
    out = io.StringIO()
    out.write(f"PixelSpacing = {ts.pixel_size:g}\nVoltage = {voltage_kv:g}\nImageFile = {image_file}\n")
    out.write(f"ImageSize = {image_size[1]} {image_size[0]}\nDataMode = 2\n\n")
    out.write("[T = SerialEM: simulated by cryocare-torch (dose-fractionated, known ground truth)]\n\n")
    for i, angle in enumerate(ts.angles.tolist()):
        when = start + _dt.timedelta(minutes=int(ts.order[i]))
        out.write(f"[ZValue = {i}]\n")
        out.write(f"TiltAngle = {angle:.2f}\n")
        out.write(f"ExposureDose = {ts.dose_per_tilt:g}\n")
        out.write(f"PriorRecordDose = {float(ts.prior_dose[i]):g}\n")
        if ts.defocus_um is not None:
            out.write(f"Defocus = {-float(ts.defocus_um[i]):.4g}\n")
        out.write(f"PixelSpacing = {ts.pixel_size:g}\n")
        out.write(f"NumSubFrames = {ts.n_frames}\n")
        out.write(f"SubFramePath = {frame_paths[i]}\n")
        out.write(f"DateTime = {when.strftime('%d-%b-%y  %H:%M:%S')}\n\n")
    return out.getvalue()


def _csv(rows: Sequence[Sequence[object]], header: list[str]) -> str:
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(header)
    for r in rows:
        wr.writerow([f"{v:.2f}" if isinstance(v, float) else v for v in r])
    return buf.getvalue()


def write_dataset(
    cfg: SimulateConfig | None, out_dir: str | Path, *, overwrite: bool = False, frames: bool = False
) -> dict[str, Path]:
    """Simulate ``cfg`` and write it to ``out_dir`` (created if missing); returns name -> path.

    Writes ``tomo_{even,odd,full,clean}.mrc``, ``object.mrc`` (the specimen as a perfect tomogram would show
    it: no noise, wedge or CTF; score with :mod:`cryocare_torch.evaluate.object_scores`), ``truth_density.mrc``,
    ``labels.mrc``,
    ``tilt_{even,odd,full,clean}.mrc`` (angle-sorted stacks; counts, clean = expected counts of the full
    exposure), ``tilts.tlt``, ``tilts.mdoc``, ``decorations.csv``, ``complexes.csv`` and
    ``simulation.json``; with ``frames`` also ``frames/tilt_NNN.mrc`` (the Poisson frames of each tilt).
    Every file is written atomically; existing files are refused before any work unless ``overwrite``.
    """
    cfg = cfg or SimulateConfig()
    out = Path(out_dir)
    paths = _output_paths(cfg, out, overwrite, frames)
    data = simulate(cfg, keep_frames=frames)
    ts = data.tilt_series
    px = float(cfg.pixel_size)
    for k in TOMOGRAM_FILES:
        write_volume(paths[f"tomo_{k}"], getattr(data, k).numpy(), voxel_size=px, overwrite=overwrite)
    stack_meta = VolumeMeta(shape=tuple(ts.clean.shape), voxel_size=(px, px, px), is_stack=True)
    for k in TILT_FILES:
        write_volume(paths[f"tilt_{k}"], getattr(ts, k).numpy(), stack_meta, overwrite=overwrite)
    write_volume(paths["object"], data.object_map.numpy(), voxel_size=px, overwrite=overwrite)
    write_volume(paths["truth_density"], data.truth_density.numpy(), voxel_size=px, overwrite=overwrite)
    write_volume(paths["labels"], data.labels.numpy().astype(np.int8), voxel_size=px, overwrite=overwrite)

    frame_paths = [f"frames/tilt_{i:03d}.mrc" for i in range(len(ts.angles))]
    if frames and ts.frames is not None:
        (out / "frames").mkdir(exist_ok=True)
        fmeta = VolumeMeta(shape=tuple(ts.frames.shape[1:]), voxel_size=(px, px, px), is_stack=True)
        for i, rel in enumerate(frame_paths):
            paths[f"frames_{i:03d}"] = write_volume(out / rel, ts.frames[i].numpy(), fmeta, overwrite=overwrite)
    _write_side_files(cfg, data, paths, frame_paths, overwrite)
    return paths


def _output_paths(cfg: SimulateConfig, out: Path, overwrite: bool, frames: bool) -> dict[str, Path]:
    """The files of :func:`write_dataset`, checked (existing ones, free space) before the simulation runs."""
    if out.exists() and not out.is_dir():
        raise OutputError("output path exists and is not a folder; choose another name", out)
    names = {**{f"tomo_{k}": v for k, v in TOMOGRAM_FILES.items()}, **{f"tilt_{k}": v for k, v in TILT_FILES.items()}}
    names |= {"object": "object.mrc", "truth_density": "truth_density.mrc", "labels": "labels.mrc",
              "tlt": "tilts.tlt", "mdoc": "tilts.mdoc",
              "decorations": "decorations.csv", "complexes": "complexes.csv", "config": "simulation.json"}
    paths = {k: out / v for k, v in names.items()}
    if out.exists():
        for p in paths.values():
            check_output(p, overwrite=overwrite)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder ({exc.strerror})", out) from None
    # refuse a disk without room before the simulation runs: 6 float32 + 1 int8 volumes, 4 float32 stacks
    d, h, w = (int(s) for s in cfg.shape)
    n_tilts = len(tilt_angles(cfg))
    nbytes = (6 * 4 + 1) * d * h * w + 4 * 4 * n_tilts * h * w
    if frames:
        nbytes += 4 * n_tilts * cfg.n_frames * h * w
    check_output(paths["tomo_even"], overwrite=True, nbytes=nbytes)  # existing files were checked above
    return paths


def _write_side_files(cfg: SimulateConfig, data: SimulatedData, paths: dict[str, Path], frame_paths: list[str],
                      overwrite: bool) -> None:
    """``tilts.tlt``, ``tilts.mdoc``, ``decorations.csv``, ``complexes.csv`` and ``simulation.json``."""
    ts, px = data.tilt_series, float(cfg.pixel_size)
    h, w = ts.clean.shape[-2:]
    atomic_write_text(paths["tlt"], format_tlt(ts.angles), overwrite=overwrite)
    mdoc = format_mdoc(ts, TILT_FILES["full"], (h, w), frame_paths, cfg.voltage_kv)
    atomic_write_text(paths["mdoc"], mdoc, overwrite=overwrite)
    dec = torch.cat([data.decoration_centres, data.decoration_filament[:, None].float()], dim=1).numpy()
    atomic_write_text(paths["decorations"], _csv(
        [[float(r[0]), float(r[1]), float(r[2]), int(r[3])] for r in dec], ["z", "y", "x", "filament"]
    ), overwrite=overwrite)
    cx = data.complex_centres.numpy()
    atomic_write_text(paths["complexes"], _csv(
        [[float(r[0]), float(r[1]), float(r[2]), kind] for r, kind in zip(cx, data.complex_kinds, strict=True)],
        ["z", "y", "x", "kind"],
    ), overwrite=overwrite)
    atomic_write_json(paths["config"], {"simulate": config_to_dict(cfg), "tilt_angles": tilt_angles(cfg).tolist(),
                                        "acquisition_rank": ts.order.tolist(), "voxel_size": px}, overwrite=overwrite)
