#!/usr/bin/env bash
# Fetch, on this (CPU) machine, the wheels that gpu_suite.sh installs on a bare GPU machine, into .whl/
# (git-ignored through .git/info/exclude; the device call carries it: carry=[".whl"]).
#
# The GPU image has torch, transformers, accelerate, peft, pyarrow, pandas, xxhash, fsspec, regex,
# scikit-learn/-image and matplotlib; it lacks datasets, diffusers, evaluate, dill and multiprocess,
# and its transformers (5.17) is older than the one the tests run against here: that one travels too,
# with the regex it checks for at import.
# The versions are those of this repository's .venv, where the CPU suite passes. kornia, named in the
# GPU issue, is no dependency of genview_hf: it is not fetched.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PACKAGES=(datasets==5.2.0 diffusers==0.42.1 evaluate==0.4.6 dill==0.4.1 multiprocess==0.70.19 transformers==5.24.0
  regex==2026.11.19)  # transformers 5.24 checks regex >= 2025.10.22 at import
PYTHON=${PYTHON:-.venv/bin/python}
mkdir -p .whl
for package in "${PACKAGES[@]}"; do
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$package"
done
ls -l .whl
du -sh .whl
