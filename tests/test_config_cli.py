"""The CLI options of the configuration sections are generated from the pydantic models (config.py,
config_runs.py): each flag's default is the field's default and its --help shows the field's description."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel
from rich.console import Console

from cryocare_torch.cli.main import app, main
from cryocare_torch.config import CryocareConfig, MotionConfig
from cryocare_torch.config_runs import EvalConfig, SlurmConfig, WatchConfig
from cryocare_torch.io.mrc import write_volume

GENERATED: list[tuple[tuple[str, ...], type[BaseModel]]] = [
    (("evaluate",), EvalConfig), (("report",), EvalConfig), (("watch",), WatchConfig), (("batch",), WatchConfig),
    (("batch",), SlurmConfig), (("prepare", "motion"), MotionConfig),
]


def _help(command: tuple[str, ...]) -> str:
    out = io.StringIO()
    app.help_print(list(command), console=Console(file=out, width=2000, color_system=None))
    return " ".join(out.getvalue().replace("│", " ").split())


@pytest.mark.parametrize(("command", "model"), GENERATED, ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_flags_take_default_and_help_from_the_model(command: tuple[str, ...], model: type[BaseModel]) -> None:
    sub = app
    for name in command:
        sub = sub[name]
    arguments = {a.name: a for a in sub.assemble_argument_collection()}
    text = _help(command)
    for field, info in model.model_fields.items():
        flag = "--" + field.replace("_", "-")
        assert flag in arguments, f"{' '.join(command)}: {flag} missing"
        arg = arguments[flag]
        assert arg.field_info.default == info.get_default(call_default_factory=True), flag
        assert info.description and arg.parameter.help == info.description, flag
        assert info.description in text, flag  # what --help prints, unwrapped
        default = info.get_default(call_default_factory=True)
        if default is not None and not isinstance(default, bool):
            assert f"{info.description} [default: {default}]" in text, flag


@pytest.mark.parametrize("command", ["tiltseries", "t2t", "p2p"])
def test_prepare_bfactor_is_the_motion_setting(command: str) -> None:
    info = MotionConfig.model_fields["bfactor"]
    arg = next(a for a in app["prepare"][command].assemble_argument_collection() if a.name == "--bfactor")
    assert arg.field_info.default is None and arg.parameter.help == info.description
    assert info.description in _help(("prepare", command))


def test_every_section_is_in_the_tree_with_bounds_and_descriptions() -> None:
    sections = {name: f.annotation for name, f in CryocareConfig.model_fields.items()}
    assert {"motion": MotionConfig, "evaluate": EvalConfig, "slurm": SlurmConfig, "watch": WatchConfig}.items() \
        <= sections.items()
    for model in (MotionConfig, EvalConfig, SlurmConfig, WatchConfig):
        for name, info in model.model_fields.items():
            assert info.description and info.description.endswith((".", ")")), f"{model.__name__}.{name}"


@pytest.mark.parametrize(("args", "flag"), [
    (["watch", ".", "--output", "o", "--model", "m.pt", "--interval", "0"], "--interval"),
    (["batch", ".", "--model", "m.pt", "--output-dir", "o", "--cpus", "0"], "--cpus"),
    (["batch", ".", "--model", "m.pt", "--output-dir", "o", "--time", "2h"], "--time"),
    (["evaluate", "--restored", "r", "--even", "e", "--odd", "o", "--output-dir", "x", "--box", "8"], "--box"),
    (["evaluate", "--restored", "r", "--even", "e", "--odd", "o", "--output-dir", "x", "--downstream-folds", "3"],
     "--downstream-folds"),
    (["prepare", "motion", "m.tif", "--output", "o", "--defect-z", "1"], "--defect-z"),
])
def test_a_bound_of_the_model_is_one_line_naming_the_flag(
    args: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cryocare: error: {flag}: "), err


def test_a_config_file_sets_slurm_and_a_flag_overrides_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tomos = tmp_path / "tomos"
    tomos.mkdir()
    rng = np.random.default_rng(0)
    for half in ("even", "odd"):
        write_volume(tomos / f"TS_01_{half}.mrc", rng.normal(size=(8, 16, 16)).astype(np.float32), voxel_size=10.0)
    (tmp_path / "best.pt").write_bytes(b"x")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("slurm:\n  partition: fromfile\n  mem: 8G\n")
    out = tmp_path / "out"
    assert main(["batch", str(tomos), "--model", str(tmp_path / "best.pt"), "--output-dir", str(out),
                 "--sbatch-only", "--config", str(cfg), "--mem", "16G"]) == 0
    capsys.readouterr()
    script = next((out / "cryocare_batch").glob("batch-*.sbatch")).read_text().splitlines()
    assert "#SBATCH --partition=fromfile" in script and "#SBATCH --mem=16G" in script
    assert f"#SBATCH --job-name={SlurmConfig().job_name}" in script
