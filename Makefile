# The two Quick-start commands (README): `make demo` and `make test`. Both create the virtual
# environment on first use and reuse it afterwards.
VENV ?= .venv
PYTHON ?= python3
# The CPU wheel; an unpinned torch pulls several GB of CUDA packages. GPU users: see environment.yml.
TORCH ?= torch==2.13.0
CORES ?= all
BIN := $(VENV)/bin

.PHONY: demo test env

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test,slurm]"
	touch $@

demo: env
	$(BIN)/snakemake --cores $(CORES)

test: env
	$(BIN)/python -m pytest -q
