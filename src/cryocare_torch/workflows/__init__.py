"""Workflows: what a user runs, built on the stages below (the CLI is a thin layer over these).

* :mod:`.api` -- ``train``, ``predict``, ``denoise`` (the Python API mirroring the CLI);
* :mod:`.batch` -- many pairs, one model, a manifest; :mod:`.shard` / :mod:`.shard_runs` -- the batch split
  over devices or torchrun processes; :mod:`.slurm` -- the batch as a SLURM job array;
* :mod:`.watch` -- follow a folder while data arrive; :mod:`.demo` -- the simulated end-to-end demo;
* :mod:`.p2p` -- P2P then reconstruct (trains and predicts, then reconstructs the restored tilts).
"""
