# The two set-up commands: `make demo` and `make test`. Both build .venv on first use.
# `make interop` runs the real clients (open_clip, CLIP_benchmark, timm) in a venv of their own.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build on CPU machines.
TORCH_PIN := torch==2.13.0
# The clients' venv: torch from the index (a CUDA build, which runs on a CPU too), beside which the
# CPU wheel of TORCH_PIN breaks torchvision; numpy < 2.4, which CLIP_benchmark 1.6.2's accuracy() needs.
INTEROP_VENV := .venv-interop
INTEROP_PINS := torch==2.14.1 torchvision==0.29.1 open_clip_torch==3.3.0 timm clip-benchmark==1.6.2 "numpy<2.4"
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: demo test test-slow lint compat interop clean

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "genview_hf needs Python >= 3.10 (found %d.%d): run make with PYTHON=python3.X" % sys.version_info[:2])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PIN)
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $@

demo: $(BIN)/.installed
	$(BIN)/genview demo

test: $(BIN)/.installed
	$(BIN)/python -m pytest

test-slow: $(BIN)/.installed
	$(BIN)/python -m pytest -m slow

# genview_hf is installed with the same pins, so its own requirements leave the clients' torch as it is.
$(INTEROP_VENV)/bin/.installed: pyproject.toml
	$(PYTHON) -m venv $(INTEROP_VENV)
	$(INTEROP_VENV)/bin/python -m pip install -q --upgrade pip
	$(INTEROP_VENV)/bin/python -m pip install -q $(INTEROP_PINS)
	$(INTEROP_VENV)/bin/python -m pip install -q -e ".[dev]" $(INTEROP_PINS)
	@touch $@

interop: $(INTEROP_VENV)/bin/.installed
	$(INTEROP_VENV)/bin/python -m pytest -m interop -p no:cacheprovider -rA tests/test_interop.py

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests recipes benchmarks
	$(BIN)/ruff format --check src tests recipes benchmarks

# The trainer's tests against the newest transformers 5.x on the package index (as TRL's tests_latest
# job): GenViewTrainer overrides three private Trainer methods, and tests/training/test_trainer.py asserts the
# stock behaviour each one exists for. A throwaway venv, never .venv.
COMPAT_VENV ?= /tmp/genview-compat
COMPAT_TESTS := tests/training/test_trainer.py tests/training/test_trainer_clip.py \
	tests/training/test_trainer_resume.py tests/training/test_builders.py tests/training/test_run_record.py
compat:
	rm -rf $(COMPAT_VENV)
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install -q --upgrade pip
	$(COMPAT_VENV)/bin/python -m pip install -q $(TORCH_PIN)
	$(COMPAT_VENV)/bin/python -m pip install -q -e ".[dev]" --upgrade --upgrade-strategy eager "transformers>=5,<6" $(TORCH_PIN)
	$(COMPAT_VENV)/bin/python -c "import transformers, torch; print('transformers', transformers.__version__, 'torch', torch.__version__)"
	$(COMPAT_VENV)/bin/python -m pytest -q -p no:cacheprovider $(COMPAT_TESTS)

clean:
	rm -rf $(VENV) $(INTEROP_VENV) outputs
