#!/usr/bin/env bash
# The GPU training run in one command (docs/gpu.md): environment, data, five stages, evaluation.
#     bash tools/gpu_pipeline.sh --out OUT --budget-s 480 [python -m xmod_core.gpu_pipeline options]
# Environment: $XMOD_PY when set; else a python3 whose torch sees CUDA (an accelerator machine's
# image: PyTorch, OpenCV, SciPy, PyYAML, tqdm, TensorBoard), with the repository and, where it has no
# pybullet, .whl/ (tools/gpu_wheels.sh) on PYTHONPATH; else `make setup` and .venv (needs PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
if [ -n "${XMOD_PY:-}" ]; then
  PY=$XMOD_PY
elif command -v python3 >/dev/null && python3 -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  PY=python3
else
  make -s setup
  PY=.venv/bin/python
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c 'import pybullet' >/dev/null 2>&1 && [ -d .whl ]; then
  export PYTHONPATH="$PYTHONPATH:$root/.whl"        # pybullet built by tools/gpu_wheels.sh
fi
missing=$("$PY" - <<'EOF'
import importlib.util
print(" ".join(m for m in ("torch", "numpy", "scipy", "cv2", "yaml", "tqdm", "tensorboard", "pybullet")
               if importlib.util.find_spec(m) is None))
EOF
)
if [ -n "$missing" ]; then
  echo "error: $PY lacks: $missing" >&2
  case " $missing " in *" pybullet "*) echo "  pybullet: run tools/gpu_wheels.sh on a machine with PyPI and carry .whl/" >&2;; esac
  exit 2
fi
export PYTHONUNBUFFERED=1
exec "$PY" -m xmod_core.gpu_pipeline "$@"
