# The README's two commands: `make figures` (the main job) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.hrinv-installed

.PHONY: setup figures test bench strip clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -e '.[test,dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (hrinv-nb)"
	touch $(STAMP)

figures: setup
	$(PY) -m hrinv_nb.notebook.mainjob $(ARGS)

# The lint check (ruff, configured in pyproject.toml), then pytest over the package tests, and nbval over every notebook run with its smoke parameters
# (notebooks/params/smoke/*.yaml, injected by papermill into copies under build/nbsmoke).
test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m hrinv_nb.notebook.mainjob --prepare-smoke build/nbsmoke
	$(PY) -m pytest $(PYTEST_ARGS) tests build/nbsmoke --nbval-lax --nbval-current-env --nbval-cell-timeout 900

# Strip outputs and execution counts from the committed notebooks (tags, incl. `parameters`, are kept).
strip:
	$(PY) -m nbstripout --keep-id notebooks/*.ipynb

bench: setup
	$(PY) benchmarks/bench_networks.py

clean-venv:
	rm -rf $(VENV)
