# conduitctl: `make demo` runs the main job on the embedded default; `make test` runs the tests.
# Both install what is missing first (apt packages as root, the Python environment).

VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
DEMO_CONFIG ?= examples/demo.toml
# `make test` runs the tests in two passes: all but the `serial` ones on TEST_WORKERS
# pytest-xdist workers at once (a file's tests share a worker unless tests/conftest.py
# lists it in SPREAD_FILES), then the `serial` ones alone (they load the whole host or
# time it). Both always run; either failing fails `make test`. 6 workers keep 2 cores
# busy; 8 were no faster and timing-bound tests failed more.
TEST_WORKERS ?= 6
PYTEST_OPTS ?= -q --durations=15

.PHONY: setup system venv dockerd sim-image demo test test-unit test-fast lint bench clean

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

# Built once before the workers start (they would wait on each other's build otherwise).
sim-image: venv dockerd
	@$(BIN)/conduitctl sim build-image --json >/dev/null

test: setup dockerd lint sim-image
	@rc=0; \
	echo "$(BIN)/pytest $(PYTEST_OPTS) -n $(TEST_WORKERS) --dist loadfile -m 'not serial'"; \
	$(BIN)/pytest $(PYTEST_OPTS) -n $(TEST_WORKERS) --dist loadfile -m "not serial" || rc=$$?; \
	echo "$(BIN)/pytest $(PYTEST_OPTS) -m serial"; \
	$(BIN)/pytest $(PYTEST_OPTS) -m serial || rc=$$?; \
	exit $$rc

# The pure unit tests only: no dockerd, nginx or HAProxy needed.
test-unit: venv
	$(BIN)/pytest -q tests/unit

test-fast: setup lint
	$(BIN)/pytest -q -m "not slow and not docker"

bench: setup
	$(PY) benchmarks/bench_fleet.py
	$(PY) benchmarks/bench_supervisor.py
	$(PY) benchmarks/bench_change.py
	$(PY) benchmarks/bench_status.py
	$(PY) benchmarks/bench_daemon_cost.py

clean:
	rm -rf $(VENV) .conduitctl-demo .pytest_cache .mypy_cache .ruff_cache
