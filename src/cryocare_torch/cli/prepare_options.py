"""Option groups of ``cryocare prepare``: raw data, alignment and reconstruction."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from cyclopts import Group, Parameter
from pydantic import ValidationError

from ..config import CtfConfig, MotionConfig
from ..config_runs import updated
from ..errors import ConfigError
from ..io.imod import parse_exclude_list
from ..prepare.pipeline import Alignment, PreparedPair, RawTiltSeries

G_RAW = Group("Raw data", sort_key=1)
G_ALIGN = Group("Alignment", sort_key=2)
G_REC = Group("Reconstruction", sort_key=3)
G_CTF = Group("CTF correction", sort_key=4)


@Parameter(name="*", group=G_RAW)
@dataclass
class RawOptions:
    mdoc: Path
    "SerialEM tilt-series .mdoc (angles, acquisition order, dose, SubFramePath of each movie)."
    movie_dir: Path | None = None
    "Folder with the movies (default: the .mdoc's folder, then its frames/ sub-folder)."
    stack: Path | None = None
    "SerialEM stack (sections in ZValue order), for regimes that need no frames (t2t eoa, p2p tap)."
    gain: Path | None = None
    "Gain reference (MRC/TIFF); frames are multiplied by it."
    gain_flip: Literal["none", "x", "y"] = "none"
    "Flip of the gain after rotation (MotionCor2 -FlipGain 1 = y, 2 = x)."
    gain_rotation: int = 0
    "Counter-clockwise quarter turns of the gain (MotionCor2 -RotGain)."
    exclude: str | None = None
    "ZValues (0-based stack sections) to leave out, e.g. 0,3,38-40."
    pixel_size: float | None = None
    "Pixel size in Angstrom (default: the .mdoc's PixelSpacing)."
    dose_per_tilt: float | None = None
    "Dose per tilt in e/A^2 (default: the .mdoc's ExposureDose)."
    name: str | None = None
    "Name of the tilt series in output files (default: the .mdoc's name)."
    bfactor: Annotated[float | None, Parameter(help=MotionConfig.model_fields["bfactor"].description)] = None

    def build(self) -> RawTiltSeries:
        try:
            exclude = tuple(parse_exclude_list(self.exclude)) if self.exclude else ()
        except ValueError as exc:
            raise ConfigError(f"--exclude: {exc}") from None
        if self.gain_rotation not in (0, 1, 2, 3):
            raise ConfigError(f"--gain-rotation must be 0, 1, 2 or 3 quarter turns, got {self.gain_rotation}")
        return RawTiltSeries(self.mdoc, self.movie_dir, self.stack, self.gain, self.gain_flip, self.gain_rotation,
                             exclude, self.pixel_size, self.dose_per_tilt, self.name,
                             updated(MotionConfig(), bfactor=self.bfactor))


@Parameter(name="*", group=G_ALIGN)
@dataclass
class AlignOptions:
    xf: Path | None = None
    "IMOD .xf (raw -> aligned) for the angle-sorted series, before or after exclusion."
    tlt: Path | None = None
    "IMOD .tlt with the (refined) tilt angles (default: the .aln's or the .mdoc's)."
    aln: Path | None = None
    "AreTomo .aln instead of --xf (its sections index the angle-sorted series)."

    def build(self) -> Alignment:
        return Alignment(self.xf, self.tlt, self.aln)


@Parameter(name="*", group=G_REC)
@dataclass
class ReconOptions:
    thickness: int
    "Tomogram thickness in (binned) voxels."
    binning: int = 1
    "Bin the aligned views by this factor before reconstruction."
    normalize: Literal["mean", "none"] = "mean"
    "Per-view normalisation before back-projection: view/mean - 1 (contrast), or none."


@Parameter(name="*", group=G_CTF)
@dataclass
class CtfOptions:
    ctf: Literal["none", "phaseflip", "wiener"] = "none"
    ("Correct every aligned view for the CTF before back-projection: phaseflip (in strips of defocus, as IMOD "
     "ctfphaseflip) or wiener (CTF/(CTF^2+c)); defocus from the .mdoc unless --defocus or --defocus-file.")
    defocus: float | None = None
    "One underfocus in micrometres (positive) for every view, instead of the .mdoc's Defocus."
    defocus_file: Path | None = None
    "Per-view defocus: CTFFIND4 diagnostic .txt, AreTomo _CTF.txt, IMOD .defocus (angle-sorted views) or a .mdoc."
    voltage: float | None = None
    "Acceleration voltage in kV (default: the .mdoc's or CTFFIND's, else 300)."
    cs: float | None = None
    "Spherical aberration in mm (default: CTFFIND's, else 2.7)."
    amplitude_contrast: float | None = None
    "Amplitude contrast fraction (default: CTFFIND's, else 0.07)."
    defocus_step: float = 50.0
    "Largest defocus step (nm) between the strips of a tilted view."
    wiener_constant: float = 0.1
    "The c of --ctf wiener."

    def build(self) -> CtfConfig:
        try:
            return CtfConfig(mode=self.ctf, defocus_um=self.defocus, voltage_kv=self.voltage, cs_mm=self.cs,
                             amplitude_contrast=self.amplitude_contrast, defocus_step_nm=self.defocus_step,
                             wiener_constant=self.wiener_constant)
        except ValidationError as exc:
            e = exc.errors()[0]
            raise ConfigError(f"CTF options: {'.'.join(str(x) for x in e['loc'])}: {e['msg']}") from None


def report_pair(pair: PreparedPair) -> None:
    """Print a prepared pair's files and the command that trains on it."""
    print(f"even: {pair.even}\nodd: {pair.odd}\npair list: {pair.pair_list}")
    for k, v in pair.extra.items():
        print(f"{k}: {v}")
    print(f"next: cryocare denoise --even {pair.even} --odd {pair.odd} --output {pair.name}_denoised.mrc")
