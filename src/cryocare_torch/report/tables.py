"""HTML tables of the report: inputs, training, quality against the truth, FSC resolutions, downstream.

Cells are escaped here; the best value of each quality column is marked (class ``best``) and the
cryocare-torch row highlighted (class ``ours``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

Cell = str | tuple[str, str]
"""Escaped HTML, or ``(html, css class)`` (e.g. ``"best"``)."""
OURS = "cryocare-torch"
INPUT_NAMES = {"restored": "restored", "even": "even half", "odd": "odd half", "truth": "truth (noise-free)",
               "labels": "labels", "centres": "object centres", "model_dir": "model folder"}


def fmt(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals (tiny ones in 3 significant digits), escaped text otherwise."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return escape(str(value))
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return "inf" if value > 0 else "-"
    return f"{value:.{digits}f}" if value == 0 or abs(value) >= 10**-digits else f"{value:.3g}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], *, numeric: Sequence[int] = (),
          row_classes: Sequence[str] | None = None) -> str:
    """An HTML table of already-escaped cells; ``numeric``: right-aligned column indices."""
    head = "".join(f'<th{" class=num" if i in numeric else ""}>{escape(h)}</th>' for i, h in enumerate(headers))
    body = []
    for k, row in enumerate(rows):
        cls = f' class="{row_classes[k]}"' if row_classes and row_classes[k] else ""
        cells = []
        for i, cell in enumerate(row):
            text, extra = cell if isinstance(cell, tuple) else (cell, "")
            css = " ".join(c for c in ("num" if i in numeric else "", extra) if c)
            cells.append(f'<td class="{css}">{text}</td>' if css else f"<td>{text}</td>")
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def inputs_table(inputs: Mapping[str, Any]) -> str:
    rows = [[escape(INPUT_NAMES.get(k, k)), f"<code>{escape(str(v))}</code>"] for k, v in inputs.items() if v]
    return table(["role", "file"], rows) if rows else '<p class="note">not recorded</p>'


def training_table(training: Mapping[str, Any] | None, demo: Mapping[str, Any] | None) -> str:
    rows: list[list[Cell]] = []
    t = training or {}
    if t.get("epochs") is not None:
        rows.append(["epochs (steps)", f"{fmt(t['epochs'])} ({fmt(t.get('steps'))})"])
    if t.get("training_minutes") is not None:
        rows.append(["training time", f"{t['training_minutes']:.1f} min"])
    if t.get("best_val_loss") is not None:
        best = f" (after {t['best_epoch']} complete epochs)" if t.get("best_epoch") else ""
        rows.append(["best validation loss", fmt(float(t["best_val_loss"]), 4) + best])
    if t.get("checkpoint_package_version"):
        rows.append(["checkpoint written by", escape(f"cryocare-torch {t['checkpoint_package_version']}, "
                                                     f"torch {t.get('checkpoint_torch_version')}")])
    if t.get("checkpoint_error"):
        rows.append(["checkpoint", escape(str(t["checkpoint_error"]))])
    seconds = (demo or {}).get("seconds") or {}
    if seconds.get("total") is not None:
        rows.append(["demo wall time", f"{float(seconds['total']) / 60:.1f} min (simulation "
                                       f"{float(seconds.get('simulate', 0)) / 60:.1f} min)"])
    if not rows:
        return ""
    return "<table class=kv>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _best_index(values: Sequence[float | None], higher: bool) -> int | None:
    """Index of the single best finite value (``None`` when fewer than two values or a tie)."""
    ok = [(v, i) for i, v in enumerate(values) if isinstance(v, (int, float)) and math.isfinite(v)]
    if len(ok) < 2:
        return None
    value, index = max(ok) if higher else min(ok)
    return index if sum(v == value for v, _ in ok) == 1 else None  # no winner on a tie


def quality_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """PSNR, gain over the raw average, SSIM and FSC-0.5 against the truth; best per column in bold."""
    raw = next((r.get("psnr") for r in rows if r.get("name") == "raw average"), None)
    cols = [("psnr", True), ("ssim", True), ("fsc_res_0_5_nm", False)]
    best = {c: _best_index([r.get(c) for r in rows], hi) for c, hi in cols}
    out: list[list[Cell]] = []
    for i, r in enumerate(rows):
        def cell(c: str, digits: int, i: int = i, r: Mapping[str, Any] = r) -> Cell:
            return (fmt(r.get(c), digits), "best") if best[c] == i else fmt(r.get(c), digits)

        gain = f"{r['psnr'] - raw:+.2f}" if raw is not None and r.get("psnr") is not None else "-"
        out.append([escape(str(r.get("name"))), escape(str(r.get("params", ""))), cell("psnr", 2), gain,
                    cell("ssim", 3), cell("fsc_res_0_5_nm", 2) if "fsc_res_0_5_nm" in r else "-"])
    classes = ["ours" if r.get("name") == OURS else "" for r in rows]
    return table(["method", "parameters", "PSNR (dB)", "vs raw (dB)", "SSIM",
                  "FSC 0.5 vs truth in the box (nm)"], out,
                 numeric=(2, 3, 4, 5), row_classes=classes)


def _res(curve: Mapping[str, Any], key: str) -> str:
    value = curve.get(f"res_{key}_nm")
    if value is None:
        return "-"
    if curve.get(f"res_{key}_reaches_nyquist"):
        return f'&lt; {float(value):.2f} <span class="flag">(reaches Nyquist)</span>'
    return f"{float(value):.2f}"


def fsc_table(curves: Mapping[str, Mapping[str, Any]]) -> str:
    rows: list[list[Cell]] = [[escape(name) + (" <span class=flag>(not a resolution)</span>" if c.get("note") else ""),
                               _res(c, "0_5"), _res(c, "0_143")] for name, c in curves.items()]
    if not rows:
        return '<p class="note">no FSC computed</p>'
    classes = ["ours" if OURS in name or "restored" in name else "" for name in curves]
    notes = "".join(f'<p class="note">{escape(name)}: {escape(str(c["note"]))}</p>' for name, c in curves.items()
                    if c.get("note"))
    return table(["comparison", "FSC = 0.5 (nm)", "FSC = 0.143 (nm)"], rows, numeric=(1, 2),
                 row_classes=classes) + notes


def estimate_table(est: Mapping[str, Any]) -> str:
    """Crossings of the estimated FSC against the truth (and of the raw average, and the true one when known)."""
    rows: list[list[Cell]] = [[f"{OURS} vs truth, estimated from the halves", _res(est, "0_5"), _res(est, "0_143")]]
    rows.append(["raw average vs truth, sqrt(2F/(1+F))", fmt(est.get("raw_average_res_0_5_nm"), 2),
                 fmt(est.get("raw_average_res_0_143_nm"), 2)])
    if est.get("true_res_0_5_nm") is not None:
        rows.append([f"{OURS} vs truth, true (same region)", fmt(est.get("true_res_0_5_nm"), 2),
                     fmt(est.get("true_res_0_143_nm"), 2)])
    region = " x ".join(f"{a}-{b}" for a, b in est.get("region") or [])
    notes = [f"Region (z x y x x voxels): {region}; {est.get('region_source', '')}."]
    notes += [str(w) for w in est.get("warnings") or []]
    return (table(["comparison", "FSC = 0.5 (nm)", "FSC = 0.143 (nm)"], rows, numeric=(1, 2),
                  row_classes=["ours", "", ""][: len(rows)])
            + "".join(f'<p class="note">{escape(n)}</p>' for n in notes))


def downstream_table(downstream: Mapping[str, Any]) -> str:
    best = downstream.get("best") or {}
    f1 = _best_index([r.get("f1") for r in best.values()], True)
    rows: list[list[Cell]] = []
    for i, (name, r) in enumerate(best.items()):
        rows.append([escape(name), (fmt(r.get("f1")), "best") if i == f1 else fmt(r.get("f1")),
                     fmt(r.get("precision")), fmt(r.get("recall")), fmt(r.get("size_threshold")),
                     fmt(r.get("n_detections")), f"{fmt(r.get('tp'))} / {fmt(r.get('fp'))} / {fmt(r.get('fn'))}"])
    classes = ["ours" if name == OURS else "" for name in best]
    first: Mapping[str, Any] = next(iter(best.values()), {})
    repeats = int(downstream.get("repeats", 1))
    # each centre is counted once per repeat (TP or FN) in the pooled counts
    held_out = (first.get("tp", 0) + first.get("fn", 0)) // repeats if first else None
    folds = downstream.get("folds", 1)
    where = "scored over two folds (each half held out once)" if folds == 2 else "in the held-out region"
    note = (f'<p class="note">{fmt(downstream.get("n_centres"))} known centres (label '
            f'{fmt(downstream.get("target_label"))}), {fmt(held_out)} of them {where}; {repeats} segmenter(s) per '
            f'fold trained for {fmt(downstream.get("steps"))} steps, counts pooled.</p>')
    return table(["volume", "F1", "precision", "recall", "size threshold (voxels)", "detections", "TP / FP / FN"],
                 rows, numeric=(1, 2, 3, 4, 5), row_classes=classes) + note
