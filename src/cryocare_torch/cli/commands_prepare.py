"""``cryocare prepare ...``: from the microscope's files (movies, gain, .mdoc, alignment) to training pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from cyclopts import App, Group, Parameter

from ..config import MotionConfig
from ..logs import log_stderr as _log
from ..prepare.frames import motion_correct_file, motion_correct_tilt_series
from ..prepare.halves import write_halves_list
from ..prepare.pipeline import load_alignment, tiltseries_stacks
from ..prepare.regimes import prepare_p2p, prepare_t2t
from ..prepare.tiltseries import write_acquisition_halves
from ..simulate.raw import raw_config, write_raw_dataset
from ..workflows.p2p import p2p_reconstruct as run
from .app import app
from .options import ConfigOptions, PredictOptions, RuntimeOptions, TrainOptions, build_config
from .prepare_options import AlignOptions, CtfOptions, RawOptions, ReconOptions, report_pair

prepare_app = App(
    name="prepare",
    help=(
        "Make cryo-CARE training pairs from raw data: motion correction, tilt-series assembly from a SerialEM "
        ".mdoc, and the six regimes of Buchholz et al. (2019) -- T2T-df, T2T-eoa, P2P-df, P2P-ip, P2P-tap and "
        "P2P-then-reconstruct -- or a pair list of halves made elsewhere (Warp, AreTomo3, RELION 5)."
    ),
)
app.command(prepare_app)
G_MOTION = Group("Motion correction", sort_key=4)


@prepare_app.command
def motion(
    movies: list[Path],
    *,
    output: Path,
    gain: Path | None = None,
    gain_flip: Literal["none", "x", "y"] = "none",
    gain_rotation: int = 0,
    pixel_size: float | None = None,
    overwrite: bool = False,
    settings: Annotated[MotionConfig | None, Parameter(name="*", group=G_MOTION)] = None,
) -> int:
    """Motion-correct movies: even/odd/sum (aligned) and first/second-half (unaligned) frame sums.

    One movie gives images OUTPUT_even.mrc ... OUTPUT_secondhalf.mrc; several give stacks with one
    section per movie in the order given. The drift goes to OUTPUT_shifts.csv.

    Parameters
    ----------
    movies
        Movie files (MRC, TIFF, EER).
    output
        Output prefix, e.g. out/TS_01.
    gain
        Gain reference (frames are multiplied by it).
    gain_flip
        Flip of the gain after rotation: none, x or y.
    gain_rotation
        Counter-clockwise quarter turns of the gain.
    pixel_size
        Pixel size in Angstrom (default: from the movie or its .mdoc).
    overwrite
        Replace existing outputs.
    """
    motion = settings or MotionConfig()
    output.parent.mkdir(parents=True, exist_ok=True)
    if len(movies) == 1:
        paths = motion_correct_file(movies[0], output_prefix=output, gain=gain, gain_flip=gain_flip,
                                    gain_rotation=gain_rotation, pixel_size=pixel_size, overwrite=overwrite,
                                    motion=motion)
    else:
        paths = motion_correct_tilt_series(movies, output_prefix=output, gain=gain, gain_flip=gain_flip,
                                           gain_rotation=gain_rotation, pixel_size=pixel_size, overwrite=overwrite,
                                           motion=motion)
    print("\n".join(f"{kind}: {p}" for kind, p in paths.items()))
    return 0


@prepare_app.command
def tiltseries(
    *,
    output_dir: Path,
    raw: RawOptions,
    align: AlignOptions | None = None,
    overwrite: bool = False,
) -> int:
    """Assemble a tilt series from its .mdoc and movies (or stack): sorted by angle, excluded views dropped.

    Writes OUTPUT_DIR/tiltseries/NAME_{even,odd,sum,firsthalf,secondhalf}.mrc (motion-corrected; from a
    --stack only NAME_sum.mrc), NAME.tlt, NAME_views.csv (angle, acquisition number, dose, movie) and the
    T2T-eoa halves NAME_eoa_{even,odd}.mrc with their .tlt (and .xf with --xf/--aln).

    Parameters
    ----------
    output_dir
        Folder for the outputs (created).
    overwrite
        Replace existing outputs.
    """
    alignment = (align or AlignOptions()).build()
    rawts = raw.build()
    load_alignment(alignment, rawts.views())  # bad side files stop here, before any output or motion correction
    output_dir.mkdir(parents=True, exist_ok=True)
    views, stacks = tiltseries_stacks(rawts, output_dir, need_frames=False, overwrite=overwrite, log=_log)
    angles, xf = load_alignment(alignment, views)
    eoa = write_acquisition_halves(stacks["sum"], views, stacks["sum"].parent / views.name, xf=xf, angles=angles,
                                   overwrite=overwrite)
    for kind, p in {**stacks, **{f"eoa_{k}": v for k, v in eoa.items()}}.items():
        print(f"{kind}: {p}")
    return 0


@prepare_app.command
def t2t(
    *,
    output_dir: Path,
    regime: Literal["df", "eoa"] = "df",
    raw: RawOptions,
    align: AlignOptions | None = None,
    rec: ReconOptions,
    ctf: CtfOptions | None = None,
    overwrite: bool = False,
) -> int:
    """Tomogram pairs: T2T-df (even/odd frames of every tilt) or T2T-eoa (even/odd acquisition numbers).

    Both halves share one geometry (angles, .xf, thickness, binning); T2T-eoa halves are weighted for
    their own angular spacing (--ctf: CTF-corrected views). Writes OUTPUT_DIR/NAME_t2t_REGIME_{even,odd}.mrc.

    Parameters
    ----------
    output_dir
        Folder for the outputs (created); tilt-series stacks go to its tiltseries/ and are reused.
    regime
        df: dose fractionation (needs the movies); eoa: even/odd acquisition (movies or --stack).
    overwrite
        Replace existing outputs.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    pair = prepare_t2t(raw.build(), (align or AlignOptions()).build(), output_dir, regime=regime,
                       thickness=rec.thickness, binning=rec.binning, normalize=rec.normalize, overwrite=overwrite,
                       log=_log, ctf=(ctf := ctf or CtfOptions()).build(), defocus_file=ctf.defocus_file)
    report_pair(pair)
    return 0


@prepare_app.command
def p2p(
    *,
    output_dir: Path,
    regime: Literal["df", "ip", "tap"] = "df",
    raw: RawOptions,
    align: AlignOptions | None = None,
    overwrite: bool = False,
) -> int:
    """Image-stack pairs for a 2D network: P2P-df, P2P-ip or P2P-tap.

    df: even/odd frame sums of each movie; ip: first/second half of each movie, unaligned; tap: every
    aligned tilt and its neighbour in angle (also writes NAME_p2p_tap_aligned.mrc, all aligned tilts).

    Parameters
    ----------
    output_dir
        Folder for the outputs (created).
    regime
        df, ip (need the movies) or tap (movies or --stack; give --xf/--aln to pair aligned views).
    overwrite
        Replace existing outputs.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    pair = prepare_p2p(raw.build(), (align or AlignOptions()).build(), output_dir, regime=regime,
                       overwrite=overwrite, log=_log)
    report_pair(pair)
    return 0


@prepare_app.command(name="p2p-reconstruct")
def p2p_reconstruct(
    *,
    output_dir: Path,
    raw: RawOptions,
    align: AlignOptions | None = None,
    rec: ReconOptions,
    ctf: CtfOptions | None = None,
    overwrite: bool = False,
    train_opts: TrainOptions | None = None,
    predict_opts: PredictOptions | None = None,
    runtime: RuntimeOptions | None = None,
    cfg: ConfigOptions | None = None,
) -> int:
    """P2P then reconstruct: train a 2D network on P2P-df pairs, restore every tilt, reconstruct the tomogram.

    Writes NAME_p2p_df_model/, NAME_p2p_restored.mrc (restored tilts) and NAME_p2p_rec.mrc; with
    --write-halves also the reconstructions of the restored halves NAME_p2p_rec_{even,odd}.mrc.

    Parameters
    ----------
    output_dir
        Folder for the outputs (created).
    overwrite
        Replace existing outputs.
    """
    config = build_config(cfg, train_opts, predict_opts, runtime)
    output_dir.mkdir(parents=True, exist_ok=True)
    out = run(raw.build(), (align or AlignOptions()).build(), output_dir, thickness=rec.thickness, config=config,
              binning=rec.binning, normalize=rec.normalize, overwrite=overwrite, log=_log,
              ctf=(ctf := ctf or CtfOptions()).build(), defocus_file=ctf.defocus_file)
    print("\n".join(f"{kind}: {p}" for kind, p in out.items()))
    return 0


@prepare_app.command
def halves(
    source: Path | None = None,
    *,
    output: Path,
    even: Path | None = None,
    odd: Path | None = None,
    project_dir: Path | None = None,
    overwrite: bool = False,
) -> int:
    """A checked pair list (name even odd) from halves made elsewhere.

    SOURCE is a folder with even/ and odd/ (Warp), a folder of *_EVN/*_ODD or *_even/*_odd files
    (AreTomo3 and others), a RELION 5 tomograms.star, or a list file; or give --even and --odd.

    Parameters
    ----------
    source
        Folder, tomograms.star or list file.
    output
        Pair list to write (e.g. pairs.txt); 'cryocare batch' reads it.
    even
        Even half (file or folder), with --odd.
    odd
        Odd half, with --even.
    project_dir
        RELION project folder (paths in the .star are relative to it).
    overwrite
        Replace an existing list.
    """
    out, pairs = write_halves_list(output, source, even=even, odd=odd, project_dir=project_dir,
                                   overwrite=overwrite, log=_log)
    print(f"{len(pairs)} pair(s) written to {out}")
    return 0


@prepare_app.command(name="simulate-raw")
def simulate_raw(
    output_dir: Path,
    *,
    shape: tuple[int, int, int] | None = None,
    tilt_step: float | None = None,
    n_frames: int | None = None,
    seed: int | None = None,
    drift: float = 1.5,
    max_shift: float = 3.0,
    name: str = "TS_01",
    overwrite: bool = False,
    cfg: ConfigOptions | None = None,
) -> int:
    """Simulated raw data with known truth, to try the prepare commands: drifting LZW TIFF movies, gain.mrc,
    a dose-symmetric .mdoc, the stack, the true .xf/.tlt and the simulator's reconstructions (reference/).

    Parameters
    ----------
    output_dir
        Folder to write into (created).
    shape
        Tomogram shape z y x in voxels (default 48 128 128).
    tilt_step
        Tilt increment in degrees (default 3).
    n_frames
        Frames per movie (default 6).
    drift
        Drift path length per movie, in pixels.
    max_shift
        Largest misalignment shift per tilt, in pixels.
    """
    given = {"shape": shape, "tilt_step": tilt_step, "n_frames": n_frames, "seed": seed}
    from_file = build_config(cfg).simulate.model_dump(exclude_unset=True)  # --config / --set simulate.*
    sim = raw_config(**{**from_file, **{k: v for k, v in given.items() if v is not None}})
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = write_raw_dataset(sim, output_dir, name=name, overwrite=overwrite, drift_px=drift, max_shift_px=max_shift)
    for key in ("mdoc", "gain", "xf", "tlt", "stack", "ref_clean"):
        print(f"{key}: {paths[key]}")
    return 0
