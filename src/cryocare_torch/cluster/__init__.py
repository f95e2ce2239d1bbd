"""Running batches on a cluster (SLURM job arrays: one task per tomogram pair)."""

from __future__ import annotations

from ..errors import CryocareError


class ClusterError(CryocareError):
    """The scheduler refused a job, is unreachable, or a job did not finish (in time)."""

    exit_code = 8


__all__ = ["ClusterError"]
