#!/usr/bin/env bash
# Creates .venv/ in the repository with every pinned dependency and the project installed
# in editable mode, then vision_msgs (no wheel) built from ../shared by tools/build_vision_msgs.sh.
# Idempotent: a second run with an unchanged requirements.txt (and vision_msgs source) does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
stamp=.venv/.requirements.sha
want=$(cat requirements.txt setup.py | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exec tools/build_vision_msgs.sh           # vision_msgs from ../shared (silent when already done)
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
log=$(mktemp)
# pip's output without the machine-local index warnings; the full log when it fails
quiet() {
  if ! "$@" >"$log" 2>&1; then cat "$log"; echo "setup failed: $*" >&2; return 1; fi
  grep -v "^WARNING: Location" "$log" || true
}
quiet .venv/bin/python -m pip install -q --upgrade pip==26.0
quiet .venv/bin/python -m pip install -q -r requirements.txt
quiet .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
echo "environment ready: .venv/"
tools/build_vision_msgs.sh
