# Loomgate: `make demo` runs the demo, `make test` the whole test suite.  Both create .venv and install the
# project (with the embedded store and the test extras) into it first; nothing but python3 (>= 3.11), pip and
# make is needed.  `make wheel` builds dist/loomgate-VERSION-py3-none-any.whl.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DURATION ?= 60

.PHONY: demo test lint bench wheel clean

# python3 -m venv needs ensurepip, which some distributions ship separately; virtualenv (from pip) then
# stands in for it.
$(STAMP): pyproject.toml
	@if ! $(PYTHON) -m venv $(VENV) 2>/dev/null || [ ! -x $(BIN)/pip ]; then \
	  rm -rf $(VENV); \
	  $(PYTHON) -m virtualenv --version >/dev/null 2>&1 || \
	    $(PYTHON) -m pip install --user -q virtualenv || \
	    $(PYTHON) -m pip install --user -q --break-system-packages virtualenv; \
	  $(PYTHON) -m virtualenv -q $(VENV); \
	fi
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[embedded,test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/loomgate demo --duration $(DURATION)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/run.py

# Without build isolation: the build backend (setuptools) is already in .venv, so nothing is downloaded.
# build/ is removed first: setuptools would otherwise ship files left there by an earlier build.
wheel: $(STAMP)
	rm -rf build
	$(BIN)/python -m pip wheel -q --no-deps --no-build-isolation -w dist .

clean:
	rm -rf $(VENV) demo-data build dist
