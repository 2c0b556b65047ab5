#!/usr/bin/env bash
# The prepared GPU run (issue 14): installs what a bare GPU machine lacks from the carried wheels,
# runs the GPU tests and every GPU benchmark, and writes ONE JSON ($OUT/gpu_suite.json, with the log
# beside it). Aimed at under 8 minutes on an H200; each part has a time budget (gpu_suite.py).
#
#   here, once:        bash benchmarks/gpu_wheels.sh                  (fills .whl/, git-ignored)
#   on the GPU:        device run  command="bash benchmarks/gpu_suite.sh"  carry=[".whl"]  timeout_s=600
#   CPU rehearsal:     bash benchmarks/gpu_suite.sh --device cpu      (the same code paths, tiny sizes)
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda
if [[ "${1:-}" == "--device" ]]; then DEVICE=${2:?--device needs cpu or cuda}; fi
OUT_DIR=${OUT:-$PWD/gpu_suite_out}
mkdir -p "$OUT_DIR"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
if [[ $DEVICE == cuda ]]; then
  PYTHON=python3
  ls .whl/*.whl >/dev/null 2>&1 || { echo "no wheels in .whl/: run benchmarks/gpu_wheels.sh here and carry .whl"; exit 1; }
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  # genview_hf itself, built from this tree (its recipes and card templates live outside src/)
  PYTHONPATH=/tmp/site "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir \
    --target /tmp/site . || exit 1
  export PYTHONPATH=/tmp/site
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT_DIR/nvidia_smi.csv"
else
  PYTHON=${PYTHON:-.venv/bin/python}
fi
"$PYTHON" -c "import datasets, diffusers, transformers, accelerate, peft, genview_hf; print('imports ok:', transformers.__version__, diffusers.__version__, datasets.__version__)" || exit 1
time "$PYTHON" benchmarks/gpu_suite.py --device "$DEVICE" --out "$OUT_DIR/gpu_suite.json" 2>&1 | tee "$OUT_DIR/gpu_suite.log"
