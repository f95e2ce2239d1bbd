"""The CTF correction of a tilt series from its side files: which defocus belongs to which kept view.

Defocus, in order of precedence: ``CtfConfig.defocus_um`` (one value for every view), a defocus file
(CTFFIND/AreTomo text, IMOD ``.defocus`` or another ``.mdoc``; :mod:`cryocare_torch.io.defocus`), else the
series' own ``.mdoc`` (``Defocus``, or ``TargetDefocus`` when the readouts were not zeroed). Voltage, Cs and
amplitude contrast: the options, else the file's header, else 300 kV, 2.7 mm, 0.07.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import CtfConfig
from ..errors import ConfigError, InputFileError
from ..io.defocus import DefocusTable, read_defocus_file, read_mdoc_defocus
from ..logs import Log
from .ctf import ViewCtf, resolve_optics
from .tiltseries import TiltSeriesViews


def defocus_of_views(table: DefocusTable, views: TiltSeriesViews) -> np.ndarray:
    """Underfocus (um) of every kept view (angle order) from a table in ZValue or angle-sorted order."""
    if table.order == "zvalue":
        z = views.z_value
        if int(z.max()) >= table.defocus_um.size or np.isnan(table.defocus_um[z]).any():
            raise InputFileError(f"has no defocus for some ZValues of {views.source.name}", table.path)
        return table.defocus_um[z].astype(np.float64)
    return views.pick(table.defocus_um, table.path).astype(np.float64)


def build_view_ctf(
    cfg: CtfConfig | None,
    views: TiltSeriesViews,
    angles: np.ndarray,
    xf: np.ndarray | None,
    *,
    pixel_size: float | None = None,
    defocus_file: Path | None = None,
    log: Log | None = None,
) -> ViewCtf | None:
    """The correction of the kept views (angle order, with their ``.xf``), or None for mode ``none``."""
    if cfg is None or cfg.mode == "none":
        if defocus_file is not None:
            raise ConfigError("--defocus-file given without --ctf phaseflip or --ctf wiener")
        return None
    if cfg.defocus_um is not None and defocus_file is not None:
        raise ConfigError("give either --defocus (one value) or --defocus-file, not both")
    header: dict[str, float | None] = {}
    if cfg.defocus_um is not None:
        defocus = np.full(views.n, float(cfg.defocus_um))
    else:
        table = read_defocus_file(defocus_file) if defocus_file is not None else read_mdoc_defocus(views.source)
        defocus = defocus_of_views(table, views)
        header = {"voltage_kv": table.voltage_kv, "cs_mm": table.cs_mm,
                  "amplitude_contrast": table.amplitude_contrast}
    optics = resolve_optics(cfg.voltage_kv, cfg.cs_mm, cfg.amplitude_contrast, header)
    px = pixel_size if pixel_size is not None else views.pixel_size
    if px is None:
        raise ConfigError(f"{views.source.name} has no PixelSpacing; give --pixel-size for the CTF correction")
    shift = np.asarray(xf, dtype=np.float64)[:, 0, 2] if xf is not None else np.zeros(views.n)
    ctf = ViewCtf(cfg.mode, defocus, np.asarray(angles, dtype=np.float64), float(px), shift, **optics,
                  defocus_step_nm=cfg.defocus_step_nm, wiener_constant=cfg.wiener_constant)
    if log is not None:
        log(ctf.describe())
    return ctf
