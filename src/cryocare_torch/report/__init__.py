"""Is it better? Evaluation of a restored tomogram and a one-page HTML report.

* :func:`evaluate_run` (``cryocare evaluate``) -- FSC of raw and restored halves and against the truth,
  classical baselines, PSNR/SSIM, downstream detection, training curve; ``metrics.json`` + PNG figures.
* :func:`build_report` (``cryocare report``) -- one self-contained HTML page (figures embedded) from an
  evaluation folder, the folder of ``cryocare demo``, or a list of files.
"""

from .build import build_report
from .evaluation import evaluate_run
from .inputs import RunInputs

__all__ = ["RunInputs", "build_report", "evaluate_run"]
