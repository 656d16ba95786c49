# The commands the README and .ci/run use. `make demo` and `make test` work on a fresh
# machine with Python 3.11+: they install uv and the locked dependencies into .venv first.
PYTHON ?= python3
VENV := .venv
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
export UV_PYTHON_DOWNLOADS := never
export UV_COMPILE_BYTECODE := 1

.PHONY: setup demo test test-fast lint bench clean

$(UV):
	$(PYTHON) -m pip install --quiet --user uv || $(PYTHON) -m pip install --quiet uv

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --extra dev --python $(PYTHON)
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/bucketchat demo --dir bucketchat-demo --force

test: setup
	$(VENV)/bin/python -m pytest -q

test-fast: setup
	$(VENV)/bin/python -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check bucketchat tests benchmarks
	$(VENV)/bin/mypy bucketchat

bench: setup
	$(VENV)/bin/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) bucketchat-demo .pytest_cache .mypy_cache .ruff_cache
