# Two commands that work on a fresh machine (Python 3.11 with pip and venv):
#   make benchmark   set up, then rank every OOD method on pocket v2's ten class splits of the drawings (a suite)
#   make test        set up, then run the whole test suite (unit tests, notebooks, sweep, JupyterLab in Chromium)
# Also: make benchmark-v1 (pocket v1: its shapes world's ten splits, the five default methods), make benchmark-quick
# (v1's single default split, a first example), make test-browser (only the browser test)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
OUT    ?= outputs/benchmark
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba
export MPLBACKEND ?= Agg
# glibc maps tensors of 4 MiB and more on their own (clipos_lab/evaluation/memory.py); with transparent huge
# pages for them a v2 benchmark spec takes 10 x fewer page faults and 10-20 % less time, at the same peak memory
# (docs/scale.md). Ignored where the C library is not glibc >= 2.35 or huge pages are off.
export GLIBC_TUNABLES ?= glibc.malloc.hugetlb=1

# every OOD method of the registry (the CLIP-OS ablations aside); five few-shot seeds for the spread of draws
SUITE_METHODS ?= MCM,GL-MCM,CLIPN,CoOp,LoCoOp,CLIP-OS,NegLabel,CSP,AdaNeg,FA,GalLoP
SUITE_SEEDS   ?= 1,2,3,4,5
# the negative-label settings chosen on pocket v2's validation splits (the methods' own defaults stay their
# references', chosen on ImageNet with CLIP): benchmarks/negatives_tune.py, docs/pocket2.md
SUITE_OPTIONS ?= {"NegLabel": {"ratio": 0.3}, "CSP": {"ratio": 0.05}}

.PHONY: setup benchmark benchmark-v1 benchmark-quick benchmark-splits browser test test-browser test-notebooks lint lab clean-outputs

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# (an editable install of a flat layout warns that a folder named like the package may shadow it; the
	# checkout's clipos_lab/ is that package, so the note is silenced: nothing else is)
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e '.[notebooks,dev]'
	$(BIN)/nbstripout --install --attributes .gitattributes || true
	touch $@

# a pocket cell runs on one thread: a worker process per core runs the suite's cells side by side (docs/cluster.md)
benchmark: setup  # the Makefile owns $(OUT): --overwrite
	$(BIN)/python -m clipos_lab benchmark drawings --methods $(SUITE_METHODS) --seeds $(SUITE_SEEDS) --out $(OUT) --overwrite \
	    --options '$(SUITE_OPTIONS)' --executor processes

benchmark-v1: setup
	$(BIN)/python -m clipos_lab benchmark splits --out $(OUT)-v1 --overwrite  # v1: the five default methods, seeds 1-3

benchmark-splits: benchmark-v1

benchmark-quick: setup
	$(BIN)/python -m clipos_lab benchmark default --out outputs/benchmark-quick --overwrite

# Debian's Chromium for tests/test_browser.py (Playwright drives the system binary; it downloads no browser)
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser test"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium \
	  || echo "could not install chromium: tests/test_browser.py will fail (CLIPOS_REQUIRE_BROWSER=1)"; }

# the browser test fails, not skips, without Chromium here: a CI run that cannot open JupyterLab has not passed
# each notebook runs once here: tests/test_notebooks.py executes it with papermill (notebooks/params/ci.yaml) and
# checks what it claims; `make test-notebooks` runs them with their shipped parameters through nbmake
test: setup browser lint
	CLIPOS_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile tests

lint: setup
	$(BIN)/ruff check clipos_lab tests benchmarks

test-notebooks: setup
	$(BIN)/python -m pytest -q -n 2 --nbmake notebooks

test-browser: setup browser
	CLIPOS_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q tests/test_browser.py

lab: setup
	$(BIN)/jupyter lab notebooks/

clean-outputs:
	rm -rf outputs
