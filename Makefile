# Two commands on a fresh machine: `make demo` then `make test`.
PY := $(shell .ci/env.sh)
export PYTHONPATH := $(CURDIR)

.PHONY: demo test bench env commands

env:
	@echo "python: $(PY)"

# .venv: this checkout installed (editable) over the cached environment, so the README's
# `automaster ...` and `automaster-train ...` commands exist after `source .venv/bin/activate`
commands: .venv/bin/automaster

.venv/bin/automaster: pyproject.toml .ci/env.sh .ci/overlay-venv.sh
	.ci/overlay-venv.sh .venv $(PY)
	.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .

demo: commands
	.venv/bin/automaster automaster/examples/example.ogg -o example_master.wav --report --force

test:
	$(PY) -m pytest -q

bench:
	$(PY) -m bench.bench_chain
	$(PY) -m bench.bench_master
	$(PY) bench/quality.py
