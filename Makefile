# Quick start: `make demo` (set up .venv and run the demo), `make test` (set up and run the tests).
PY := .venv/bin/python
.PHONY: setup demo test bench clean

setup:
	@tools/setup_env.sh

demo: setup
	$(PY) -m xmod_core.sim --out out/demo/sim --sequences 2 --frames 20

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/bench_frontview.py
	$(PY) bench/bench_sim.py

clean:
	rm -rf out build install log
