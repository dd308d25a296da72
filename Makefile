# The README's two commands: `make sandbox` (the demo) and `make test` (every test).
# Both install what they need on a fresh machine; nothing is assumed preinstalled
# beyond python3.11 and, for the tests' servers, Debian's apt.

PYTHON ?= python3.11
UV_VERSION := 0.13.8
CACHE := .cache
UV := $(CACHE)/uv/bin/uv
VENV := .venv
export UV

.PHONY: install test test-unit sandbox bench clean lock

$(UV):
	$(PYTHON) -m venv $(CACHE)/uv
	$(CACHE)/uv/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.installed: requirements/lock.txt pyproject.toml | $(UV)
	$(UV) venv --quiet --allow-existing -p $(PYTHON) $(VENV)
	$(UV) pip sync --quiet -p $(VENV) requirements/lock.txt
	$(UV) pip install --quiet -p $(VENV) --no-deps -e .
	touch $@

install: $(VENV)/.installed

# Every outside part the tests need (Debian packages, side venvs) is installed by
# the scripts in tests/setup, then the whole suite runs. Nothing is skipped.
test: install
	@for script in tests/setup/*.sh; do echo "== $$script"; bash $$script || exit 1; done
	$(VENV)/bin/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

# The demo: emulators seeded with drift + a ZenML store file made by real ZenML + the daemon.
sandbox: install
	$(VENV)/bin/schedule-reconciler sandbox

# The scale benchmark (numbers in the README): N = 1k, 10k, 100k against emulators.
bench: install
	$(VENV)/bin/python -m benchmarks.scale $(BENCH_ARGS)

# The fast part: no outside servers.
test-unit: install
	$(VENV)/bin/python -m pytest -p no:cacheprovider -m "not integration" $(PYTEST_ARGS)

# lock.txt: everything, tests included (make install/test); runtime.txt: the same pins without
# the test extras (the image).
lock: | $(UV)
	$(UV) pip compile --quiet pyproject.toml --extra test -p 3.11 -o requirements/lock.txt
	$(UV) pip compile --quiet pyproject.toml -p 3.11 -c requirements/lock.txt -o requirements/runtime.txt

clean:
	rm -rf $(CACHE) $(VENV)

# The soak's long form (tests/soak): SOAK_CYCLES cycles (default here 20000, about two hours on two
# cores) of random drift and faults with cleanup approved; SOAK_SEED=<n> replays a run.
.PHONY: soak
soak: install
	SOAK_CYCLES=$${SOAK_CYCLES:-20000} $(VENV)/bin/python -m pytest -p no:cacheprovider -s tests/soak/test_soak.py $(PYTEST_ARGS)

# The crash suite's long form (tests/crash): CRASH_ITERATIONS SIGKILLed daemons, CRASH_ROUNDS leader
# kills per replica set; CRASH_SEED=<n> replays the choices (not the timing).
.PHONY: crash
crash: install
	CRASH_ITERATIONS=$${CRASH_ITERATIONS:-200} CRASH_ROUNDS=$${CRASH_ROUNDS:-20} $(VENV)/bin/python -m pytest -p no:cacheprovider -s tests/crash $(PYTEST_ARGS)
