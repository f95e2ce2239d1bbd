"""``cryocare report``: one self-contained HTML page from a run folder, an evaluation or files.

When the paths hold a ``metrics.json`` of ``cryocare evaluate`` the page shows that evaluation and its
figures. Otherwise (e.g. the folder of ``cryocare demo``) the tomograms are found by name
(:func:`~.collect.find_run`) and evaluated first in a temporary folder; nothing but the HTML file is
written.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config_runs import EvalConfig
from ..errors import InputFileError
from ..io.atomic import atomic_write_text, check_output
from .collect import find_run, load_demo, load_metrics
from .evaluation import evaluate_run
from .html import render


def _figures(metrics: dict[str, Any], folder: Path) -> dict[str, bytes]:
    out = {}
    for key, name in (metrics.get("figures") or {}).items():
        p = folder / str(name)
        if not p.is_file():
            raise InputFileError(f"figure {name} of the evaluation is missing; rerun 'cryocare evaluate'", p)
        out[key] = p.read_bytes()
    return out


def build_report(
    paths: Sequence[str | Path], output: str | Path, options: EvalConfig | None = None, *,
    overwrite: bool = False, title: str | None = None, log: Callable[[str], None] | None = None,
) -> Path:
    """Write the HTML report of the run in ``paths`` to ``output`` (atomically); returns its path."""
    out = Path(output)
    run = find_run([Path(p) for p in paths])
    inputs = [p for p in (run.metrics, *(vars(run.inputs).values() if run.inputs else ())) if isinstance(p, Path)]
    check_output(out, overwrite=overwrite, inputs=inputs)
    demo = load_demo(run.demo)
    if run.metrics is not None:
        metrics = load_metrics(run.metrics)
        figures = _figures(metrics, run.metrics.parent)
        source = str(run.metrics.parent)
    else:
        if run.inputs is None:  # find_run raises before this; kept for type checkers
            raise InputFileError("nothing to report on", run.searched[0])
        with tempfile.TemporaryDirectory(prefix=".cryocare_report_", dir=out.parent) as tmp:
            metrics = evaluate_run(run.inputs, Path(tmp), options, log=log)
            figures = _figures(metrics, Path(tmp))
        source = ", ".join(str(p) for p in run.searched)
    html = render(metrics, figures, demo=demo, title=title or f"cryocare-torch report: {Path(source).name or source}",
                  source=source)
    return atomic_write_text(out, html, overwrite=overwrite)
