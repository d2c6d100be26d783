# egoadapt: `make install` then `make test`. Everything the project needs is installed here.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.egoadapt-installed
# A CUDA machine (nvidia-smi present) gets the GPU extras and none of the CPU fixes.
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 1)
EXTRAS := $(if $(HAS_GPU),gpu,cpu),dev

export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions

.PHONY: install test test-unit test-integration demo bench rehearse lint clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt launch/cpu/apply_workarounds.py launch/cpu/torchvision_ops_shim.py
	@# egoadapt decodes with decord and PyAV, which bundle FFmpeg. Only torchcodec (transformers' loader for
	@# video files, used by the model card's snippet test) needs the system's: installed when we are root, else a note.
	@command -v ffmpeg >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && (apt-get update -qq && apt-get install -y -qq ffmpeg) >/dev/null; } \
	  || echo "note: no ffmpeg; egoadapt does not need it (decord and PyAV bundle FFmpeg); transformers' video-file loader (torchcodec) does: apt-get install ffmpeg"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
ifeq ($(HAS_GPU),)
	$(BIN)/pip install -q torch==2.13.0
endif
	$(BIN)/pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
ifeq ($(HAS_GPU),)
	$(BIN)/python launch/cpu/apply_workarounds.py
endif
	$(BIN)/python -c "import transformers, trl, vllm, egoadapt; print('egoadapt', egoadapt.__version__, '| transformers', transformers.__version__, '| trl', trl.__version__, '| vllm', vllm.__version__)"
	touch $@

test: install
	$(BIN)/pytest tests -q --durations=10

test-unit: install
	$(BIN)/pytest tests -q -m "not integration and not server"

test-integration: install
	$(BIN)/pytest tests -q -m "integration or server"

demo: install
	$(BIN)/egoadapt demo

bench: install
	$(BIN)/python benchmarks/run_all.py

lint: install
	$(BIN)/ruff check egoadapt tests benchmarks

clean:
	rm -rf $(VENV) .cache build *.egg-info

rehearse: install
	$(BIN)/python benchmarks/rehearse.py
