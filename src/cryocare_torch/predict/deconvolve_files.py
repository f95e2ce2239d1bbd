"""``cryocare deconvolve`` on files: read a tomogram, find its defocus and optics, write the CTF-deconvolved volume
(:mod:`.deconvolve`) with the input's voxel size and origin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config_prepare import DeconvConfig
from ..errors import ConfigError, DataError
from ..io.atomic import check_output
from ..io.defocus import read_defocus_file
from ..io.mrc import write_volume
from ..io.volumes import read_volume_meta, read_whole_volume
from ..logs import Log, quiet
from ..prepare.ctf import resolve_optics
from .deconvolve import ctf_deconvolve


def tomogram_defocus(cfg: DeconvConfig, defocus_file: Path | None) -> tuple[float, dict[str, float | None], str]:
    """Underfocus (um) of the tomogram, the optics its file gives, and where the defocus came from.

    From a tilt series' defocus file the median over its views is taken: the views' defocus at the tilt axis,
    which back-projection averages."""
    if cfg.defocus is not None and defocus_file is not None:
        raise ConfigError("give either --defocus (one value) or --defocus-file, not both")
    if cfg.defocus is not None:
        return float(cfg.defocus), {}, "--defocus"
    if defocus_file is None:
        raise ConfigError("the CTF needs the defocus: give --defocus UM or --defocus-file (CTFFIND4, AreTomo "
                          "_CTF.txt, IMOD .defocus or the series' .mdoc)")
    table = read_defocus_file(defocus_file)
    values = table.defocus_um[np.isfinite(table.defocus_um)]
    header = {"voltage_kv": table.voltage_kv, "cs_mm": table.cs_mm, "amplitude_contrast": table.amplitude_contrast}
    return float(np.median(values)), header, f"median of {values.size} views in {defocus_file.name} ({table.source})"


def header_warnings(labels: tuple[str, ...], phase_flipped: bool) -> list[str]:
    """What the MRC labels written by ``cryocare prepare`` say against the chosen filter (one line each)."""
    text = " ".join(labels)
    out = []
    if "CTF phaseflip" in text and not phase_flipped:
        out.append("its header says the views were phase-flipped (cryocare prepare --ctf phaseflip); add "
                   "--phase-flipped, or the reversed bands are flipped back")
    if "CTF wiener" in text:
        out.append("its header says the views were already Wiener-filtered (cryocare prepare --ctf wiener); "
                   "deconvolving again over-corrects the CTF")
    return out


def deconvolve_file(input: Path, output: Path, cfg: DeconvConfig, *, defocus_file: Path | None = None,
                    voxel_size: float | None = None, overwrite: bool = False, log: Log = quiet) -> Path:
    """CTF-deconvolve the tomogram ``input`` into ``output`` (float32 MRC); the input is not modified."""
    meta = read_volume_meta(input)
    n_vox = int(np.prod(meta.shape))
    check_output(output, overwrite=overwrite, inputs=[input], nbytes=4 * n_vox + 1024)
    defocus, header, source = tomogram_defocus(cfg, defocus_file)
    optics = resolve_optics(cfg.voltage_kv, cfg.cs_mm, cfg.amplitude_contrast, header)
    volume, meta = read_whole_volume(input, voxel_size)
    for warning in header_warnings(meta.labels, cfg.phase_flipped):
        log(f"warning: {input.name}: {warning}")
    px = float(meta.voxel_size[0])
    if not px > 0:
        raise DataError(f"{input}: the header has no voxel size; give --voxel-size (Angstrom)")
    if not np.isfinite(volume).all():
        raise DataError(f"{input}: data contain NaN or Inf values; fix or crop the input")
    log(f"CTF deconvolution of {'x'.join(map(str, volume.shape))} voxels of {px:.4g} A: underfocus {defocus:.3g} um "
        f"({source}), {optics['voltage_kv']:g} kV, Cs {optics['cs_mm']:g} mm, amplitude contrast "
        f"{optics['amplitude_contrast']:g}, strength {cfg.strength:g}, falloff {cfg.snr_falloff:g}"
        f"{', phase-flipped' if cfg.phase_flipped else ''}")
    out = ctf_deconvolve(torch.from_numpy(volume), px, defocus, strength=cfg.strength, snr_falloff=cfg.snr_falloff,
                         highpass_nyquist=cfg.highpass_nyquist, phase_flipped=cfg.phase_flipped, **optics)
    del volume
    label = f"cryocare-torch deconvolve {defocus:.3g}um s{cfg.strength:g} f{cfg.snr_falloff:g}"
    return write_volume(output, out.numpy(), meta, overwrite=overwrite, label=label)
