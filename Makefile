# Two commands on a fresh machine: `make demo` then `make test`.
PY := $(shell .ci/env.sh)
export PYTHONPATH := $(CURDIR)

.PHONY: demo test bench env

env:
	@echo "python: $(PY)"

demo:
	$(PY) -m automaster automaster/examples/example.ogg -o example_master.wav --report --force

test:
	$(PY) -m pytest -q

bench:
	$(PY) -m bench.bench_chain
	$(PY) -m bench.bench_master
	$(PY) bench/quality.py
