#!/usr/bin/env bash
# Set up a development environment on a fresh machine: a virtualenv in .venv with PyTorch (the
# pinned CPU build) and Proctor with every extra. Safe to run again; it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
# The project's torch pin. Where pip is configured with a local CPU build of it (our dev and CI
# machines), that is what installs; elsewhere set TORCH_INDEX_URL to a CPU wheel index to avoid
# a multi-GB CUDA build.
TORCH_VERSION=2.13.0

if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3.11
  command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
fi
python_ok() {
  "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null
}
python_ok "$PYTHON" || { echo "setup: Proctor needs Python 3.11 or newer; $PYTHON is not (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

if [ -x "$VENV/bin/python" ] && ! python_ok "$VENV/bin/python"; then
  echo "setup: $VENV has a Python older than 3.11; remove it (make clean) and run again" >&2
  exit 1
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch first and pinned, so no later requirement can pull a different build.
"$VENV/bin/python" -m pip install --quiet ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==${TORCH_VERSION}"
"$VENV/bin/python" -m pip install --quiet -e '.[all,test]'
PYTHON="$VENV/bin/python" ./scripts/install-kube-tools.sh
# Prometheus and promtool (Debian's package) for the tests that scrape real metrics. CI runs as
# root; elsewhere install the package yourself, or those tests fail saying so.
if ! command -v prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  else
    echo "setup: prometheus is not installed (apt-get install prometheus); its tests will fail" >&2
  fi
fi
touch "$VENV/.installed"
echo "Ready: $("$VENV/bin/proctor" --version), torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
