"""Every ```python block of README.md and docs/*.md, run as written (issue 11; issue 12 item 8), and
every ``cryocare ...`` command they show, parsed by the real command line (not run).

The blocks of one file run in order in one namespace, in a temporary folder. The MRC files a block names
(string literals ending in ``_even.mrc`` / ``_odd.mrc``) are written there first as a tiny noisy pair of one
smooth volume. Only the run's size is changed: ``CryocareConfig`` is replaced, wherever the package exposes
it, by a subclass whose instances always train a 4-channel U-Net for one epoch of two steps on 16^3 patches
on the CPU, so a block that trains "for 15 minutes" takes seconds. Everything else (imports, calls, argument
types, paths between blocks) is the README's own, so a wrong example fails here.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cyclopts.exceptions import MissingArgumentError
from scipy.ndimage import gaussian_filter

import cryocare_torch
from cryocare_torch.cli import main as cli_main
from cryocare_torch.config import CryocareConfig
from cryocare_torch.io.mrc import read_volume, write_volume

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
_SHELL_BLOCK = re.compile(r"^```(?:bash|sh|console)[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
_INLINE_COMMAND = re.compile(r"`(cryocare [^`]+)`")
_HALF_FILE = re.compile(r"""["']([\w./-]+_(?:even|odd)\.mrc)["']""")
SHAPE = (24, 48, 48)

# one epoch of two steps of a tiny U-Net on the CPU: what the README's code does, at the smallest size
_FAST = {
    "model": {"n_first": 4},
    "patches": {"patch_size": 16, "n_patches": 16},
    "train": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "device": "cpu", "precision": "fp32",
              "num_threads": 1},
    "predict": {"device": "cpu", "precision": "fp32", "num_threads": 1},
}


class _FastConfig(CryocareConfig):
    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        for section, values in _FAST.items():
            for key, value in values.items():
                setattr(getattr(self, section), key, value)


def python_blocks(path: Path) -> list[str]:
    return [m.group(1) for m in _BLOCK.finditer(path.read_text(encoding="utf-8"))]


def _write_halves(code: str, folder: Path) -> list[Path]:
    """A tiny even/odd pair (one smooth signal, independent noise) for each half file the code names."""
    rng = np.random.default_rng(0)
    clean = gaussian_filter(rng.standard_normal(SHAPE), 2.0).astype(np.float32)
    written = []
    for name in sorted(set(_HALF_FILE.findall(code))):
        path = folder / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            noise = rng.standard_normal(SHAPE).astype(np.float32)
            written.append(write_volume(path, 3 * clean / clean.std() + noise, voxel_size=10.0))
    return written


def _fast_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace ``CryocareConfig`` by :class:`_FastConfig` in every loaded module of the package that holds it."""
    monkeypatch.setattr(cryocare_torch, "CryocareConfig", _FastConfig, raising=False)
    for name, module in list(sys.modules.items()):
        if name.startswith("cryocare_torch") and getattr(module, "CryocareConfig", None) is CryocareConfig:
            monkeypatch.setattr(module, "CryocareConfig", _FastConfig)


def run_blocks(path: Path, folder: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run the file's python blocks in order in ``folder``; returns their shared namespace."""
    blocks = python_blocks(path)
    _write_halves("\n".join(blocks), folder)
    monkeypatch.chdir(folder)
    _fast_config(monkeypatch)
    namespace: dict[str, Any] = {"__name__": f"readme_{path.stem}"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{path.name}[python block {i + 1}]", "exec"), namespace)  # noqa: S102
    return namespace


def test_readme_has_a_python_example() -> None:
    assert python_blocks(ROOT / "README.md"), "README.md lost its Python API example"


def test_block_pattern_finds_fenced_python_only(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("text\n```bash\necho no\n```\n```python\na = 1\n```\n```py\nb\n```\n```python\nb = a + 1\n```\n")
    assert python_blocks(doc) == ["a = 1\n", "b = a + 1\n"]


def test_readme_python_api_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = run_blocks(ROOT / "README.md", tmp_path, monkeypatch)
    # the example trains, restores files, and restores arrays in memory: check what it made
    outputs = [Path(p) for p in ns["outputs"]]
    assert outputs and all(p.is_file() for p in outputs)
    even, _ = read_volume(tmp_path / "TS_01_even.mrc")
    odd, _ = read_volume(tmp_path / "TS_01_odd.mrc")
    restored_file, meta = read_volume(outputs[0])
    assert restored_file.shape == even.shape and meta.voxel_size[0] == pytest.approx(10.0)
    for name in ("restored", "restored_ckpt_norm"):
        r = ns[name]
        assert isinstance(r, torch.Tensor) and tuple(r.shape) == SHAPE and bool(torch.isfinite(r).all())
    # in memory, with the pair's own statistics, equals the file path's default (normalization=input)
    np.testing.assert_allclose(ns["restored"].numpy(), restored_file, atol=2e-3 * float(np.abs(restored_file).max()))
    # the restoration is smoother than either noisy half (neighbour differences shrink)
    def roughness(a: np.ndarray) -> float:
        return float(np.mean(np.diff(a, axis=-1) ** 2))

    assert roughness(restored_file) < 0.8 * min(roughness(even), roughness(odd))


@pytest.mark.parametrize("doc", [p for p in DOCS[1:] if python_blocks(p)], ids=lambda p: p.name)
def test_docs_python_blocks_run(doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_blocks(doc, tmp_path, monkeypatch)


def documented_commands(path: Path) -> list[tuple[str, bool]]:
    """``(command line, complete)``: lines of shell blocks (complete) and inline code spans (may omit options)."""
    text = path.read_text(encoding="utf-8")
    found = []
    for block in _SHELL_BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("cryocare "):
                found.append((line.strip(), True))
    for span in _INLINE_COMMAND.findall(_SHELL_BLOCK.sub("", text)):
        if "..." not in span and "--help" not in span and not re.search(r"\b[A-Z]{3,}\b", span.split()[1]):
            found.append((span.split(">")[0], False))  # drop a shell redirection
    return found


def test_command_finder_reads_blocks_and_spans(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("```bash\ncryocare fsc a.mrc \\\n  b.mrc  # note\nls\n```\nRun `cryocare config > my.yaml`, "
                   "`cryocare COMMAND --help`, `cryocare batch ... --x`.\n")
    assert documented_commands(doc) == [("cryocare fsc a.mrc    b.mrc  # note", True), ("cryocare config ", False)]


def parse_problem(line: str, complete: bool) -> str | None:
    """Why the real command line rejects ``line`` (None: it parses). An incomplete line gets a dummy ``1`` for
    each required option it omits, so its command, option names and choices are still checked."""
    tokens = shlex.split(line, comments=True)[1:]
    for _ in range(10):
        try:
            cli_main.app.parse_args(tokens, exit_on_error=False, print_error=False)
            return None
        except MissingArgumentError as exc:
            if complete:
                return str(exc)
            tokens += [exc.argument.name, "1"]
        except Exception as exc:  # noqa: BLE001 - any parse failure is a wrong example
            return f"{type(exc).__name__}: {exc}"
    return "still missing options after 10 dummies"


def test_parse_problem_names_wrong_choices_and_missing_options() -> None:
    assert parse_problem("cryocare prepare p2p --regime ip", complete=False) is None
    assert "ipp" in str(parse_problem("cryocare prepare p2p --regime ipp", complete=False))
    assert "--mdoc" in str(parse_problem("cryocare prepare p2p --regime ip --output-dir p/", complete=True))
    assert "--no-such" in str(parse_problem("cryocare fsc a.mrc b.mrc --no-such 1", complete=True))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_documented_cli_commands_parse(doc: Path) -> None:
    """Each command, subcommand, option and choice the docs show exists; shell lines lack no required option."""
    bad = [f"{line}: {why}" for line, complete in documented_commands(doc) if (why := parse_problem(line, complete))]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_point_to_existing_files_and_headings(doc: Path) -> None:
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # http(s):, mailto:
        file_part, _, anchor = target.partition("#")
        path = (doc.parent / file_part).resolve() if file_part else doc
        if not path.exists():
            bad.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
            slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
            if anchor not in slugs:
                bad.append(f"{target}: no heading #{anchor} in {path.name}")
    assert not bad, "\n".join(bad)
