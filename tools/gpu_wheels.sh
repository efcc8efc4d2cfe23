#!/usr/bin/env bash
# Prepares .whl/ (ignored by git) for a lent accelerator machine, whose image has PyTorch, OpenCV,
# SciPy, PyYAML, tqdm and TensorBoard under its own python3 (3.12) but no pybullet (the simulator's
# renderer and ray caster) and no network. PyPI has no pybullet 3.2.7 wheel for CPython 3.12, so this
# builds one from the sdist with a local CPython 3.12 (pyenv's), at low priority (about 20-40 min on
# 2 cores), strips the debug information and keeps only the extension module (134 MB -> about 10 MB;
# the simulator needs no pybullet_data), as .whl/pybullet.cpython-312-x86_64-linux-gnu.so.
# tools/gpu_pipeline.sh puts .whl/ on PYTHONPATH where its python lacks pybullet. Run once, here:
#     bash tools/gpu_wheels.sh            # then the device call carries .whl (see docs/gpu.md)
# Idempotent: does nothing when the module is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PY312:-}" ]; then                # the first CPython 3.12 that runs (a pyenv shim may not)
  for c in python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12; do
    if "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then PY312=$c; break; fi
  done
fi
so=.whl/pybullet.cpython-312-x86_64-linux-gnu.so
if [ -f "$so" ]; then echo "$so is there ($(du -h "$so" | cut -f1))"; exit 0; fi
if [ -z "${PY312:-}" ] || ! "$PY312" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
  echo "no CPython 3.12 here (set PY312=/path/to/python3.12)" >&2; exit 1
fi
[ "$(uname -m)" = x86_64 ] || { echo "build on an x86-64 machine (the accelerator machine is x86-64)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
nice -n 19 "$PY312" -m pip wheel -q --no-deps --no-binary pybullet -w "$work" pybullet==3.2.7
(cd "$work" && "$PY312" -m zipfile -e pybullet-3.2.7-*.whl x)
mkdir -p .whl
strip --strip-debug -o "$so" "$work"/x/pybullet.cpython-312-x86_64-linux-gnu.so
"$PY312" - "$so" <<'EOF'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("pybullet", sys.argv[1])
pb = importlib.util.module_from_spec(spec); spec.loader.exec_module(pb)
cid = pb.connect(pb.DIRECT); assert pb.isConnected(cid); pb.disconnect(cid)
EOF
grep -qx '/.whl/' .gitignore 2>/dev/null || grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
echo "wrote $so ($(du -h "$so" | cut -f1)); carry .whl in the device call"
