"""``cryocare report``: one self-contained HTML page from a demo-like run folder or an evaluation."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cryocare_torch.cli.main import main
from cryocare_torch.evaluate.fsc import central_box
from cryocare_torch.evaluate.metrics import psnr
from cryocare_torch.io.mrc import VolumeMeta, write_volume
from cryocare_torch.report.collect import find_run, mrc_role
from cryocare_torch.report.html import render

HISTORY = [
    {"epoch": 1, "train_loss": 0.91, "val_loss": 0.8765, "lr": 4e-4, "time_s": 5.0, "elapsed_s": 5.0, "steps": 10,
     "complete": True},
    {"epoch": 2, "train_loss": 0.85, "val_loss": 0.8123, "lr": 2e-4, "time_s": 5.0, "elapsed_s": 10.0, "steps": 20,
     "complete": True},
]


@pytest.fixture
def demo_run(tmp_path: Path) -> Path:
    """The folder layout of ``cryocare demo`` with tiny volumes and a fake training history."""
    from scipy import ndimage

    run = tmp_path / "cryocare_demo"
    (run / "data").mkdir(parents=True)
    (run / "model").mkdir()
    rng = np.random.default_rng(0)
    shape = (24, 40, 32)
    truth = ndimage.gaussian_filter(rng.normal(size=shape), 2.0).astype(np.float32)
    truth /= truth.std()
    even = truth + rng.normal(scale=1.0, size=shape).astype(np.float32)
    odd = truth + rng.normal(scale=1.0, size=shape).astype(np.float32)
    restored = ndimage.gaussian_filter(0.5 * (even + odd), 1.2).astype(np.float32)
    for name, vol in (("tomo_even", even), ("tomo_odd", odd), ("tomo_clean", truth)):
        write_volume(run / "data" / f"{name}.mrc", vol, voxel_size=8.0)
    stack = VolumeMeta(shape=(5, 40, 32), voxel_size=(8.0, 8.0, 8.0), is_stack=True)
    write_volume(run / "data" / "tilt_even.mrc", even[:5], stack)  # a tilt series, as the simulator writes
    write_volume(run / "restored.mrc", restored, voxel_size=8.0)
    (run / "model" / "history.json").write_text(json.dumps(HISTORY))
    (run / "demo.json").write_text(json.dumps({"seconds": {"simulate": 6.0, "total": 66.0},
                                               "config": {"model": {"depth": 2, "n_first": 16}}}))
    return run


def _report(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(["report", *args, "--methods", "gaussian,median", "--box", "32", "--threads", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def _check_self_contained(html: str) -> None:
    assert html.count('src="data:image/png;base64,') >= 3
    srcs = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", html, flags=re.IGNORECASE)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs), [s[:40] for s in srcs]
    assert "<link" not in html.lower() and "<script" not in html.lower() and "url(" not in html


def test_report_on_demo_folder(demo_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = sorted(p.name for p in demo_run.rglob("*"))
    _report([str(demo_run), "--output", str(out_dir / "report.html")], capsys)
    assert [p.name for p in out_dir.iterdir()] == ["report.html"]  # nothing else left behind
    assert sorted(p.name for p in demo_run.rglob("*")) == before  # the run folder is untouched
    html = (out_dir / "report.html").read_text()
    _check_self_contained(html)
    # the table values: PSNR of the raw average over the same box and region, and the training numbers
    from cryocare_torch.io.mrc import read_volume

    even, odd, truth = (read_volume(demo_run / "data" / f"tomo_{n}.mrc")[0] for n in ("even", "odd", "clean"))
    box = central_box(truth.shape, 32)
    expected = psnr((0.5 * (even + odd))[box], truth[box])
    assert f"{expected:.2f}" in html
    for text in ("raw average", "Gaussian", "median", "cryocare-torch", "raw halves", "0.8123", "2 (20)",
                 "8 &Aring; (0.8 nm)", "tomo_clean.mrc", "n_first: 16", "demo wall time"):
        assert text in html, text
    assert "tilt_even" not in html
    # the slices figure: xz and yz beside xy for raw, restored and truth (the panels the PNG says it drew)
    m = re.search(r'<figure class="slices"><img alt="[^"]*" src="data:image/png;base64,([^"]+)"', html)
    assert m is not None
    panels = Image.open(io.BytesIO(base64.b64decode(m.group(1)))).info["Description"]
    assert panels == "panels: " + "; ".join(f"{v}:{p}" for v in ("raw average", "cryocare-torch", "truth")
                                            for p in ("xy", "xz", "yz"))
    assert "xz and yz slices beside it" in html
    # refuses to replace the page without --overwrite
    assert main(["report", str(demo_run), "--output", str(out_dir / "report.html")]) == 5


def test_report_of_an_evaluation_folder(demo_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ev = tmp_path / "eval"
    data = demo_run / "data"
    assert main(["evaluate", "--restored", str(demo_run / "restored.mrc"), "--even", str(data / "tomo_even.mrc"),
                 "--odd", str(data / "tomo_odd.mrc"), "--output-dir", str(ev), "--methods", "gaussian",
                 "--box", "32", "--threads", "1"]) == 0
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["quality"] is None and metrics["training"]["epochs"] == 2  # model/ found beside restored.mrc
    _report([str(ev), "--output", str(ev / "report.html")], capsys)
    html = (ev / "report.html").read_text()
    _check_self_contained(html)
    assert "No ground truth given" in html and "Against the truth" not in html
    res = metrics["fsc"]["raw halves"]["res_0_5_nm"]
    assert f"{res:.2f}" in html
    for name in ("slices.png", "slices_baselines.png"):  # no truth: raw and restored (or the baselines) only
        panels = Image.open(ev / name).info["Description"]
        assert panels.count(":xy") == panels.count(":xz") == panels.count(":yz") >= 1 and "truth" not in panels


def test_find_run_roles_and_errors(demo_run: Path, tmp_path: Path) -> None:
    run = find_run([demo_run])
    assert run.inputs is not None and run.metrics is None
    assert run.inputs.truth is not None and run.inputs.truth.name == "tomo_clean.mrc"
    assert run.inputs.model_dir == demo_run / "model" and run.demo == demo_run / "demo.json"
    assert mrc_role(Path("TS_01_restored_even.mrc")) == "restored_half"
    assert mrc_role(Path("truth_density.mrc")) is None and mrc_role(Path("tomo_EVN.mrc")) == "even"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty), "--output", str(tmp_path / "r.html")]) == 3
    assert not (tmp_path / "r.html").exists()


def test_render_escapes_text() -> None:
    metrics = {"shape": [4, 4, 4], "voxel_size_angstrom": 5.0, "inputs": {"restored": "<b>x</b>.mrc"},
               "fsc": {}, "notes": ["a < b"], "versions": {"cryocare-torch": "1"}}
    html = render(metrics, {}, title="t <script>")
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;.mrc" in html and "<script>" not in html


def test_render_shows_the_estimated_fsc_against_the_truth_and_flags_restored_halves() -> None:
    est = {"res_0_5_nm": 3.21, "res_0_5_reaches_nyquist": False, "res_0_143_nm": 2.54,
           "res_0_143_reaches_nyquist": False, "raw_average_res_0_5_nm": 6.5, "raw_average_res_0_143_nm": 4.25,
           "region": [[0, 24], [32, 48], [0, 48]], "region_source": "validation slab recorded in the checkpoint",
           "warnings": ["warning: the estimate scatters"]}
    halves = {"res_0_5_nm": 1.6, "res_0_143_nm": 1.6, "note": "Not a resolution: one network"}
    metrics = {"shape": [24, 48, 48], "voxel_size_angstrom": 8.0, "fsc": {"restored halves": halves},
               "estimated_fsc_truth": est}
    html = render(metrics, {})
    assert "Estimated FSC against the truth" in html and "3.21" in html and "2.54" in html and "4.25" in html
    assert "0-24 x 32-48 x 0-48" in html and "warning: the estimate scatters" in html
    assert "(not a resolution)" in html and "Not a resolution: one network" in html


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def test_report_renders_in_headless_chromium(demo_run: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium); the HTML itself is checked by the "
                    "other report tests")
    from PIL import Image

    page = tmp_path / "report.html"
    _report([str(demo_run), "--output", str(page), "--downstream-steps", "0"], capsys)
    shot = tmp_path / "shot.png"
    proc = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1200,2400", f"--screenshot={shot}", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert img.shape == (2400, 1200)
    assert img.std() > 10 and (img < 128).mean() > 0.01  # text and figures drawn, not a blank page
    # every figure decoded and no horizontal scroll at 1280 px: a probe script in a copy of the page (the report
    # itself holds no script) writes what the browser measured into the DOM, which --dump-dom prints
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    proc = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                           "--virtual-time-budget=10000", "--dump-dom", probe.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    found = re.search(r'data-probe="images=(\d+) broken=(\d+) scroll=(\d+) client=(\d+)"', proc.stdout)
    assert found, proc.stderr[-2000:]
    images, broken, scroll, client = map(int, found.groups())
    assert images >= 3 and broken == 0, (images, broken)
    assert client > 1200 and scroll <= client, (scroll, client)


_PROBE = ("<script>window.addEventListener('load', () => { const imgs = [...document.images]; "
          "const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length; "
          "const e = document.documentElement; document.body.setAttribute('data-probe', "
          "`images=${imgs.length} broken=${broken} scroll=${e.scrollWidth} client=${e.clientWidth}`); });</script>")


def test_downstream_note_counts_each_centre_once_when_segmenters_are_pooled() -> None:
    from cryocare_torch.report.tables import downstream_table

    row = {"f1": 0.5, "precision": 0.4, "recall": 0.6, "size_threshold": 100, "n_detections": 70, "tp": 30,
           "fp": 40, "fn": 18}
    html = downstream_table({"best": {"raw average": row}, "n_centres": 25, "target_label": 3, "steps": 1000,
                             "folds": 2, "repeats": 2})
    assert "24 of them scored over two folds" in html and "2 segmenter(s) per fold" in html
    single = downstream_table({"best": {"raw average": row}, "n_centres": 50, "steps": 1000, "folds": 1})
    assert "48 of them in the held-out region" in single
