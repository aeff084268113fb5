# One entry point. Every target creates the virtual environment on first use,
# so on a fresh machine `make test` (or `make demo`) alone installs and runs.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: test lint typecheck unit unit-pure demo bench market-quality clean lock

# The stamp also depends on the modules setup.py compiles, so editing one rebuilds it.
COMPILED := $(shell $(PYTHON) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["tool"]["datn"]["compiled-modules"])' 2>/dev/null)
$(STAMP): pyproject.toml setup.py requirements/constraints.txt $(COMPILED)
	$(PYTHON) -c 'import sys; sys.exit("datn needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[dev]'
	touch $(STAMP)

## test: lint, type-check and run the whole test suite (what CI runs), against
## the compiled modules and again against pure Python (what a machine without a
## C compiler runs)
test: lint typecheck unit unit-pure

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

# A copy of the package without its compiled extensions, put first on the path.
unit-pure: $(STAMP)
	rm -rf build/pure && mkdir -p build/pure && cp -r src/datn build/pure/
	find build/pure -name '*.so' -delete
	PYTHONPATH=build/pure $(BIN)/pytest -n 2 -p no:cacheprovider $(PYTEST_ARGS)

## demo: the main job, a real trading session
demo: $(STAMP)
	$(BIN)/datn demo

## bench: every benchmark script, each printing its figures and conditions
# requirements/bench.txt holds the published engines book_compare.py measures
# against; an engine that will not install here is skipped by the script.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -r requirements/bench.txt || echo "comparison engines not installed"
	@for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

## market-quality: the market-quality comparison of fragmented venues, datn
## and a central exchange, and its chart (README's figures; matplotlib is a
## benchmark extra, never a dependency of the node)
market-quality: $(STAMP)
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt matplotlib
	$(BIN)/python benchmarks/market_quality.py --chart benchmarks/market_quality.png

## lock: refresh requirements/constraints.txt from a clean environment
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/python -m pip install --quiet -e '.[dev]'
	.lockenv/bin/python -m pip freeze --exclude-editable | sort > requirements/constraints.lock.new
	rm -rf .lockenv
	@echo "review requirements/constraints.lock.new and merge it into requirements/constraints.txt"

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find src -name '*.so' -delete
