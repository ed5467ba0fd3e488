# The two Quick-start commands (README): `make demo` and `make test`. Both create the virtual
# environment on first use and reuse it afterwards.
VENV ?= .venv
PYTHON ?= python3
TORCH ?= torch==2.13.0
# Without an NVIDIA GPU, torch comes from PyTorch's CPU index (PyPI's torch is the CUDA build: several GB of
# CUDA packages for a CPU demo); with one, from PyPI. Override with TORCH_INDEX= (empty: pip's own indexes).
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
TORCH_INDEX ?= $(if $(HAS_GPU),,--index-url https://download.pytorch.org/whl/cpu)
# The GPU route: with an NVIDIA GPU (nvidia-smi lists one) `make env` also installs the [cuda] extra (numba-cuda with
# NVVM, CuPy) so that the kernels run their numba.cuda backends; without it they fall back to torch on the GPU (a
# job's log header says which backend runs). `make env CUDA=1` forces it, `make env CUDA=` leaves it out.
CUDA ?= $(HAS_GPU)
comma := ,
EXTRAS := test,slurm$(if $(CUDA),$(comma)cuda,)
CORES ?= all
BIN := $(VENV)/bin

.PHONY: demo test env

env: $(VENV)/.installed$(if $(CUDA),-cuda,)

$(VENV)/.installed$(if $(CUDA),-cuda,): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-deps $(TORCH_INDEX) "$(TORCH)"  # the wheel alone from that index
	$(BIN)/pip install --quiet "$(TORCH)"  # its dependencies from pip's own indexes (one unreachable index costs retries)
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

demo: env
	$(BIN)/snakemake --cores $(CORES)

test: env
	$(BIN)/python -m pytest -q
