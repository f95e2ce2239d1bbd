"""Raw microscope data with known truth: drifting movies, a gain reference, a misaligned tilt series.

The input of :mod:`cryocare_torch.prepare` as a microscope and SerialEM would leave it, built from the
simulator's public pieces (:func:`make_phantom`, :func:`simulate_tilt_series` and its ``frame_drift`` hook):

* **drift**: every movie drifts like beam-induced motion (fast at first, slowing down, a random direction
  per tilt), ``drift_px`` pixels of path in all, mean position 0;
* **misalignment**: each tilt is shifted (up to ``max_shift_px`` in y and x) and rotated about the image
  centre (tilt axis ``tilt_axis_deg`` plus jitter); ``xf`` is the true IMOD transform raw -> aligned, so
  the raw frames are ``apply_xf(aligned frames, invert_xf(xf))``. The shift is made by the simulator
  itself (its ``frame_drift`` hook: exact, with real content coming in at the borders as on a camera)
  and the rotation by :func:`~cryocare_torch.tomo.align.apply_xf` (bicubic; corners it cannot fill get
  the mean);
* **gain**: per-pixel sensitivity with column banding (mean 1); stored frames are divided by it, so
  ``frames * gain`` (``apply_gain``) restores them;
* **files** (:func:`write_raw_dataset`): one LZW TIFF movie per tilt (``frames/``), ``gain.mrc``, a SerialEM
  ``.mdoc`` with ZValues in dose-symmetric acquisition order and Windows ``SubFramePath`` entries, the
  SerialEM-style stack of unaligned sums in that order, and the angle-sorted true ``.xf`` and ``.tlt``.

The simulator's own reconstructions (``reference``) come from the same Poisson frames before misalignment:
frames aligned with the *true* drift (:func:`~cryocare_torch.prepare.frames.frame_sums`), normalised by the
known expected mean (``counts / mean - 1``) and weighted-back-projected with the true geometry -- T2T-df
halves (``even``/``odd``/``full``), T2T-eoa halves (full sums of even/odd acquisition numbers, each with its
own angles) and ``clean``, the noise-free, drift-free reconstruction (the truth for scoring).
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import SimulateConfig, config_to_dict
from ..errors import OutputError
from ..io.atomic import atomic_write_json, check_output
from ..io.imod import write_tlt, write_xf
from ..io.mdoc import write_mdoc
from ..io.mrc import VolumeMeta, write_volume
from ..io.tiff import write_tiff_movie
from ..tomo.align import apply_xf, invert_xf
from ..tomo.backproject import weighted_backprojection
from ..tomo.frames import frame_sums
from ..tomo.projector import project
from .acquisition import TiltSeries, required_lateral_pad, simulate_tilt_series, tilt_angles
from .object_map import object_contrast
from .phantom import make_phantom

RAW_DEFAULTS: dict[str, Any] = dict(shape=(48, 128, 128), pixel_size=12.0, tilt_step=3.0, n_frames=6)
"""128-pixel frames at the physical contrast keep the drift measurable (peak z ~ 17-22, errors ~0.1 px);
64-pixel frames need ``contrast_scale=3`` for that (real movies are 4k pixels wide)."""
REFERENCE_NAMES = ("even", "odd", "full", "clean", "eoa_even", "eoa_odd")


def raw_config(**overrides: Any) -> SimulateConfig:
    """A :class:`SimulateConfig` with :data:`RAW_DEFAULTS`, updated by ``overrides``."""
    return SimulateConfig(**{**RAW_DEFAULTS, **overrides})


def beam_drift(n_tilts: int, n_frames: int, total_px: float, rng: np.random.Generator) -> torch.Tensor:
    """``(n_tilts, n_frames, 2)`` (dy, dx) drift: steps decaying over the movie, path length ``total_px``."""
    f = np.arange(n_frames - 1)
    size = np.exp(-f / max(n_frames / 3.0, 1.0))
    out = np.zeros((n_tilts, n_frames, 2))
    for i in range(n_tilts):
        a = rng.uniform(0, 2 * np.pi)
        steps = size[:, None] * np.array([np.sin(a), np.cos(a)]) + rng.normal(0, 0.2, (n_frames - 1, 2)) * size[:, None]
        steps *= total_px / max(np.linalg.norm(steps, axis=1).sum(), 1e-9)
        path = np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
        out[i] = path - path.mean(axis=0)
    return torch.from_numpy(out).float()


def tilt_axis_rotation(n: int, tilt_axis_deg: float, jitter_deg: float, rng: np.random.Generator) -> torch.Tensor:
    """``(n, 2, 3)`` rotations by ``-(tilt_axis_deg + jitter)`` (raw tilt axis -> vertical), no shift."""
    t = np.deg2rad(-(tilt_axis_deg + rng.uniform(-jitter_deg, jitter_deg, n)))
    xf = np.zeros((n, 2, 3))
    xf[:, 0, 0], xf[:, 0, 1], xf[:, 1, 0], xf[:, 1, 1] = np.cos(t), -np.sin(t), np.sin(t), np.cos(t)
    return torch.from_numpy(xf)


def gain_reference(shape: tuple[int, int], spread: float, rng: np.random.Generator) -> torch.Tensor:
    """Positive ``(h, w)`` gain, mean 1: per-pixel spread plus column banding (half as strong)."""
    h, w = shape
    g = 1.0 + spread * rng.normal(size=(h, w)) + 0.5 * spread * rng.normal(size=(1, w))
    g = np.clip(g, 0.2, None)
    return torch.from_numpy(g / g.mean()).float()


class _CroppingProjector:
    """Projects once at the widest detector asked for; narrower (same parity) requests are central crops."""

    def __init__(self) -> None:
        self.cache: tuple[int, torch.Tensor] | None = None

    def __call__(self, volume: torch.Tensor, angles: torch.Tensor, *, detector_width: int) -> torch.Tensor:
        if self.cache is not None and self.cache[0] >= detector_width and (self.cache[0] - detector_width) % 2 == 0:
            k = (self.cache[0] - detector_width) // 2
            return self.cache[1][..., k : k + detector_width]
        proj = project(volume, angles, detector_width=detector_width)
        self.cache = (detector_width, proj)
        return proj


@dataclass
class RawAcquisition:
    """A simulated raw acquisition; per-tilt arrays are sorted by angle."""

    config: SimulateConfig
    angles: torch.Tensor
    order: torch.Tensor
    """(n,) acquisition rank of each tilt (0 = first exposed)."""
    frames: torch.Tensor
    """(n, n_frames, h, w) float32 raw frames: drifting, misaligned, divided by ``gain``."""
    gain: torch.Tensor
    drift: torch.Tensor
    """(n, n_frames, 2) true drift (dy, dx) in pixels (specimen frame), mean position 0 in every movie."""
    offset: torch.Tensor
    """(n, 2) true (dy, dx) shift of every tilt (specimen frame); ``xf`` undoes it."""
    xf: torch.Tensor
    """(n, 2, 3) true IMOD transforms raw -> aligned."""
    reference: dict[str, torch.Tensor]
    """The simulator's reconstructions (see module docs), keys :data:`REFERENCE_NAMES`."""
    tilts: dict[str, torch.Tensor]
    """Aligned, normalised tilt images ``even``/``odd``/``full`` (true drift) and ``clean`` (n, h, w)."""
    truth_density: torch.Tensor
    """(d, h, w) specimen potential in the field of view."""
    params: dict[str, float]
    defocus_um: torch.Tensor | None = None
    """(n,) true underfocus of each tilt at the image centre (um), also in the ``.mdoc``'s ``Defocus``."""


def _normalised_sums(ts: TiltSeries, drift: torch.Tensor) -> dict[str, torch.Tensor]:
    assert ts.frames is not None
    n_even = (ts.n_frames + 1) // 2
    frac = {"even": n_even / ts.n_frames, "odd": 1 - n_even / ts.n_frames, "full": 1.0}
    out = {k: torch.empty_like(ts.clean) for k in frac}
    for i in range(len(ts.angles)):
        sums = frame_sums(ts.frames[i], drift[i])
        for k in frac:
            out[k][i] = getattr(sums, k) / (float(ts.mean_counts[i]) * frac[k]) - 1.0
    return out


def reference_reconstructions(tilts: dict[str, torch.Tensor], angles: torch.Tensor, order: torch.Tensor,
                              shape: tuple[int, int, int]) -> dict[str, torch.Tensor]:
    """WBP of the normalised tilts: even/odd/full/clean with all angles (one call), eoa halves with theirs."""
    d, h, w = shape
    names = ("even", "odd", "full", "clean")
    vol = weighted_backprojection(torch.cat([tilts[k] for k in names], dim=1), angles, d, width=w)
    out = {k: vol[:, i * h : (i + 1) * h].contiguous() for i, k in enumerate(names)}
    for parity, key in ((0, "eoa_even"), (1, "eoa_odd")):
        idx = torch.nonzero(order % 2 == parity).flatten()
        out[key] = weighted_backprojection(tilts["full"][idx], angles[idx], d, width=w)
    return out


def simulate_raw(
    cfg: SimulateConfig | None = None,
    *,
    drift_px: float = 1.5,
    tilt_axis_deg: float = 2.0,
    jitter_deg: float = 0.5,
    max_shift_px: float = 3.0,
    gain_spread: float = 0.1,
) -> RawAcquisition:
    """Simulate raw frames, gain, true drift and alignment, and the simulator's reference reconstructions."""
    cfg = cfg or raw_config()
    d, h, w = (int(s) for s in cfg.shape)
    shape = (d, h, w)
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 7]))
    pad = required_lateral_pad(shape, max(abs(cfg.tilt_min), abs(cfg.tilt_max)))
    phantom = make_phantom(cfg, lateral_pad=pad)
    projector = _CroppingProjector()
    n = len(tilt_angles(cfg))
    drift = beam_drift(n, cfg.n_frames, drift_px, rng)
    offset = torch.from_numpy(rng.uniform(-max_shift_px, max_shift_px, (n, 2))).float()
    total = drift + offset[:, None]
    ts = simulate_tilt_series(phantom, cfg, keep_frames=True, frame_drift=total, projector=projector)
    still = simulate_tilt_series(phantom, cfg, projector=projector)  # noise-free truth without drift
    tilts = _normalised_sums(ts, total)
    tilts["clean"] = still.normalised("clean")
    reference = reference_reconstructions(tilts, ts.angles, ts.order, shape)
    rotation = tilt_axis_rotation(n, tilt_axis_deg, jitter_deg, rng)
    xf = rotation.clone()
    xf[:, 0, 2], xf[:, 1, 2] = -offset[:, 1].double(), -offset[:, 0].double()  # undo the shift after rotating
    inv = invert_xf(rotation)
    gain = gain_reference((h, w), gain_spread, rng)
    assert ts.frames is not None
    frames = torch.empty_like(ts.frames)
    for i in range(n):
        frames[i] = apply_xf(ts.frames[i], inv[i : i + 1].expand(cfg.n_frames, 2, 3)) / gain
    params = dict(drift_px=drift_px, tilt_axis_deg=tilt_axis_deg, jitter_deg=jitter_deg, max_shift_px=max_shift_px,
                  gain_spread=gain_spread)
    truth = phantom.density[..., pad : pad + shape[2]].contiguous()
    return RawAcquisition(cfg, ts.angles, ts.order, frames, gain, drift, offset, xf, reference, tilts, truth,
                          params, ts.defocus_um)


def raw_file_names(name: str) -> dict[str, str]:
    """Relative paths :func:`write_raw_dataset` writes besides the movies (``frames/``, keyed ``movie_<ZValue>``)."""
    names = {"mdoc": f"{name}.mdoc", "stack": f"{name}.mrc", "gain": "gain.mrc", "xf": f"{name}.xf",
             "tlt": f"{name}.tlt", "json": "simulation.json", "truth_density": "reference/truth_density.mrc",
             "object": "reference/object.mrc"}
    names |= {f"ref_{k}": f"reference/tomo_{k}.mrc" for k in REFERENCE_NAMES}
    names |= {f"ref_tilt_{k}": f"reference/tilt_{k}.mrc" for k in ("even", "odd", "full", "clean")}
    return names


def write_raw_dataset(
    cfg: SimulateConfig | None,
    out_dir: str | Path,
    *,
    name: str = "TS_01",
    overwrite: bool = False,
    **params: float,
) -> dict[str, Path]:
    """Simulate (:func:`simulate_raw` with ``params``) and write the raw dataset; returns key -> path.

    ``<name>.mdoc`` lists the views in acquisition order (ZValue 0 = first exposed), each with its
    ``SubFramePath`` (``frames/<name>_<ZValue>_<angle>.tif``, written as a Windows path as SerialEM does),
    ``DateTime`` one minute apart and ``ExposureDose``; ``<name>.mrc`` is the stack of unaligned,
    gain-corrected frame sums in the same order; ``<name>.xf``/``<name>.tlt`` are the true alignment in
    angle order (as after IMOD's sorting); ``reference/`` holds the simulator's reconstructions and
    aligned tilt images (angle order), ``reference/truth_density.mrc`` the specimen and ``reference/object.mrc``
    the specimen as the tomograms show it (:mod:`.object_map`).
    """
    cfg = cfg or raw_config()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError("output path exists and is not a folder; choose another name", out)
    n = len(tilt_angles(cfg))
    rel = raw_file_names(name)
    paths = {k: out / v for k, v in rel.items()}
    try:
        for sub in ("frames", "reference"):
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder ({exc.strerror})", out) from None
    for p in paths.values():
        check_output(p, overwrite=overwrite)
    raw = simulate_raw(cfg, **params)
    px = float(cfg.pixel_size)
    by_time = torch.argsort(raw.order)  # ZValue k = k-th exposed tilt
    movie_names = []
    for z, i in enumerate(by_time.tolist()):
        movie = f"{name}_{z:03d}_{float(raw.angles[i]):.1f}.tif"
        movie_names.append(movie)
        paths[f"movie_{z:03d}"] = write_tiff_movie(out / "frames" / movie, raw.frames[i].numpy(),
                                                   overwrite=overwrite)
    start = _dt.datetime(2025, 1, 1, 10, 0, 0)
    write_mdoc(paths["mdoc"], raw.angles[by_time].tolist(), list(range(n)), [cfg.dose_per_tilt] * n, px,
               [start + _dt.timedelta(minutes=z) for z in range(n)],
               [f"D:\\cryocare\\{name}\\frames\\{m}" for m in movie_names],
               tilt_axis_angle=raw.params["tilt_axis_deg"], image_file=rel["stack"], overwrite=overwrite,
               extra=_mdoc_defocus(raw, by_time))
    stack = (raw.frames * raw.gain).sum(dim=1)[by_time]
    stack_meta = VolumeMeta(shape=tuple(stack.shape), voxel_size=(px, px, px), is_stack=True)
    write_volume(paths["stack"], stack.numpy(), stack_meta, overwrite=overwrite)
    write_volume(paths["gain"], raw.gain.numpy(), voxel_size=px, overwrite=overwrite)
    write_xf(paths["xf"], raw.xf.numpy(), overwrite=overwrite)
    write_tlt(paths["tlt"], raw.angles.numpy(), overwrite=overwrite)
    for k, vol in raw.reference.items():
        write_volume(paths[f"ref_{k}"], vol.numpy(), voxel_size=px, overwrite=overwrite)
    tilt_meta = VolumeMeta(shape=tuple(raw.tilts["clean"].shape), voxel_size=(px, px, px), is_stack=True)
    for k, t in raw.tilts.items():
        write_volume(paths[f"ref_tilt_{k}"], t.numpy(), tilt_meta, overwrite=overwrite)
    write_volume(paths["truth_density"], raw.truth_density.numpy(), voxel_size=px, overwrite=overwrite)
    write_volume(paths["object"], object_contrast(raw.truth_density, cfg).numpy(), voxel_size=px, overwrite=overwrite)
    atomic_write_json(paths["json"], {
        "simulate": config_to_dict(cfg), "raw": raw.params, "name": name, "voxel_size": px,
        "tilt_angles": raw.angles.tolist(), "acquisition_rank": raw.order.tolist(),
        "drift_px": raw.drift.tolist(), "offset_px": raw.offset.tolist(), "xf": raw.xf.tolist(),
        "max_drift_px": max_drift(raw), "defocus_um": None if raw.defocus_um is None else raw.defocus_um.tolist(),
    }, overwrite=overwrite)
    return paths


def _mdoc_defocus(raw: RawAcquisition, by_time: torch.Tensor) -> dict[str, list[float]]:
    """SerialEM's ``Defocus`` (negative = underfocus, um) of every tilt in ZValue order and ``TargetDefocus``."""
    if raw.defocus_um is None:
        return {}
    d = raw.defocus_um[by_time]
    return {"Defocus": (-d).tolist(), "TargetDefocus": [-raw.config.defocus_um] * len(d)}


def max_drift(raw: RawAcquisition) -> float:
    """Largest frame displacement from the mean position, in pixels."""
    return float(math.sqrt(float(raw.drift.pow(2).sum(-1).max())))
