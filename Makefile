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
	$(VENV)/bin/lint-imports

DATA := benchmarks/data

$(DATA)/bucket-1m: | setup
	$(VENV)/bin/python benchmarks/generate_bucket.py --events 1000000 --files 2000 --out $@

$(DATA)/bucket-20k-files: | setup
	$(VENV)/bin/python benchmarks/generate_bucket.py --events 100000 --files 20000 --out $@

# Every benchmark of benchmarks/README.md, each writing its section of RESULTS.md.
bench: setup $(DATA)/bucket-1m $(DATA)/bucket-20k-files
	$(VENV)/bin/python benchmarks/bench_sync.py --bucket $(DATA)/bucket-1m --many $(DATA)/bucket-20k-files --write
	$(VENV)/bin/python benchmarks/bench_query.py --bucket $(DATA)/bucket-1m --db $(DATA)/cache-1m.duckdb --write
	$(VENV)/bin/python benchmarks/bench_cloud.py --write

clean:
	rm -rf $(VENV) bucketchat-demo .pytest_cache .mypy_cache .ruff_cache
