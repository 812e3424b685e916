# Two commands that work on a fresh machine (Python 3.11 with pip and venv):
#   make benchmark   set up, then run the default benchmark (pocket model + procedural world)
#   make test        set up, then run the whole test suite (unit tests, notebooks, sweep)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
OUT    ?= outputs/benchmark
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba
export MPLBACKEND ?= Agg

.PHONY: setup benchmark benchmark-splits test lab clean-outputs

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[notebooks,dev]'
	$(BIN)/nbstripout --install --attributes .gitattributes || true
	touch $@

benchmark: setup
	$(BIN)/python -m clipos_lab benchmark default --out $(OUT)

benchmark-splits: setup
	$(BIN)/python -m clipos_lab benchmark splits --out outputs/splits

test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --nbmake tests notebooks

lab: setup
	$(BIN)/jupyter lab notebooks/

clean-outputs:
	rm -rf outputs
