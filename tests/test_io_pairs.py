"""Even/odd pairing by name: every supported layout, and every refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cryocare_torch.errors import DataError, InputFileError
from cryocare_torch.io.halves import check_pair_compatible, split_half_marker
from cryocare_torch.io.mrc import write_volume
from cryocare_torch.io.pairs import PairSpec, find_pairs


def _vol(path: Path, shape: tuple[int, ...] = (2, 4, 4), voxel: float = 5.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = sum(path.name.encode())  # a different noise per file: halves of a pair are not identical
    return write_volume(path, np.random.default_rng(seed).normal(size=shape).astype(np.float32), voxel_size=voxel)


def _names(pairs: list[PairSpec]) -> list[tuple[str, str, str]]:
    return [(p.name, p.even.name, p.odd.name) for p in pairs]


def test_warp_even_odd_folders(tmp_path: Path) -> None:
    for half in ("even", "odd"):
        for n in ("TS_10.mrc", "TS_2.mrc"):
            _vol(tmp_path / half / n)
    (tmp_path / "even" / "TS_2.xml").write_text("not a volume")
    pairs = find_pairs(tmp_path)
    assert _names(pairs) == [("TS_10", "TS_10.mrc", "TS_10.mrc"), ("TS_2", "TS_2.mrc", "TS_2.mrc")]
    assert all(p.even.parent.name == "even" and p.odd.parent.name == "odd" for p in pairs)
    assert _names(find_pairs(even=tmp_path / "even", odd=tmp_path / "odd")) == _names(pairs)


def test_warp_folder_with_unmatched_file(tmp_path: Path) -> None:
    _vol(tmp_path / "even" / "TS_1.mrc")
    _vol(tmp_path / "odd" / "TS_1.mrc")
    _vol(tmp_path / "even" / "TS_3.mrc")
    with pytest.raises(InputFileError, match=r"TS_3.mrc has no partner .*odd/TS_3.mrc"):
        find_pairs(tmp_path)


@pytest.mark.parametrize(
    "even,odd,name",
    [
        ("TS_01_EVN_Vol.mrc", "TS_01_ODD_Vol.mrc", "TS_01_Vol"),  # AreTomo3 volume
        ("TS_01_EVN.mrc", "TS_01_ODD.mrc", "TS_01"),  # AreTomo3 stack/half
        ("TS_01_even.mrc", "TS_01_odd.mrc", "TS_01"),
        ("tomo.even.rec", "tomo.odd.rec", "tomo"),
        ("TS_01_half1.mrc", "TS_01_half2.mrc", "TS_01"),
        ("rec_TS_01_half_1.mrc", "rec_TS_01_half_2.mrc", "rec_TS_01"),
        ("even_TS_01.mrc", "odd_TS_01.mrc", "TS_01"),
    ],
)
def test_marker_schemes(tmp_path: Path, even: str, odd: str, name: str) -> None:
    _vol(tmp_path / even)
    _vol(tmp_path / odd)
    _vol(tmp_path / "TS_01_Vol.mrc")  # a full volume without marker is ignored
    assert _names(find_pairs(tmp_path)) == [(name, even, odd)]


def test_marker_pairs_many_by_name_not_order(tmp_path: Path) -> None:
    for n in ("TS_2", "TS_10", "a"):
        _vol(tmp_path / f"{n}_EVN_Vol.mrc")
        _vol(tmp_path / f"{n}_ODD_Vol.mrc")
    pairs = find_pairs(tmp_path)
    assert [p.name for p in pairs] == ["TS_10_Vol", "TS_2_Vol", "a_Vol"]
    for p in pairs:
        assert p.even.name.replace("EVN", "ODD") == p.odd.name


def test_last_marker_wins_and_keys_keep_case(tmp_path: Path) -> None:
    assert split_half_marker(Path("Even_better_TS_01_odd.mrc")) == ("eo:Even_better_TS_01_\0.mrc", "odd",
                                                                     "Even_better_TS_01")
    assert split_half_marker(Path("evenly.mrc")) is None  # only whole words count
    assert split_half_marker(Path("TS_01.mrc")) is None


def test_missing_partner_is_refused_not_paired_by_order(tmp_path: Path) -> None:
    for f in ("a_even.mrc", "b_even.mrc", "a_odd.mrc", "c_odd.mrc"):
        _vol(tmp_path / f)
    with pytest.raises(InputFileError, match="b_even.mrc has no odd partner"):
        find_pairs(tmp_path)


def test_odd_without_even(tmp_path: Path) -> None:
    _vol(tmp_path / "a_odd.mrc")
    with pytest.raises(InputFileError, match="a_odd.mrc has no even partner"):
        find_pairs(tmp_path)


def test_mixed_families_do_not_pair(tmp_path: Path) -> None:
    _vol(tmp_path / "a_even.mrc")
    _vol(tmp_path / "a_half2.mrc")
    with pytest.raises(InputFileError, match="no odd partner"):
        find_pairs(tmp_path)


def test_two_candidates_for_one_half(tmp_path: Path) -> None:
    for f in ("TS_01_even.mrc", "TS_01_EVN.mrc", "TS_01_odd.mrc"):
        _vol(tmp_path / f)
    with pytest.raises(InputFileError, match="two even candidates for 'TS_01': TS_01_EVN.mrc, TS_01_even.mrc"):
        find_pairs(tmp_path)


def test_two_pairs_with_one_name(tmp_path: Path) -> None:
    for f in ("TS_01_even.mrc", "TS_01_odd.mrc", "TS_01_half1.mrc", "TS_01_half2.mrc"):
        _vol(tmp_path / f)
    with pytest.raises(InputFileError, match="two pairs are named 'TS_01'"):
        find_pairs(tmp_path)


def test_zero_pairs(tmp_path: Path) -> None:
    _vol(tmp_path / "TS_01.mrc")
    with pytest.raises(InputFileError, match="no even/odd pairs found; expected even/ and odd/ folders"):
        find_pairs(tmp_path)
    with pytest.raises(InputFileError, match="not found"):
        find_pairs(tmp_path / "missing")
    with pytest.raises(InputFileError, match="single volume"):
        find_pairs(tmp_path / "TS_01.mrc")


def test_list_file(tmp_path: Path) -> None:
    a1, a2 = _vol(tmp_path / "d" / "x 1.mrc"), _vol(tmp_path / "d" / "x 2.mrc")
    b1, b2 = _vol(tmp_path / "B_even.mrc"), _vol(tmp_path / "B_odd.mrc")
    lst = tmp_path / "pairs.txt"
    lst.write_text(f'# my pairs\neven odd\nfirst "d/x 1.mrc" "d/x 2.mrc"\n{b1}\t{b2}\n')
    assert _names(find_pairs(lst)) == [("B", "B_even.mrc", "B_odd.mrc"), ("first", "x 1.mrc", "x 2.mrc")]
    csv = tmp_path / "pairs.csv"
    csv.write_text("B_even.mrc, B_odd.mrc\n")
    assert _names(find_pairs(csv)) == [("B", "B_even.mrc", "B_odd.mrc")]
    assert a1.exists() and a2.exists()


@pytest.mark.parametrize(
    "text,match",
    [
        ("B_even.mrc\n", "line 1: expected 'even odd' or 'name even odd', found 1"),
        ("B_even.mrc nothere.mrc\n", "line 1: .*nothere.mrc does not exist"),
        ("B_even.mrc B_odd.mrc\nB_even.mrc B_odd.mrc\n", "two pairs are named 'B'"),
        ("p B_even.mrc B_odd.mrc\nq B_even.mrc B_odd.mrc\n", "B_even.mrc is used twice"),
        ("B_even.mrc B_even.mrc\n", "uses the same file"),
        ('"B_even.mrc B_odd.mrc\n', "line 1: No closing quotation"),
        ("# nothing\n", "no even/odd pairs found"),
    ],
)
def test_list_file_refusals(tmp_path: Path, text: str, match: str) -> None:
    _vol(tmp_path / "B_even.mrc")
    _vol(tmp_path / "B_odd.mrc")
    lst = tmp_path / "pairs.txt"
    lst.write_text(text)
    with pytest.raises(InputFileError, match=match):
        find_pairs(lst)


STAR = """data_global

loop_
_rlnTomoName
_rlnTomoTiltSeriesPixelSize
_rlnTomoReconstructedTomogramHalf1
_rlnTomoReconstructedTomogramHalf2
TS_01 1.35 Tomograms/job009/tomograms/rec_TS_01_half1.mrc Tomograms/job009/tomograms/rec_TS_01_half2.mrc
"""


def test_relion_tomograms_star(tmp_path: Path) -> None:
    job = tmp_path / "Tomograms" / "job009"
    _vol(job / "tomograms" / "rec_TS_01_half1.mrc")
    _vol(job / "tomograms" / "rec_TS_01_half2.mrc")
    star = job / "tomograms.star"
    star.write_text(STAR)
    assert _names(find_pairs(star)) == [("TS_01", "rec_TS_01_half1.mrc", "rec_TS_01_half2.mrc")]
    (job / "tomograms" / "rec_TS_01_half2.mrc").unlink()
    with pytest.raises(InputFileError, match="tomogram 'TS_01': half .*rec_TS_01_half2.mrc does not exist"):
        find_pairs(star)
    star.write_text(STAR.replace("_rlnTomoReconstructedTomogramHalf2\n", "").replace(
        " Tomograms/job009/tomograms/rec_TS_01_half2.mrc", ""))
    with pytest.raises(InputFileError, match="Generate tomograms for denoising"):
        find_pairs(star)


def test_explicit_files_and_argument_errors(tmp_path: Path) -> None:
    e, o = _vol(tmp_path / "tomo_half1.mrc"), _vol(tmp_path / "tomo_half2.mrc")
    assert _names(find_pairs(even=e, odd=o)) == [("tomo", "tomo_half1.mrc", "tomo_half2.mrc")]
    with pytest.raises(InputFileError, match="both the even and the odd"):
        find_pairs(even=e)
    with pytest.raises(InputFileError, match="must both be files or both folders"):
        find_pairs(even=e, odd=tmp_path)
    with pytest.raises(InputFileError, match="nothing to pair"):
        find_pairs()


def test_check_pair_compatible(tmp_path: Path) -> None:
    e = _vol(tmp_path / "a_even.mrc")
    meta = check_pair_compatible(e, _vol(tmp_path / "a_odd.mrc"))
    assert meta.shape == (2, 4, 4)
    with pytest.raises(DataError, match=r"a_even.mrc has shape \(2, 4, 4\) but odd half .*b_odd.mrc has \(3, 4, 4\)"):
        check_pair_compatible(e, _vol(tmp_path / "b_odd.mrc", shape=(3, 4, 4)))
    with pytest.raises(DataError, match="voxel size .*c_odd.mrc"):
        check_pair_compatible(e, _vol(tmp_path / "c_odd.mrc", voxel=10.0))


@pytest.mark.parametrize(("even", "odd", "stem"), [
    ("TS_01_EVN_Vol.mrc", "TS_01_ODD_Vol.mrc", "TS_01_Vol"),
    ("a_even.mrc", "a_odd.mrc", "a"),
    ("b.Even.mrc", "b.Odd.mrc", "b"),
    ("c_half1.mrc", "c_half2.mrc", "c"),
    ("c_half_1.mrc", "c_half_2.mrc", "c"),
    ("c-half-1.mrc", "c-half-2.mrc", "c"),
])
def test_half_markers_mean_the_same_everywhere(tmp_path: Path, even: str, odd: str, stem: str) -> None:
    """One list of markers: pairing, the pair's output name and the report's file roles agree on every name."""
    from cryocare_torch.io.halves import half_of, pair_stem
    from cryocare_torch.report.collect import mrc_role

    assert (half_of(even), half_of(odd)) == ("even", "odd")
    assert (mrc_role(Path(even)), mrc_role(Path(odd))) == ("even", "odd")
    assert pair_stem(even) == stem
    for name in (even, odd):
        _vol(tmp_path / name)
    assert [(p.name, p.even.name, p.odd.name) for p in find_pairs(tmp_path)] == [(stem, even, odd)]


def test_names_without_a_marker_have_no_half() -> None:
    from cryocare_torch.io.halves import half_of
    from cryocare_torch.report.collect import mrc_role

    for name in ("evenly.mrc", "TS_01.mrc", "halfway1.mrc", "oddity.mrc"):
        assert half_of(name) is None and mrc_role(Path(name)) is None
