"""A corpus of bad input files, made by the tests (nothing binary is checked in).

Every builder writes into a folder it is given and returns :class:`Bad` cases: the offending file,
the exit code the CLI must end with (2 options, 3 input file, 4 data, 5 output, 6 checkpoint) and a
``needle`` the one-line error must contain (the file's path unless stated). ``skip`` holds a reason
when a case cannot be made on this machine (e.g. permission tests when running as root, who reads
anything).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
import torch

from cryocare_torch.io.mrc import write_volume

SHAPE = (16, 32, 32)
VOXEL = 10.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# exit codes of the CLI (README "Safety")
OPTIONS, INPUT, DATA, OUTPUT, CHECKPOINT = 2, 3, 4, 5, 6


@dataclass(frozen=True)
class Bad:
    name: str
    path: Path
    """The offending file: it must be named in the error."""
    code: int
    needle: str = ""
    """Text the error must contain besides the path (empty: the path alone)."""
    partner: Path | None = None
    """The other half for pair cases (a good file unless the case is about the pair)."""
    skip: str | None = None


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


ROOT_SKIP = "running as root: permission bits do not stop root from reading or writing, so the case cannot occur"


def noisy_pair(folder: Path, shape: tuple[int, ...] = SHAPE, seed: int = 0, voxel: float = VOXEL,
               names: tuple[str, str] = ("good_even.mrc", "good_odd.mrc")) -> tuple[Path, Path]:
    """A valid even/odd pair: a shared random signal plus independent noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sig = rng.normal(size=shape).astype(np.float32)
    halves = [sig + rng.normal(size=shape).astype(np.float32) for _ in range(2)]
    return tuple(write_volume(folder / n, h, voxel_size=voxel, overwrite=True)  # type: ignore[return-value]
                 for n, h in zip(names, halves, strict=True))


def _header_patch(path: Path, offset: int, values: np.ndarray) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(values.tobytes())


def mutate_header(src: Path, dst: Path, **fields: int | float) -> Path:
    """Copy ``src`` and overwrite MRC header words: nx, ny, nz, mode (int32 at 0, 4, 8, 12), mapc/mapr/maps
    (64, 68, 72), nsymbt (92), cella_x/y/z (float32 at 40, 44, 48)."""
    dst.write_bytes(src.read_bytes())
    where = {"nx": (0, "<i4"), "ny": (4, "<i4"), "nz": (8, "<i4"), "mode": (12, "<i4"), "nsymbt": (92, "<i4"),
             "mapc": (64, "<i4"), "mapr": (68, "<i4"), "maps": (72, "<i4"),
             "cella_x": (40, "<f4"), "cella_y": (44, "<f4"), "cella_z": (48, "<f4")}
    for key, value in fields.items():
        off, dt = where[key]
        _header_patch(dst, off, np.array([value], dtype=dt))
    return dst


def volume_cases(folder: Path, even: Path, odd: Path) -> list[Bad]:
    """Bad tomogram halves, each to be given as the *even* half with ``partner`` as the odd one.

    Codes are those of training/prediction inputs; :func:`train_only_cases` adds what only training refuses.
    """
    folder.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(5).normal(size=SHAPE).astype(np.float32)
    cases: list[Bad] = []

    def add(name: str, path: Path, code: int, needle: str = "", partner: Path | None = None,
            skip: str | None = None) -> None:
        cases.append(Bad(name, path, code, needle, partner or odd, skip))

    add("missing", folder / "no_such_even.mrc", INPUT, "not found")
    (folder / "a_folder.mrc").mkdir(exist_ok=True)
    add("folder", folder / "a_folder.mrc", INPUT, "folder")
    unreadable = folder / "unreadable.mrc"
    unreadable.write_bytes(even.read_bytes())
    unreadable.chmod(0)
    add("unreadable", unreadable, INPUT, "permission", skip=ROOT_SKIP if running_as_root() else None)
    (folder / "empty.mrc").write_bytes(b"")
    add("empty", folder / "empty.mrc", INPUT, "empty")
    (folder / "text.mrc").write_text("this is a text file, not a tomogram\n" * 60)
    add("text", folder / "text.mrc", INPUT, "MRC")
    (folder / "short_text.mrc").write_text("not a tomogram\n")
    add("short_text", folder / "short_text.mrc", INPUT, "MRC")
    (folder / "image.mrc").write_bytes(PNG_MAGIC + bytes(range(256)) * 8)
    add("png_bytes", folder / "image.mrc", INPUT, "MRC")
    full = even.read_bytes()
    (folder / "truncated.mrc").write_bytes(full[: len(full) - 4000])
    add("truncated", folder / "truncated.mrc", INPUT, "truncated")
    (folder / "header_only.mrc").write_bytes(full[:1024])
    add("header_only", folder / "header_only.mrc", INPUT, "truncated")
    with mrcfile.new(folder / "complex.mrc", overwrite=True) as mrc:
        mrc.set_data(data.astype(np.complex64))
        mrc.voxel_size = VOXEL
    add("complex_mode", folder / "complex.mrc", INPUT, "mode 4")
    add("mode_101", mutate_header(even, folder / "mode101.mrc", mode=101), INPUT, "mode")
    add("mode_negative", mutate_header(even, folder / "mode_neg.mrc", mode=-3), INPUT, "mode")
    add("zero_dims", mutate_header(even, folder / "zero_nx.mrc", nx=0), INPUT, "dimensions")
    add("negative_dims", mutate_header(even, folder / "neg_ny.mrc", ny=-32), INPUT)
    add("huge_dims", mutate_header(even, folder / "huge_nz.mrc", nz=2**30), INPUT, "truncated")
    add("axis_order", mutate_header(even, folder / "axes_113.mrc", mapc=1, mapr=1, maps=3), INPUT, "permutation")
    add("huge_ext_header", mutate_header(even, folder / "huge_nsymbt.mrc", nsymbt=2**30), INPUT, "extended header")
    add("other_shape", write_volume(folder / "other_shape.mrc", data[:, :, :24], voxel_size=VOXEL, overwrite=True),
        DATA, "shape")
    add("other_voxel_size", write_volume(folder / "other_voxel.mrc", data, voxel_size=2 * VOXEL, overwrite=True),
        DATA, "voxel size")
    nan = data.copy()
    nan[3, 4, 5] = np.nan
    inf = data.copy()
    inf[7, 1, 2] = -np.inf
    with warnings.catch_warnings():  # mrcfile/numpy warn while writing header statistics of such data
        warnings.simplefilter("ignore", RuntimeWarning)
        add("nan", write_volume(folder / "nan.mrc", nan, voxel_size=VOXEL, overwrite=True), DATA, "NaN")
        add("inf", write_volume(folder / "inf.mrc", inf, voxel_size=VOXEL, overwrite=True), DATA, "NaN")
    add("constant", write_volume(folder / "constant.mrc", np.full(SHAPE, 3.5, np.float32), voxel_size=VOXEL,
                                 overwrite=True), DATA, "constant",
        partner=write_volume(folder / "constant_odd.mrc", np.full(SHAPE, 3.5, np.float32), voxel_size=VOXEL,
                             overwrite=True))
    add("same_file", even, DATA, "same file", partner=even)
    return cases


def train_only_cases(folder: Path) -> list[Bad]:
    """Pairs that prediction accepts (it pads) but training cannot use: too small, too thin, identical halves."""
    rng = np.random.default_rng(6)
    cases = []
    for name, shape in (("too_small", (8, 8, 8)), ("too_thin", (4, 32, 32))):
        e, o = noisy_pair(folder / name, shape, seed=7, names=(f"{name}_even.mrc", f"{name}_odd.mrc"))
        cases.append(Bad(name, e, DATA, "smaller than a patch", o))
    twin = rng.normal(size=SHAPE).astype(np.float32)
    e = write_volume(folder / "twin_even.mrc", twin, voxel_size=VOXEL, overwrite=True)
    o = write_volume(folder / "twin_odd.mrc", twin, voxel_size=VOXEL, overwrite=True)
    cases.append(Bad("identical_halves", e, DATA, "identical", o))
    return cases


def zero_voxel_pair(folder: Path) -> tuple[Path, Path]:
    """A valid pair whose headers carry no voxel size (cella 0, as some tools write)."""
    e, o = noisy_pair(folder, seed=11, names=("novox_even.mrc", "novox_odd.mrc"))
    for p in (e, o):
        mutate_header(p, p.with_suffix(".tmp"), cella_x=0.0, cella_y=0.0, cella_z=0.0).replace(p)
    return e, o


def checkpoint_cases(folder: Path, good: Path) -> list[Bad]:
    """Bad model checkpoints (``good`` is a valid best.pt to derive damaged ones from)."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = torch.load(good, map_location="cpu", weights_only=True)
    cases = [Bad("ckpt_missing", folder / "no_such.pt", CHECKPOINT, "not found")]
    (folder / "empty.pt").write_bytes(b"")
    cases.append(Bad("ckpt_empty", folder / "empty.pt", CHECKPOINT))
    (folder / "text.pt").write_text("model weights would be here\n")
    cases.append(Bad("ckpt_text", folder / "text.pt", CHECKPOINT))
    blob = good.read_bytes()
    (folder / "truncated.pt").write_bytes(blob[: len(blob) // 2])
    cases.append(Bad("ckpt_truncated", folder / "truncated.pt", CHECKPOINT))
    flipped = bytearray(blob)
    for i in range(64):  # the zip structure (flips inside tensor data: see test_corrupted_weights_are_detected)
        flipped[i] ^= 0xFF
    (folder / "bitflip.pt").write_bytes(bytes(flipped))
    cases.append(Bad("ckpt_bitflip_header", folder / "bitflip.pt", CHECKPOINT))
    torch.save({"state_dict": raw["model_state"]}, folder / "other_format.pt")
    cases.append(Bad("ckpt_other_format", folder / "other_format.pt", CHECKPOINT, "format"))
    torch.save(next(iter(raw["model_state"].values())), folder / "a_tensor.pt")
    cases.append(Bad("ckpt_bare_tensor", folder / "a_tensor.pt", CHECKPOINT, "format"))
    torch.save({**raw, "format_version": 99, "package_version": "9.0"}, folder / "future.pt")
    cases.append(Bad("ckpt_future_version", folder / "future.pt", CHECKPOINT, "newer"))
    cfg = {**raw["config"], "model": {**raw["config"]["model"], "n_first": 2 * raw["config"]["model"]["n_first"]}}
    torch.save({**raw, "config": cfg}, folder / "wrong_arch.pt")
    cases.append(Bad("ckpt_wrong_architecture", folder / "wrong_arch.pt", CHECKPOINT, "architecture"))
    cfg = {**raw["config"], "model": {**raw["config"]["model"], "depth": 99}}
    torch.save({**raw, "config": cfg}, folder / "bad_config.pt")
    cases.append(Bad("ckpt_invalid_config", folder / "bad_config.pt", CHECKPOINT, "model.depth"))
    missing = {k: v for k, v in raw.items() if k != "model_state"}
    torch.save(missing, folder / "incomplete.pt")
    cases.append(Bad("ckpt_incomplete", folder / "incomplete.pt", CHECKPOINT, "model_state"))

    (folder / "pickle.pt").write_bytes(pickle.dumps(Path("/etc/passwd")))  # a class: never unpickled
    cases.append(Bad("ckpt_plain_pickle", folder / "pickle.pt", CHECKPOINT))
    (folder / "no_best").mkdir(exist_ok=True)
    cases.append(Bad("ckpt_folder_without_best", folder / "no_best", CHECKPOINT, "not found"))
    return cases


def sidefile_cases(folder: Path, n_views: int) -> dict[str, list[Bad]]:
    """Malformed ``.tlt``, ``.xf``, ``.aln`` and ``.mdoc`` files, and ones whose view count is not ``n_views``."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[Bad]] = {"tlt": [], "xf": [], "aln": [], "mdoc": []}

    def text(kind: str, name: str, body: str | bytes, needle: str = "") -> None:
        p = folder / f"{name}.{kind}"
        p.write_bytes(body if isinstance(body, bytes) else body.encode())
        out[kind].append(Bad(f"{kind}_{name}", p, INPUT, needle))

    angles = np.linspace(-60, 60, n_views)
    text("tlt", "words", "".join(f"{a:.2f}\n" for a in angles[:-1]) + "sixty\n", "line")
    text("tlt", "empty", "", "no angles")
    text("tlt", "binary", b"\x00\x01\x02" * 50, "binary")
    text("tlt", "two_columns", "".join(f"{a:.2f} 1.0\n" for a in angles), "one angle")
    text("tlt", "out_of_range", "".join(f"{a * 3:.2f}\n" for a in angles), "outside")
    text("tlt", "nan", "".join(f"{a:.2f}\n" for a in angles[:-1]) + "nan\n", "finite")
    text("tlt", "wrong_count", "".join(f"{a:.2f}\n" for a in angles[:-3]), "views")
    row = " 1.0000000 0.0000000 0.0000000 1.0000000 0.0000 0.0000\n"
    text("xf", "five_columns", " 1.0 0.0 0.0 1.0 3.0\n" * n_views, "6 numbers")
    text("xf", "letters", row * (n_views - 1) + " 1.0 0.0 0.0 one 0.0 0.0\n", "not a number")
    text("xf", "singular", " 0.0 0.0 0.0 0.0 1.0 2.0\n" * n_views, "singular")
    text("xf", "empty", "\n\n", "no transforms")
    text("xf", "wrong_count", row * (n_views + 2), "views")
    head = "# AreTomo Alignment / Priims bprmMn\n# RawSize = 64 64 {n}\n# NumPatches = 0\n" \
           "# SEC     ROT         GMAG       TX          TY      SMEAN     SFIT    SCALE     BASE     TILT\n"
    line = "{i:5d}  -3.0000  1.00000  0.000  0.000  1.00  1.00  1.00  0.000  {a:8.2f}\n"
    good_rows = "".join(line.format(i=i, a=a) for i, a in enumerate(angles))
    text("aln", "not_aretomo", "# something else\n" + good_rows, "AreTomo")
    text("aln", "short_rows", head.format(n=n_views) + "".join(f"{i} 1.0 2.0\n" for i in range(n_views)), "columns")
    text("aln", "truncated", head.format(n=n_views) + good_rows[: len(good_rows) // 2].rsplit("\n", 1)[0] + "\n",
         "header announces")
    text("aln", "no_rows", head.format(n=n_views), "no global")
    text("aln", "wrong_count", head.format(n=n_views + 4) + good_rows.replace(line.format(i=0, a=angles[0]), "")
         .replace(line.format(i=1, a=angles[1]), ""), "header announces")
    z = "".join(f"[ZValue = {i}]\nTiltAngle = {a:.2f}\nExposureDose = 3.0\n\n" for i, a in enumerate(angles))
    text("mdoc", "no_sections", "PixelSpacing = 12.0\nImageFile = TS.mrc\n", "ZValue")
    text("mdoc", "bad_zvalue", "PixelSpacing = 12.0\n\n[ZValue = x]\nTiltAngle = 1\n", "ZValue")
    text("mdoc", "duplicate_z", "PixelSpacing = 12.0\n\n" + z + "[ZValue = 0]\nTiltAngle = 3.0\n", "twice")
    text("mdoc", "bad_angle", "PixelSpacing = 12.0\n\n[ZValue = 0]\nTiltAngle = steep\n", "TiltAngle")
    text("mdoc", "no_key_value", "PixelSpacing = 12.0\n\n[ZValue = 0]\njust some words\n", "Key = value")
    text("mdoc", "binary", b"PixelSpacing = 12\x00\x00\n", "binary")
    text("mdoc", "montage", "PixelSpacing = 12.0\nMontage = 1\n\n" + z, "montage")
    return out


def star_cases(folder: Path) -> list[Bad]:
    """Malformed RELION tomograms.star files."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    p = folder / "garbage_tomograms.star"
    p.write_bytes(b"\x00\x01binary\x02" * 20)
    cases.append(Bad("star_binary", p, INPUT))
    p = folder / "nocol_tomograms.star"
    p.write_text("data_global\n\nloop_\n_rlnMicrographName #1\nmic1.mrc\n")
    cases.append(Bad("star_no_tomo_name", p, INPUT, "rlnTomoName"))
    p = folder / "dup_tomograms.star"
    p.write_text("data_global\n\nloop_\n_rlnTomoName #1\n_rlnTomoReconstructedTomogramHalf1 #2\n"
                 "_rlnTomoReconstructedTomogramHalf2 #3\nTS_1 a.mrc b.mrc\nTS_1 c.mrc d.mrc\n")
    cases.append(Bad("star_repeated_name", p, INPUT, "repeated"))
    p = folder / "text_tomograms.star"
    p.write_text("this is not a star file\n")
    cases.append(Bad("star_text", p, INPUT))
    return cases


def tree_hashes(roots: Iterable[Path]) -> dict[Path, str]:
    """sha256 of every readable regular file under ``roots`` (to prove inputs are left unchanged)."""
    out: dict[Path, str] = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(q for q in root.rglob("*") if q.is_file())
        for f in files:
            mode = f.stat().st_mode
            if not stat.S_ISREG(mode) or not os.access(f, os.R_OK) or not (mode & 0o444):
                out[f] = f"mode {oct(mode)} size {f.stat().st_size} mtime {f.stat().st_mtime_ns}"
                continue
            out[f] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out
