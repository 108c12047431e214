#!/usr/bin/env bash
# Set up a development environment on a fresh machine: a virtualenv in .venv with PyTorch (the
# pinned CPU build) and Proctor with every extra. Safe to run again; it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
TORCH_VERSION=2.13.0   # pinned: this version installs as a local CPU build; newer pulls CUDA builds

command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" - <<'PY' || { echo "Proctor needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch first and pinned, so no later requirement can pull a multi-GB CUDA build.
"$VENV/bin/python" -m pip install --quiet "torch==${TORCH_VERSION}"
"$VENV/bin/python" -m pip install --quiet -e '.[all,test]'
touch "$VENV/.installed"
echo "Ready: $("$VENV/bin/proctor" --version), torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
