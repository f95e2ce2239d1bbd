"""From simulated raw frames + .mdoc + .xf to the cryo-CARE regimes' training pairs (prepare.*, simulate.raw)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cryocare_torch.errors import DataError, InputFileError, OutputError
from cryocare_torch.io.imod import read_tlt, read_xf, write_xf
from cryocare_torch.io.movie import apply_gain, read_gain, read_movie
from cryocare_torch.io.mrc import read_meta, read_volume, write_volume
from cryocare_torch.io.pairs import find_pairs
from cryocare_torch.prepare.defects import find_defect_pixels
from cryocare_torch.prepare.halves import write_halves_list
from cryocare_torch.prepare.pipeline import Alignment, RawTiltSeries, load_alignment, tiltseries_stacks
from cryocare_torch.prepare.regimes import prepare_p2p, prepare_t2t
from cryocare_torch.prepare.tiltseries import (
    acquisition_halves,
    adjacent_pairs,
    assemble_from_stack,
    views_from_mdoc,
    write_acquisition_halves,
)
from cryocare_torch.simulate.raw import raw_config, write_raw_dataset
from cryocare_torch.tomo.align import apply_xf

SHAPE = (24, 64, 64)  # 64-pixel frames: drift is measurable in 4 frames with 3x the physical contrast


def corr(a: np.ndarray, b: np.ndarray, border: float = 0.1) -> float:
    box = tuple(slice(int(s * border), s - int(s * border)) for s in a.shape)
    x, y = a[box].astype(np.float64).ravel(), b[box].astype(np.float64).ravel()
    x, y = x - x.mean(), y - y.mean()
    return float(x @ y / np.sqrt((x @ x) * (y @ y)))


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("raw")
    cfg = raw_config(shape=SHAPE, tilt_step=10.0, n_frames=4, n_complexes=12, contrast_scale=3.0)
    return write_raw_dataset(cfg, out)


@pytest.fixture(scope="module")
def prepared(raw: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("prep")
    rts = RawTiltSeries(raw["mdoc"], gain=raw["gain"])
    al = Alignment(xf=raw["xf"], tlt=raw["tlt"])
    return {"out": out, "raw": rts, "align": al,
            "df": prepare_t2t(rts, al, out, regime="df", thickness=SHAPE[0]),
            "eoa": prepare_t2t(rts, al, out, regime="eoa", thickness=SHAPE[0])}


def test_raw_files_restore_with_gain(raw: dict[str, Path]) -> None:
    views = views_from_mdoc(raw["mdoc"])
    assert np.all(np.diff(views.angles) > 0) and views.acquisition_order[np.argmin(np.abs(views.angles))] == 0
    frames, meta = read_movie(views.movie_paths()[0])
    assert meta.format == "tiff" and frames.shape == (4, *SHAPE[1:])
    corrected = apply_gain(frames, read_gain(raw["gain"]))
    stack, _ = read_volume(raw["stack"])  # SerialEM stack: gain-corrected plain sums, ZValue order
    np.testing.assert_allclose(corrected.sum(0), stack[views.z_value[0]], rtol=1e-4, atol=1e-2)


def test_t2t_df_matches_simulator(raw: dict[str, Path], prepared: dict[str, object]) -> None:
    pair = prepared["df"]
    even, meta = read_volume(pair.even)  # type: ignore[attr-defined]
    odd, _ = read_volume(pair.odd)  # type: ignore[attr-defined]
    ref_e, _ = read_volume(raw["ref_even"])
    ref_o, _ = read_volume(raw["ref_odd"])
    assert even.shape == SHAPE and meta.voxel_size == (12.0, 12.0, 12.0) and not meta.is_stack
    assert corr(even + odd, ref_e + ref_o) > 0.9
    assert min(corr(even, ref_e), corr(odd, ref_o)) > 0.85
    assert corr(even, odd) < 0.9 * corr(even + odd, ref_e + ref_o)  # independent noise in the halves
    assert find_pairs(pair.pair_list)[0].even == pair.even  # type: ignore[attr-defined]


def test_t2t_eoa_split_and_match(raw: dict[str, Path], prepared: dict[str, object]) -> None:
    views = views_from_mdoc(raw["mdoc"])
    ev, od = acquisition_halves(views)
    assert sorted(np.concatenate([ev, od]).tolist()) == list(range(views.n)) and not set(ev) & set(od)
    assert np.all(views.acquisition_order[ev] % 2 == 0) and np.all(views.acquisition_order[od] % 2 == 1)
    tilts = Path(prepared["out"]) / "tiltseries"  # type: ignore[arg-type]
    for half, idx in (("even", ev), ("odd", od)):
        np.testing.assert_allclose(read_tlt(tilts / f"TS_01_eoa_{half}.tlt"), views.angles[idx], atol=1e-4)
        np.testing.assert_allclose(read_xf(tilts / f"TS_01_eoa_{half}.xf"), read_xf(raw["xf"])[idx], atol=1e-4)
        assert read_meta(tilts / f"TS_01_eoa_{half}.mrc").shape[0] == idx.size
    pair = prepared["eoa"]
    even, _ = read_volume(pair.even)  # type: ignore[attr-defined]
    odd, _ = read_volume(pair.odd)  # type: ignore[attr-defined]
    ref_e, _ = read_volume(raw["ref_eoa_even"])
    ref_o, _ = read_volume(raw["ref_eoa_odd"])
    assert corr(even + odd, ref_e + ref_o) > 0.9


def test_p2p_pairs(raw: dict[str, Path], prepared: dict[str, object]) -> None:
    out, rts, al = prepared["out"], prepared["raw"], prepared["align"]
    tap = prepare_p2p(rts, al, out, regime="tap")  # type: ignore[arg-type]
    views = views_from_mdoc(raw["mdoc"])
    pairs = adjacent_pairs(views.angles[::-1].copy())  # any order: neighbours in angle
    a = views.angles[::-1]
    for i, j in pairs:
        assert a[j] > a[i] and not np.any((a > a[i]) & (a < a[j]))
    aligned, _ = read_volume(tap.extra["aligned"])
    e, me = read_volume(tap.even)
    o, _ = read_volume(tap.odd)
    assert e.shape[0] == views.n - 1 and me.is_stack and me.voxel_size[0] == 12.0
    np.testing.assert_array_equal(e, aligned[:-1])
    np.testing.assert_array_equal(o, aligned[1:])
    ref_full, _ = read_volume(raw["ref_tilt_full"])  # the simulator's aligned full sums
    assert np.mean([corr(aligned[k], ref_full[k]) for k in range(views.n)]) > 0.9
    ip = prepare_p2p(rts, al, out, regime="ip")  # type: ignore[arg-type]
    first, _ = read_volume(ip.even)
    second, _ = read_volume(ip.odd)
    stack, _ = read_volume(raw["stack"])  # unaligned sums: exactly the two halves together...
    gain = read_gain(raw["gain"])
    # ...except where prepare replaced a pixel it found defective (none are simulated; the few found lie next to
    # the simulator's noise-free filled frame border)
    defects = np.stack([find_defect_pixels(torch.as_tensor(apply_gain(read_movie(p)[0], gain))).mask.numpy()
                        for p in views.movie_paths()])
    assert defects.mean() < 1e-3
    good = np.broadcast_to(~defects, first.shape)
    np.testing.assert_allclose((first + second)[good], stack[views.z_value][good], rtol=1e-4, atol=1e-2)
    df = prepare_p2p(rts, al, out, regime="df")  # type: ignore[arg-type]
    ref_e, _ = read_volume(raw["ref_tilt_even"])
    de, _ = read_volume(df.even)
    xf = read_xf(raw["xf"])
    k = views.n // 2
    img = torch.from_numpy(de[k] / de[k].mean() - 1)
    assert corr(apply_xf(img, xf[k : k + 1]).numpy(), ref_e[k]) > 0.85


def test_excluded_views_and_side_file_counts(raw: dict[str, Path], tmp_path: Path) -> None:
    full = views_from_mdoc(raw["mdoc"])
    views = views_from_mdoc(raw["mdoc"], exclude=[0, 5])
    assert views.n == full.n - 2 and views.excluded_z == (0, 5)
    assert not {0, 5} & set(views.z_value.tolist()) and np.all(np.diff(views.angles) > 0)
    xf_all = read_xf(raw["xf"])
    keep = np.isin(full.z_value, views.z_value)
    np.testing.assert_array_equal(views.pick(xf_all, raw["xf"]), xf_all[keep])  # before exclusion
    np.testing.assert_array_equal(views.pick(xf_all[keep], raw["xf"]), xf_all[keep])  # after exclusion
    with pytest.raises(InputFileError, match="has 5 entries but the tilt series"):
        views.pick(xf_all[:5], raw["xf"])
    rts = RawTiltSeries(raw["mdoc"], stack=raw["stack"], movie_dir=tmp_path, exclude=(0, 5))
    got, stacks = tiltseries_stacks(rts, tmp_path, need_frames=False)
    assert set(stacks) == {"sum", "tlt", "views"} and read_meta(stacks["sum"]).shape[0] == views.n
    stack, _ = read_volume(raw["stack"])
    sorted_sum, _ = read_volume(stacks["sum"])
    np.testing.assert_array_equal(sorted_sum, stack[views.z_value])
    np.testing.assert_allclose(read_tlt(stacks["tlt"]), views.angles, atol=1e-4)
    angles, xf = load_alignment(Alignment(xf=raw["xf"]), got)
    np.testing.assert_array_equal(xf, xf_all[keep])
    halves = write_acquisition_halves(stacks["sum"], got, tmp_path / "x", xf=xf)
    assert read_meta(halves["even"]).shape[0] + read_meta(halves["odd"]).shape[0] == views.n
    bad_xf = write_xf(tmp_path / "bad.xf", xf_all[:4])
    with pytest.raises(InputFileError, match="bad.xf"):
        load_alignment(Alignment(xf=bad_xf), got)


def test_stack_count_mismatch_is_input_error(raw: dict[str, Path], tmp_path: Path) -> None:
    stack, meta = read_volume(raw["stack"])
    short = write_volume(tmp_path / "short.mrc", stack[:-1], meta)
    views = views_from_mdoc(raw["mdoc"])
    with pytest.raises(InputFileError, match=f"has {views.n - 1} views but TS_01.mdoc describes {views.n}"):
        assemble_from_stack(short, views, tmp_path / "s")
    with pytest.raises(InputFileError, match="--movie-dir"):
        RawTiltSeries(raw["mdoc"], movie_dir=tmp_path).views().movie_paths()
    with pytest.raises(DataError, match="at least 2"):
        views_from_mdoc(raw["mdoc"], exclude=range(1, views.n))


def test_aln_gives_the_xf_geometry(raw: dict[str, Path], prepared: dict[str, object], tmp_path: Path) -> None:
    views = views_from_mdoc(raw["mdoc"])
    xf = read_xf(raw["xf"])
    lines = ["# AreTomo Alignment / Priims bprmMn", f"# RawSize = {SHAPE[2]} {SHAPE[1]} {views.n}",
             "# NumPatches = 0", "# SEC     ROT         GMAG       TX          TY      SMEAN     SFIT    SCALE     "
             "BASE     TILT"]
    for i in range(views.n):  # aln_to_xf: A = rotation by -ROT, d = A @ (-T)
        rot = np.degrees(np.arctan2(xf[i, 0, 1], xf[i, 0, 0]))
        t = -xf[i, :, :2].T @ xf[i, :, 2]
        lines.append(f"{i + 1:5d} {rot:10.4f} 1.00000 {t[0]:10.4f} {t[1]:10.4f} 1.0 1.0 1.0 0.0 {views.angles[i]:8.2f}")
    aln = tmp_path / "ts.aln"
    aln.write_text("\n".join(lines) + "\n")
    angles, got = load_alignment(Alignment(aln=aln), views)
    np.testing.assert_allclose(got, xf, atol=2e-3)
    np.testing.assert_allclose(angles, views.angles, atol=1e-6)
    with pytest.raises(Exception, match="either --xf"):
        load_alignment(Alignment(aln=aln, xf=raw["xf"]), views)


def test_stacks_reused_and_outputs_protected(prepared: dict[str, object]) -> None:
    msgs: list[str] = []
    tiltseries_stacks(prepared["raw"], prepared["out"], need_frames=True, log=msgs.append)  # type: ignore[arg-type]
    assert any("reusing" in m for m in msgs)
    with pytest.raises(OutputError):
        prepare_t2t(prepared["raw"], prepared["align"], prepared["out"], regime="df",  # type: ignore[arg-type]
                    thickness=SHAPE[0])


def test_halves_list_from_folder(prepared: dict[str, object], tmp_path: Path) -> None:
    src = tmp_path / "halves"
    src.mkdir()
    for half in ("even", "odd"):
        shutil.copy(getattr(prepared["df"], half), src / f"TS_01_{half}.mrc")
    out, pairs = write_halves_list(tmp_path / "pairs.txt", src)
    assert [p.name for p in pairs] == ["TS_01"]
    again = find_pairs(out)
    assert again[0].even.resolve() == (src / "TS_01_even.mrc").resolve()
