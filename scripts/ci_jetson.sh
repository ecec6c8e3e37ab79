#!/usr/bin/env bash
# CI for the Jetson path (see docs/jetson.md): the box's extras resolve as aarch64 cp310 wheels without torch or a
# PyPI tensorrt, the box's tests pass under Python 3.10 in a venv without torch, and the shipped bundle's prepared
# engine graphs pass the ONNX lint for the TensorRT 10.3 parser. Run from the repository root.
set -euo pipefail
PY310=${PY310:-}
if [ -z "$PY310" ]; then
  for c in python3.10 /root/.pyenv/versions/3.10.13/bin/python; do
    if PYENV_VERSION=3.10.13 "$c" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then PY310=$c; break; fi
  done
fi
[ -n "$PY310" ] || { echo "ci_jetson: no Python 3.10 found (set PY310=/path/to/python3.10)" >&2; exit 1; }
VENV=runs/venv-box310
mkdir -p runs

echo "== aarch64 cp310 resolution of lpbf-edge[box,jetson] (JetPack 6: Ubuntu 22.04, glibc 2.35)"
plat=()
for v in $(seq 35 -1 17); do plat+=(--platform "manylinux_2_${v}_aarch64"); done
.venv/bin/pip install -q --dry-run --ignore-installed --only-binary=:all: --python-version 3.10 \
  "${plat[@]}" --platform manylinux2014_aarch64 --report runs/jetson-wheels.json ".[box,jetson]"
.venv/bin/python - <<'PY'
import json
names = sorted(i["metadata"]["name"].lower() for i in json.load(open("runs/jetson-wheels.json"))["install"])
bad = [n for n in names if n == "torch" or n.startswith("tensorrt") or n.startswith("nvidia-")]
assert not bad, f"the Jetson box extras pull {bad}: torch and TensorRT must not come from PyPI there"
assert "cuda-python" in names and "onnxruntime" in names, names
print(f"{len(names)} aarch64 cp310 wheels, no torch, no PyPI TensorRT")
PY

echo "== Python 3.10 venv without torch ($PY310)"
if [ ! -x "$VENV/bin/python" ] || [ pyproject.toml -nt "$VENV/.installed" ]; then
  rm -rf "$VENV"
  PYENV_VERSION=3.10.13 "$PY310" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e ".[box,dev]"
  touch "$VENV/.installed"
fi
"$VENV/bin/python" - <<'PY'
import importlib.util, sys
assert sys.version_info[:2] == (3, 10), sys.version
assert importlib.util.find_spec("torch") is None, "torch must not be in the box venv"
print("python", sys.version.split()[0], "without torch")
PY

echo "== ONNX lint of models/default for TensorRT 10.3 (prepared engine graphs)"
"$VENV/bin/lpbf-edge" trt lint models/default

echo "== the box's tests under Python 3.10"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider $(grep -v "^#" tests/box_tests.txt)
