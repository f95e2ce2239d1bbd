"""P2P then reconstruct (Buchholz et al. 2019): train a 2D network on the P2P-df pairs of
:func:`cryocare_torch.prepare.regimes.prepare_p2p`, restore every tilt, reconstruct the restored series."""

from __future__ import annotations

from pathlib import Path

from ..config import CryocareConfig, CtfConfig
from ..io.atomic import check_output
from ..logs import Log, quiet
from ..predict import half_paths
from ..prepare.ctf_inputs import build_view_ctf
from ..prepare.pipeline import Alignment, RawTiltSeries, load_alignment
from ..prepare.regimes import prepare_p2p
from ..prepare.views import Normalization, reconstruct_views, sibling
from . import api


def p2p_reconstruct(
    raw: RawTiltSeries,
    alignment: Alignment,
    out_dir: str | Path,
    *,
    thickness: int,
    config: CryocareConfig | None = None,
    binning: int = 1,
    normalize: Normalization = "mean",
    overwrite: bool = False,
    progress: bool = False,
    log: Log | None = None,
    ctf: CtfConfig | None = None,
    defocus_file: Path | None = None,
) -> dict[str, Path]:
    """P2P then reconstruct: train a 2D network on the P2P-df pairs, restore every tilt, reconstruct.

    Writes ``<name>_p2p_df_model/`` (checkpoints), ``<name>_p2p_restored.mrc`` (restored tilts, raw
    geometry) and ``<name>_p2p_rec.mrc``; with ``config.predict.write_halves`` also the restored halves and
    their reconstructions ``<name>_p2p_rec_{even,odd}.mrc`` (for half-map FSC). Returns the paths by kind.
    ``ctf``/``defocus_file``: CTF-correct the restored tilts before back-projection, as ``prepare_t2t`` does.
    """
    cfg = config or CryocareConfig()
    out = Path(out_dir)
    views = raw.views()
    angles, xf = load_alignment(alignment, views)
    view_ctf = build_view_ctf(ctf, views, angles, xf, pixel_size=raw.pixel_size, defocus_file=defocus_file, log=log)
    pair = prepare_p2p(raw, alignment, out, regime="df", overwrite=overwrite, log=log)
    stem = out / f"{views.name}_p2p"
    restored = sibling(stem, "_restored.mrc")
    recs = {"rec": sibling(stem, "_rec.mrc")}
    if cfg.predict.write_halves:
        recs |= {"rec_even": sibling(stem, "_rec_even.mrc"), "rec_odd": sibling(stem, "_rec_odd.mrc")}
    for p in (restored, *half_paths(restored), *recs.values()):
        check_output(p, overwrite=overwrite)
    best = api.train([(pair.even, pair.odd)], sibling(stem, "_df_model"), cfg, progress=progress, log=log)
    api.predict(best, pair.even, pair.odd, restored, cfg, overwrite=overwrite, progress=progress, log=log)
    sources = {"rec": restored}
    if cfg.predict.write_halves:
        sources |= dict(zip(("rec_even", "rec_odd"), half_paths(restored), strict=True))
    result = {"model": best, "restored": restored}
    for key, src in sources.items():
        (log or quiet)(f"reconstructing the restored tilts ({src.name})")
        result[key] = reconstruct_views(src, angles, recs[key], thickness, xf=xf, binning=binning,
                                        normalize=normalize, overwrite=overwrite, progress=progress, ctf=view_ctf)
    return result
