# Quick start: `make demo` (set up .venv and run the demo), `make test` (set up and run the tests).
PY := .venv/bin/python
.PHONY: setup demo test bench gpu clean

setup:
	@tools/setup_env.sh

demo: setup
	$(PY) -m xmod_ros.demo --out out/demo

test: setup
	$(PY) -m pytest -q -rs

bench: setup
	$(PY) bench/bench_frontview.py
	$(PY) bench/bench_sim.py
	$(PY) bench/bench_motion.py
	$(PY) bench/bench_losses.py
	$(PY) bench/bench_fusion.py
	$(PY) bench/bench_train.py
	$(PY) bench/bench_hybrid.py --part speed
	$(PY) bench/bench_boxes.py --part speed
	$(PY) bench/bench_node.py

# The GPU training run (docs/gpu.md); on a machine whose python3 has CUDA it needs no `make setup`.
gpu:
	bash tools/gpu_pipeline.sh --out out/gpu --budget-s 480

clean:
	rm -rf out build install log
