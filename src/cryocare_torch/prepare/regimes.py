"""The six cryo-CARE training regimes (Buchholz et al. 2019) from raw frames, ``.mdoc`` and alignment.

3D (tomogram pairs, one reconstruction geometry: same angles, transforms, thickness, binning):

* **T2T-df** (dose fractionation) -- even and odd frame sums of every tilt, aligned, each reconstructed;
* **T2T-eoa** (even/odd acquisition) -- the full sums of the tilts with even and with odd acquisition
  numbers, each half reconstructed with the angular weights of its own (doubled) spacing;
* **P2P then reconstruct** -- a 2D network trained on P2P-df pairs restores every tilt (both frame halves,
  averaged), and the restored series is reconstructed
  (:func:`cryocare_torch.workflows.p2p.p2p_reconstruct`: it trains and predicts, so it is a workflow).

2D (image-stack pairs, one image pair per section; training treats stacks as 2D):

* **P2P-df** -- even/odd frame sums of each movie (motion-corrected), raw tilt geometry;
* **P2P-ip** -- first and second half of each movie summed *without* alignment;
* **P2P-tap** -- each tilt and its neighbour in angle, from the aligned full sums (``<name>_p2p_tap_even``
  holds views ``0..n-2``, ``_odd`` views ``1..n-1``); ``<name>_p2p_tap_aligned.mrc`` holds every aligned tilt,
  the images a P2P-tap network restores one by one.

Views are normalised to contrast (``view / mean - 1``) before reconstruction, as the simulator does. T2T
halves can be CTF-corrected view by view before back-projection (``ctf``: phase flipping or a Wiener-type
filter in strips of defocus, :mod:`cryocare_torch.prepare.ctf`), both halves alike.
Outputs go to ``out_dir`` as ``<name>_<regime>_{even,odd}.mrc`` (P2P-df/-ip: the stacks in
``out_dir/tiltseries``) plus ``<name>_<regime>_pairs.txt``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import CtfConfig
from ..errors import ConfigError
from .ctf_inputs import build_view_ctf
from .pipeline import Alignment, Log, PreparedPair, RawTiltSeries, load_alignment, tiltseries_stacks, write_pair_list
from .tiltseries import acquisition_halves, adjacent_pairs, write_acquisition_halves
from .views import Normalization, copy_views, reconstruct_views, sibling

T2T_REGIMES = ("df", "eoa")
P2P_REGIMES = ("df", "ip", "tap")


def _say(log: Log | None) -> Log:
    return log or (lambda _m: None)


def prepare_t2t(
    raw: RawTiltSeries,
    alignment: Alignment,
    out_dir: str | Path,
    *,
    regime: str = "df",
    thickness: int,
    binning: int = 1,
    normalize: Normalization = "mean",
    overwrite: bool = False,
    progress: bool = False,
    log: Log | None = None,
    ctf: CtfConfig | None = None,
    defocus_file: Path | None = None,
) -> PreparedPair:
    """T2T-df or T2T-eoa tomogram halves ``<out>/<name>_t2t_<regime>_{even,odd}.mrc`` (thickness and binning
    in binned voxels; voxel size = pixel size x binning); ``ctf``/``defocus_file``: see
    :func:`~cryocare_torch.prepare.ctf_inputs.build_view_ctf`."""
    if regime not in T2T_REGIMES:
        raise ConfigError(f"unknown T2T regime {regime!r}; use df (dose fractionation) or eoa (even/odd acquisition)")
    say = _say(log)
    out = Path(out_dir)
    angles, xf = load_alignment(alignment, raw.views())  # side files and CTF inputs are checked before any work
    view_ctf = build_view_ctf(ctf, raw.views(), angles, xf, pixel_size=raw.pixel_size, defocus_file=defocus_file,
                              log=say)
    views, stacks = tiltseries_stacks(raw, out, need_frames=regime == "df", overwrite=overwrite, log=log,
                                      alignment=alignment)
    prefix = out / f"{views.name}_t2t_{regime}"
    halves: dict[str, Path] = {}
    if regime == "df":
        for half in ("even", "odd"):
            say(f"reconstructing the {half} frame sums of {views.n} tilts (T2T-df)")
            halves[half] = reconstruct_views(stacks[half], angles, sibling(prefix, f"_{half}.mrc"), thickness, xf=xf,
                                             binning=binning, normalize=normalize, overwrite=overwrite,
                                             progress=progress, ctf=view_ctf)
    else:
        write_acquisition_halves(stacks["sum"], views, stacks["sum"].parent / views.name, xf=xf, angles=angles,
                                 overwrite=True)
        for half, idx in zip(("even", "odd"), acquisition_halves(views), strict=True):
            say(f"reconstructing the {idx.size} tilts of {half} acquisition number (T2T-eoa)")
            halves[half] = reconstruct_views(stacks["sum"], angles, sibling(prefix, f"_{half}.mrc"), thickness,
                                             indices=idx, xf=xf, binning=binning, normalize=normalize,
                                             overwrite=overwrite, progress=progress, ctf=view_ctf)
    name = f"{views.name}_t2t_{regime}"
    lst = write_pair_list(sibling(prefix, "_pairs.txt"), [(name, halves["even"], halves["odd"])], overwrite=True)
    return PreparedPair(name, f"t2t-{regime}", halves["even"], halves["odd"], lst)


def prepare_p2p(
    raw: RawTiltSeries,
    alignment: Alignment,
    out_dir: str | Path,
    *,
    regime: str = "df",
    overwrite: bool = False,
    log: Log | None = None,
) -> PreparedPair:
    """P2P-df, P2P-ip or P2P-tap image-stack pairs (see module docs)."""
    if regime not in P2P_REGIMES:
        raise ConfigError(f"unknown P2P regime {regime!r}; use df (dose fractionation), ip (first/second half of "
                          "each movie, unaligned) or tap (adjacent tilt angles)")
    say = _say(log)
    out = Path(out_dir)
    views, stacks = tiltseries_stacks(raw, out, need_frames=regime != "tap", overwrite=overwrite, log=log,
                                      alignment=alignment)
    name = f"{views.name}_p2p_{regime}"
    prefix = out / name
    extra: dict[str, Path] = {}
    if regime == "df":
        even, odd = stacks["even"], stacks["odd"]
    elif regime == "ip":
        even, odd = stacks["firsthalf"], stacks["secondhalf"]
    else:
        angles, xf = load_alignment(alignment, views)
        if xf is None:
            say("no --xf/--aln given: pairing the unaligned views (adjacent tilts should be aligned)")
        pairs = adjacent_pairs(angles)
        say(f"pairing {len(pairs)} adjacent tilts (P2P-tap)")
        sel = {"even": pairs[:, 0], "odd": pairs[:, 1], "aligned": np.arange(views.n)}
        made = {k: copy_views(stacks["sum"], sibling(prefix, f"_{k}.mrc"), idx,
                              xf=xf[idx] if xf is not None else None, overwrite=overwrite,
                              label=f"cryocare-torch: P2P-tap {k}") for k, idx in sel.items()}
        even, odd, extra = made["even"], made["odd"], {"aligned": made["aligned"]}
    lst = write_pair_list(sibling(prefix, "_pairs.txt"), [(name, even, odd)], overwrite=True)
    return PreparedPair(name, f"p2p-{regime}", even, odd, lst, extra)
