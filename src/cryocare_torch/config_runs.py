"""Settings of the run-level workflows: evaluation, SLURM job arrays and live mode (sections of
:class:`~cryocare_torch.config.CryocareConfig`).

Each field has its one default, its bounds and its description here; the CLI expands these models into its
flags (``--box``, ``--partition``, ``--interval``...: the field name with dashes), so ``--help`` shows these
descriptions and defaults (tests/test_config_cli.py checks it).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError

BaselineName = Literal["median", "gaussian", "nad"]


class Section(BaseModel):
    """Base of every section of the configuration: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EvalConfig(Section):
    """``cryocare evaluate`` and ``cryocare report``: baselines, quality scores, downstream detection."""

    box: int = Field(
        128, ge=24, le=4096, description="Central box (voxels per axis) where baselines run and PSNR/SSIM are "
        "scored; bounds median/NAD CPU time (at least 24: SSIM needs 11 voxels per axis inside a 10% border).")
    methods: list[str] | None = Field(
        None, description="Baselines to run: median, gaussian, nad (default all; e.g. --methods median gaussian).")
    soft_edge: float = Field(6.0, ge=0, le=256, description="Cosine taper of the FSC box mask in voxels (0: no mask).")
    voxel_size: float | None = Field(None, gt=0, description="Voxel size in Angstrom (default: from the MRC headers).")
    downstream_steps: int = Field(
        1000, ge=0, le=1_000_000,
        description="Segmenter training steps per volume and fold for the downstream detection check (0: skip it).")
    downstream_folds: int = Field(
        2, ge=1, le=2,
        description="Downstream check: 2 holds out each half once (every object scored), 1 only the second half.")
    downstream_repeats: int = Field(
        1, ge=1, le=100,
        description="Downstream check: segmenters per fold and volume (seeds 0, 1, ...), counts pooled; steadier "
        "F1, slower.")
    target_label: int = Field(
        3, ge=1, description="Label value of the objects whose centres are given (3: decorations of simulated data).")
    device: str = Field("auto", description="Device for the downstream segmenters: auto, cpu, cuda or cuda:N.")


_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")
_MEM = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)
_WORD = re.compile(r"^[\w.,:=@+-]+$")
_SLURM_HINT = "is not a valid SLURM value (e.g. --time 2:00:00, --mem 32G, --gpus 1 or a100:1)"


class SlurmConfig(Section):
    """Resources of each task of ``cryocare batch --slurm`` (one pair each); unset leaves the cluster's default."""

    partition: str | None = Field(None, description="Partition (queue) for the array tasks.")
    time: str | None = Field(None, description="Time limit per task (one pair), e.g. 1:00:00.")
    mem: str | None = Field(None, description="Memory per task, e.g. 32G.")
    gpus: str | None = Field(None, description="GPUs per task, e.g. 1 or a100:1.")
    cpus: int | None = Field(
        None, ge=1, description="CPU cores per task (also the torch thread count unless --threads is given).")
    max_parallel: int | None = Field(None, ge=1, description="At most this many tasks run at once (the %N of --array).")
    account: str | None = Field(None, description="Account to charge.")
    job_name: str = Field("cryocare-batch", description="Job name (also in the log file names).")
    sbatch_arg: list[str] | None = Field(
        None, description="Any other sbatch option, e.g. --sbatch-arg=--qos=high (repeatable).")
    setup: list[str] | None = Field(
        None, description="Shell line run before each task, e.g. --setup 'module load cuda' (repeatable).")
    executable: str | None = Field(
        None, description="The cryocare command on the compute nodes (default: this environment's, by absolute path).")

    @field_validator("partition", "gpus", "account", "job_name")
    @classmethod
    def _word(cls, value: str | None) -> str | None:
        return _matching(value, _WORD)

    @field_validator("time")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        return _matching(value, _TIME)

    @field_validator("mem")
    @classmethod
    def _mem(cls, value: str | None) -> str | None:
        return _matching(value, _MEM)

    @field_validator("sbatch_arg")
    @classmethod
    def _long_options(cls, value: list[str] | None) -> list[str] | None:
        for arg in value or []:
            if not arg.startswith("--"):
                raise ValueError(f"{arg!r} must be a long sbatch option such as --qos=high")
        return value


def _matching(value: str | None, pattern: re.Pattern[str]) -> str | None:
    if value is not None and not pattern.match(value):
        raise ValueError(f"{value!r} {_SLURM_HINT}")
    return value


class WatchConfig(Section):
    """Live mode (``cryocare watch``, ``cryocare batch --watch``): when to look and when to stop."""

    interval: float = Field(
        10.0, gt=0, description="Seconds between scans; a file is used once unchanged for this long and as large as "
        "its header says.")
    max_idle_minutes: float | None = Field(
        None, gt=0, description="Stop after this long without a new pair or a growing file (default: run until "
        "Ctrl-C).")
    max_pairs: int | None = Field(
        None, ge=1, description="Stop after this many pairs were restored (or failed) in this run.")


def option_name(loc: tuple[int | str, ...]) -> str:
    """The CLI flag of a field location: ``("max_pairs",)`` -> ``--max-pairs``."""
    return "--" + str(loc[-1]).replace("_", "-") if loc else "(options)"


def format_option_errors(err: ValidationError) -> str:
    """One line naming each bad flag: ``--interval: Input should be greater than 0 (got '0')``."""
    parts = []
    for e in err.errors():
        got = f" (got {e['input']!r})" if not isinstance(e.get("input"), dict) else ""
        parts.append(f"{option_name(tuple(e['loc']))}: {e['msg'].removeprefix('Value error, ')}{got}")
    return "; ".join(parts)


def updated(section: BaseModel, **values: Any) -> Any:
    """A validated copy of ``section`` with the ``values`` that are not None; a :class:`ConfigError` names the
    bad flags."""
    given = {k: v for k, v in values.items() if v is not None}
    try:
        return type(section).model_validate({**section.model_dump(), **given})
    except ValidationError as err:
        raise ConfigError(format_option_errors(err)) from None


def given(section: BaseModel | None) -> dict[str, Any]:
    """The fields of ``section`` that were set explicitly (on the command line), to override a config file's."""
    return {} if section is None else section.model_dump(include=section.model_fields_set)
