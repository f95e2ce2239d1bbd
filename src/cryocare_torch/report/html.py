"""One self-contained HTML page from an evaluation: header, tables of numbers, embedded PNG figures.

Figures are embedded as ``data:image/png;base64`` URIs and the style sheet is inline, so the page
needs no other file and loads nothing from the network. Every text taken from files is escaped.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from html import escape
from typing import Any

from .tables import downstream_table, estimate_table, fsc_table, inputs_table, quality_table, training_table

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1d2430;
 background:#fff;margin:0;line-height:1.45;font-size:15px}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:34px 0 10px;padding-bottom:4px;
 border-bottom:2px solid #e3e7ee}h3{font-size:16px;margin:20px 0 6px}
.sub{color:#5a6474;margin:0 0 18px}
table{border-collapse:collapse;margin:8px 0 14px;font-size:14px}
th,td{padding:5px 12px;border-bottom:1px solid #e3e7ee;text-align:left;vertical-align:top}
th{background:#f3f5f9;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.ours td{background:#f2f8f2}td.best{font-weight:700}
table.kv th{width:190px;background:none;color:#5a6474;font-weight:500}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
pre{background:#f6f8fa;border:1px solid #e3e7ee;padding:10px;overflow:auto;max-height:420px}
figure{margin:14px 0 22px}figure img{max-width:100%;height:auto;border:1px solid #e3e7ee}
figure.fsc img{width:860px}figure.loss img{width:720px}figure.slices img,figure.slices_baselines img{width:1000px}
figcaption{color:#4a5363;font-size:14px;margin-top:6px;max-width:900px}
.note{color:#5a6474;font-size:14px}ul.notes li{margin:3px 0}
details summary{cursor:pointer;color:#2456a6}
.flag{color:#8a5a00;font-size:12px}
"""

CAPTIONS = {
    "slices": "Central xy slice of the evaluation box with the central xz and yz slices beside it (z is the beam "
              "direction: the missing wedge elongates objects along z there), for the raw average of the even and "
              "odd halves, the cryocare-torch restoration and (when known) the truth, one row each. Grey levels "
              "are clipped to the 1st-99th percentile of each row; scale bars in nm.",
    "slices_baselines": "The same slices filtered by the classical baselines (parameters in the table above).",
    "fsc": "Fourier shell correlation. Between independent raw halves it measures the resolution to which the "
           "halves agree; against the truth, how far the tomogram matches the noise-free reconstruction. The "
           "restored halves' FSC is not a resolution: one network trained on both halves made them, so it is "
           "inflated (it stays high even on pure noise); see the estimated FSC against the truth below. "
           "Legend: resolutions where the curve drops below 0.5 and 0.143 ('<' = stays above to Nyquist).",
    "fsc_truth": "The restoration's FSC against the unknown truth, estimated from the two halves alone on the region "
                 "the network never trained on (its validation slab): per shell Re(<F(f(e))F(o)*> + <F(f(o))F(e)*>)/2 "
                 "/ sqrt(<|F(r)|^2> Re<F(e)F(o)*>), where o is independent of f(e) and the raw halves' cross-spectrum "
                 "estimates the signal power. Beside it the raw average's sqrt(2 FSC/(1 + FSC)) and, with a truth, "
                 "the true FSC on the same region. Unlike the restored halves' FSC this is a resolution estimate.",
    "loss": "Noise2Noise training: loss on training patches and on the held-out validation region per epoch "
            "(learning rate dotted, right axis). Both stay well above zero: the target is the other noisy half.",
    "precision_recall": "Downstream detection (as in cryo-CARE, Buchholz et al. 2019): a segmenter trained on each "
                        "tomogram with the same labels, detections = connected components above a size threshold, "
                        "matched to the known object centres on held-out regions (each half of the volume once).",
}
TITLES = {"slices": "Slices", "slices_baselines": "Slices: baselines",
          "fsc": "Resolution (FSC)", "fsc_truth": "Estimated FSC against the truth",
          "loss": "Training", "precision_recall": "Downstream detection"}


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure(key: str, png: bytes) -> str:
    alt = escape(TITLES.get(key, key))
    caption = escape(CAPTIONS.get(key, ""))
    img = f'<img alt="{alt}" src="{data_uri(png)}">'
    return f'<figure class="{escape(key)}">{img}<figcaption>{caption}</figcaption></figure>'


def render(metrics: Mapping[str, Any], figures: Mapping[str, bytes], *, demo: Mapping[str, Any] | None = None,
           title: str = "cryocare-torch report", source: str = "") -> str:
    """The whole page as a string. ``figures``: PNG bytes by key (slices, fsc, loss, precision_recall)."""
    vs = metrics.get("voxel_size_angstrom")
    shape = metrics.get("shape") or []
    box = metrics.get("box") or {}
    parts = [f"<h1>{escape(title)}</h1>",
             f'<p class="sub">{escape(source)}{" &middot; " if source else ""}evaluated '
             f'{escape(str(metrics.get("created", "")).replace("T", " ")[:16])}</p>', "<h2>Run</h2>"]
    kv = [("Tomogram", f"{' x '.join(map(str, shape))} voxels (z, y, x)" if shape else "-"),
          ("Voxel size", f"{vs:.3g} &Aring; ({vs / 10:.3g} nm); Nyquist {2 * vs / 10:.3g} nm" if vs else "-"),
          ("Evaluation box", f"{' x '.join(map(str, box.get('shape', [])))} voxels at "
                             f"{tuple(box.get('start', []))} (baselines, PSNR/SSIM)" if box else "-"),
          ("Versions", escape(", ".join(f"{k} {v}" for k, v in (metrics.get("versions") or {}).items())))]
    parts.append("<table class=kv>" + "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in kv) + "</table>")
    parts.append("<h3>Inputs</h3>" + inputs_table(metrics.get("inputs") or {}))
    training = training_table(metrics.get("training"), demo)
    if training:
        parts.append("<h3>Training</h3>" + training)

    parts.append("<h2>Numbers</h2>")
    if metrics.get("quality"):
        parts.append("<h3>Against the truth</h3>" + quality_table(metrics["quality"]))
    parts.append("<h3>Resolution (FSC)</h3>" + fsc_table(metrics.get("fsc") or {}))
    if metrics.get("estimated_fsc_truth"):
        parts.append("<h3>Estimated FSC against the truth (no truth needed)</h3>"
                     + estimate_table(metrics["estimated_fsc_truth"]))
    if metrics.get("downstream"):
        parts.append("<h3>Downstream detection (held-out regions, best F1 over size thresholds)</h3>"
                     + downstream_table(metrics["downstream"]))

    parts.append("<h2>Figures</h2>")
    for key in ("slices", "slices_baselines", "fsc", "fsc_truth", "loss", "precision_recall"):
        if key in figures:
            parts.append(f"<h3>{escape(TITLES[key])}</h3>" + _figure(key, figures[key]))
    notes = list(metrics.get("notes") or []) + [
        "PSNR/SSIM: least-squares affine fit of each volume onto the truth, central region without a 10% border "
        "of the evaluation box; SSIM with a Gaussian window (sigma 1.5).",
        "Oracle-tuned baselines picked their parameters by PSNR against the truth: an upper bound of what they "
        "achieve on real data, where no truth exists.",
        "FSC with a cosine-tapered box mask over the whole tomogram; resolutions are interpolated between shells.",
    ]
    parts.append("<h2>Notes</h2><ul class=notes>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    config = metrics.get("config") or (demo or {}).get("config")
    if config:
        import yaml

        text = yaml.safe_dump(config, sort_keys=False)
        parts.append(f"<details><summary>Configuration of the run</summary><pre>{escape(text)}</pre></details>")
    body = "\n".join(parts)
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width,initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body><main>\n{body}\n</main></body></html>\n")
