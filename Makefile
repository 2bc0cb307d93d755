# Two commands on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "need python3.11 (or python3 >= 3.11) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mynawatch demo --out demo-output

# Two workers (the machine's two cores; many tests wait on servers, clocks and subprocesses), each test file
# whole on one worker, in the order tests/conftest.py gives them (the files that need no model first, while
# tests/warmup.py trains the model and builds the demo month once for both).
JOBS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) --dist loadfile --no-loadscope-reorder

clean:
	rm -rf $(VENV) demo-output .pytest_cache
