# The README's two commands: `make figures` (the main job) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.hrinv-installed

# The pinned torch pair (the same pins are in constraints.txt; tests/test_packaging.py checks they agree).
TORCH_VERSION       := 2.14.1
TORCHVISION_VERSION := 0.29.1
# Where torch and torchvision come from. Empty (the default): the default package index, whose Linux
# wheels are the large CUDA build. A CPU-only user can pick a CPU wheel index instead, e.g.
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
# (torch/torchvision only, --no-deps: their dependencies then come pinned from constraints.txt.)
# Changing it on an existing venv: `make clean-venv` first.
TORCH_INDEX ?=
TORCH_PIP_ARGS := $(if $(strip $(TORCH_INDEX)),--index-url $(TORCH_INDEX) --no-deps)
TORCH_INSTALL  := $(strip pip install $(TORCH_PIP_ARGS) torch==$(TORCH_VERSION) torchvision==$(TORCHVISION_VERSION))
# The extras `make setup` installs: the tests' (test, dev; align for the alignment tests, fid for FID),
# and notebooks for a Jupyter front end. constraints.txt pins every package of exactly this set.
EXTRAS := test,dev,notebooks,fid,align
# The extra `make browser-check` adds on top of those (playwright; the browser is Debian's chromium). Not
# installed by `make setup`; `make lock` pins it too, so constraints.txt covers every extra.
BROWSER_EXTRA := browser
CONSTRAINTS := constraints.txt
# Where `make lock` builds its throw-away environment.
LOCKENV ?= /tmp/hrinv-lockenv

.PHONY: setup system-deps lock figures test bench strip lab browser-check clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip -c $(CONSTRAINTS)
	$(PY) -m $(TORCH_INSTALL)
	$(PY) -m pip install -c $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (hrinv-nb)"
	touch $(STAMP)

# System packages the tests use: Debian's libdlib-data (the 68-landmark model for hrinv_nb.align, never
# vendored). Installs with apt-get as root; elsewhere prints what to install and goes on (the alignment
# tests then skip with a reason).
DLIB_MODEL := /usr/share/dlib/shape_predictor_68_face_landmarks.dat
system-deps:
	@if [ -f $(DLIB_MODEL) ]; then \
	  echo "system-deps: $(DLIB_MODEL) present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "system-deps: apt-get install libdlib-data"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libdlib-data; \
	else \
	  echo "system-deps: skipped (needs root and apt-get): install Debian's libdlib-data for $(DLIB_MODEL);"; \
	  echo "system-deps: without it the face-alignment tests skip."; \
	fi

# Regenerate constraints.txt: a fresh venv in $(LOCKENV), the pinned torch pair, the package with
# $(EXTRAS) and $(BROWSER_EXTRA), then `pip freeze --all --exclude-editable`. Run with the default TORCH_INDEX.
lock:
	rm -rf $(LOCKENV)
	$(PYTHON) -m venv $(LOCKENV)
	$(LOCKENV)/bin/python -m pip install --upgrade pip
	$(LOCKENV)/bin/python -m pip install torch==$(TORCH_VERSION) torchvision==$(TORCHVISION_VERSION)
	$(LOCKENV)/bin/python -m pip install -e '.[$(EXTRAS),$(BROWSER_EXTRA)]'
	{ printf '%s\n' \
	  "# Every package of a working hrinv_nb environment, pinned: \`make setup\` installs with -c $(CONSTRAINTS)," \
	  "# so two fresh installs get the same versions. Made by \`make lock\` (on Linux x86_64 with" \
	  "# $$($(LOCKENV)/bin/python -V)): a fresh venv, pip install --upgrade pip," \
	  "# pip install torch==$(TORCH_VERSION) torchvision==$(TORCHVISION_VERSION), pip install -e '.[$(EXTRAS),$(BROWSER_EXTRA)]'," \
	  "# then pip freeze --all --exclude-editable. To regenerate after changing pyproject.toml or the torch" \
	  "# pins: \`make lock\`, then commit this file. Packages a platform does not need (nvidia-*) are simply" \
	  "# not installed there."; \
	  $(LOCKENV)/bin/python -m pip freeze --all --exclude-editable; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

figures: setup
	$(PY) -m hrinv_nb.notebook.mainjob $(ARGS)

# The lint check (ruff, configured in pyproject.toml), then pytest over the package tests, and nbval over every notebook run with its smoke parameters
# (notebooks/params/smoke/*.yaml, injected by papermill into copies under build/nbsmoke).
test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m hrinv_nb.notebook.mainjob --prepare-smoke build/nbsmoke
	$(PY) -m pytest $(PYTEST_ARGS) tests build/nbsmoke --nbval-lax --nbval-current-env --nbval-cell-timeout 900

# Strip outputs and execution counts from the committed notebooks (tags, incl. `parameters`, are kept),
# keeping the notebook metadata JupyterLab writes on opening one (kernelspec, language_info), so that
# opening a committed notebook leaves `git status` clean; tests/test_notebooks.py checks the exact keys.
strip:
	$(PY) -m nbstripout --keep-id --keep-metadata-keys "metadata.kernelspec metadata.language_info" notebooks/*.ipynb

# Browse the notebooks in JupyterLab (the `notebooks` extra of `make setup`), e.g.
#   make lab LAB_ARGS="--no-browser --ip=127.0.0.1"
LAB_ARGS ?=
lab: setup
	$(VENV)/bin/jupyter lab $(LAB_ARGS) notebooks/

# A real-browser check of a slider notebook (not part of `make test`): a copy of notebook 03 with its smoke
# parameters, run in JupyterLab (127.0.0.1, a random token) in headless Chromium; moves the slider and checks
# the image changed and exactly one figure is shown under the control. Needs Debian's chromium
# (`apt-get install chromium`); installs the $(BROWSER_EXTRA) extra into the venv. Screenshots and the
# record go to runs/browser_check/. Another notebook or options, e.g.
#   make browser-check BROWSER_ARGS="--notebook 01 --keep"
BROWSER_ARGS ?=
BROWSER_STAMP := $(VENV)/.hrinv-browser-installed
$(BROWSER_STAMP): $(STAMP)
	$(PY) -m pip install -c $(CONSTRAINTS) -e '.[$(BROWSER_EXTRA)]'
	touch $(BROWSER_STAMP)

browser-check: $(BROWSER_STAMP)
	$(PY) -m hrinv_nb.notebook.browser_check $(BROWSER_ARGS)

bench: setup
	$(PY) benchmarks/bench_networks.py

clean-venv:
	rm -rf $(VENV)
