# conduitctl: `make demo` runs the main job on the embedded default; `make test` runs the tests.
# Both install what is missing first (apt packages as root, the Python environment).

VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
DEMO_CONFIG ?= examples/demo.toml

.PHONY: setup system venv dockerd demo test test-fast lint bench clean

setup: system venv

system:
	@bash scripts/setup-system.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]'
	@touch $@

dockerd: system
	@bash scripts/ensure-dockerd.sh

demo: setup
	@bash scripts/demo.sh $(DEMO_CONFIG)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup dockerd lint
	$(BIN)/pytest -q --durations=15

test-fast: setup lint
	$(BIN)/pytest -q -m "not slow and not docker"

bench: setup
	$(PY) benchmarks/bench_fleet.py
	$(PY) benchmarks/bench_supervisor.py
	$(PY) benchmarks/bench_change.py

clean:
	rm -rf $(VENV) .conduitctl-demo .pytest_cache .mypy_cache .ruff_cache
