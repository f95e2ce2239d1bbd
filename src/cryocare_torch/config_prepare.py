"""Settings of ``cryocare prepare``'s stages on raw data (sections of :class:`~cryocare_torch.config.CryocareConfig`,
which re-exports them): CTF correction of the aligned views and motion correction of the movies.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .config_runs import Section


class CtfConfig(Section):
    """CTF correction of the aligned views before back-projection (``cryocare prepare t2t --ctf``)."""

    mode: Literal["none", "phaseflip", "wiener"] = Field("none", description="none, phaseflip or wiener (per view).")
    defocus_um: float | None = Field(None, gt=0, le=20, description="One underfocus (um) for every view.")
    voltage_kv: float | None = Field(None, gt=0, le=1000, description="kV (default: .mdoc/CTFFIND header, else 300).")
    cs_mm: float | None = Field(None, ge=0, le=10, description="Spherical aberration mm (default: header, else 2.7).")
    amplitude_contrast: float | None = Field(None, ge=0, lt=1, description="Amplitude contrast (default 0.07).")
    defocus_step_nm: float = Field(50.0, gt=0, le=1000, description="Largest defocus step between strips (nm).")
    wiener_constant: float = Field(0.1, gt=0, le=10, description="Wiener: CTF / (CTF^2 + this).")


class MotionConfig(Section):
    """Motion correction of movies (``cryocare prepare motion`` and the movie paths of ``cryocare prepare``)."""

    bfactor: float | None = Field(
        None, ge=0, description="B-factor (A^2) of the alignment low-pass (default: chosen from the data).")
    group: int | None = Field(None, ge=1, description="Frames per aligned window (default: chosen from the data).")
    max_error: float = Field(
        0.5, gt=0, description="Largest estimated rms drift error (pixels) of a movie that is corrected; "
        "above it the movie is left unshifted with a warning.")
    error_fraction: float = Field(
        0.5, gt=0, le=1, description="Largest estimated rms drift error of a corrected movie as a fraction of "
        "the drift's expected rms (both limits apply).")
    defects: bool = Field(True, description="Find hot/dead pixels and replace them before anything else.")
    defect_z: float = Field(8.0, gt=3, description="Hot-pixel threshold in robust spreads above the neighbours.")
    check_gain: bool = Field(True, description="Warn when another of the gain's 8 orientations fits the frames better.")


class DeconvConfig(Section):
    """CTF deconvolution of a (restored) tomogram, ``cryocare deconvolve``: a Wiener filter with the SNR model of
    Tegunov's tom_deconv, whose parameters (and defaults) IsoNet's ``deconv`` and Warp use too."""

    defocus: float | None = Field(
        None, gt=0, le=20, description="Underfocus (um) of the tomogram (default: the median of --defocus-file).")
    strength: float = Field(
        1.0, ge=0, le=3, description="Assumed SNR at low frequency, 10^(3 x this) (tom_deconv/IsoNet deconvstrength).")
    snr_falloff: float = Field(
        1.0, ge=0, le=10, description="SNR falls as exp(-100 x this x f / voxel size in A), f the fraction of Nyquist "
        "(tom_deconv/IsoNet snrfalloff).")
    highpass_nyquist: float = Field(
        0.02, gt=0, le=1, description="Raised-cosine high-pass up to this fraction of Nyquist (tom_deconv/IsoNet).")
    phase_flipped: bool = Field(False, description="The tomogram was phase-flipped (prepare --ctf phaseflip): |CTF|.")
    voltage_kv: float | None = Field(None, gt=0, le=1000, description="kV (default: the defocus file's, else 300).")
    cs_mm: float | None = Field(None, ge=0, le=10, description="Spherical aberration mm (default: file's, else 2.7).")
    amplitude_contrast: float | None = Field(None, ge=0, lt=1, description="Amplitude contrast (default 0.07).")
