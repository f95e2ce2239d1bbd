#!/usr/bin/env bash
# Create .venv and install cryocare-torch with its test tools.
# Where no NVIDIA GPU is present, torch is pinned to the CPU wheel (2.13.0) so that pip does not pull
# a multi-GB CUDA build; on a GPU machine the newest torch allowed by pyproject.toml is installed.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    .venv/bin/python -m pip install -q "torch>=2.4,<=2.14.1"
  else
    .venv/bin/python -m pip install -q "torch==2.13.0"
  fi
fi
.venv/bin/python -m pip install -q -e ".[dev]"
echo "cryocare-torch installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
