"""The GPU suite's driver: the GPU tests, the chip's measured bf16 matrix rate, generation (levers and
the official per-image loop) and training (MFU, Trainer vs loop, quality modes, levers), written as
ONE JSON, updated after every part so that a run stopped at its time limit still returns what it
measured. ``--device cpu`` rehearses the same code paths at tiny sizes.

    python benchmarks/gpu_suite.py --device cuda --out gpu_suite.json     # what gpu_suite.sh runs
    python benchmarks/gpu_suite.py --device cpu --out rehearsal.json      # the CPU rehearsal
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from genview_hf.benchmarks.hardware import hardware_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "transformers", "diffusers", "datasets", "accelerate", "peft", "huggingface_hub")

# Seconds of the whole run given to each part (the GPU run must end within 8 minutes, 480 s).
BUDGET = {"tests": 80, "generation": 200, "training": 170}


def environment(device: str) -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "device": device,
        "hardware": hardware_name(device),
        "python": platform.python_version(),
        "versions": versions,
    }


def gpu_tests(device: str, timeout: float) -> dict:
    """``pytest -m gpu``; the CPU rehearsal only collects them (they need CUDA)."""
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"]
    if device == "cpu":
        command.append("--collect-only")
    start = time.monotonic()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        tail, code = (done.stdout + done.stderr)[-4000:], done.returncode
    except subprocess.TimeoutExpired as stopped:
        tail, code = f"stopped after {timeout} s: {str(stopped.stdout)[-3000:]}", None
    return {"returncode": code, "seconds": round(time.monotonic() - start, 1), "output_tail": tail}


def training(device: str, deadline: float) -> list[dict]:
    import bench_trainer

    if device == "cuda":
        argv = ["--device", "cuda", "--real-size", "--runs", "2", "--steps", "8", "--warmup", "3"]
    else:  # the rehearsal: tiny models, one run each, every lever (compile included)
        argv = ["--device", "cpu", "--runs", "1", "--steps", "3", "--warmup", "1"]
    opts = bench_trainer.parse(argv)
    rows: list[dict] = []
    bench_trainer.run(opts, lambda **row: rows.append(row), deadline)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--out", required=True, help="the JSON of results")
    parser.add_argument("--parts", nargs="+", default=["tests", "generation", "training"])
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no GPU is visible")
    if args.device == "cpu":
        torch.set_num_threads(1)  # steady timings on a shared machine
    out = Path(args.out)
    results: dict = {"environment": environment(args.device), "seconds": {}}
    start = time.monotonic()

    def save() -> None:
        results["seconds"]["total"] = round(time.monotonic() - start, 1)
        tmp = out.with_name(f".tmp-{out.name}")
        tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
        os.replace(tmp, out)

    for part in args.parts:
        began = time.monotonic()
        deadline = began + BUDGET[part]
        try:
            if part == "tests":
                results[part] = gpu_tests(args.device, BUDGET[part])
            elif part == "generation":
                import bench_generation

                results[part] = bench_generation.run(args.device, "default", budget_s=BUDGET[part] - 20)
            else:
                results[part] = training(args.device, deadline)
        except Exception as error:  # one part's failure still leaves the others' figures
            results[part] = {"error": f"{type(error).__name__}: {error}"}
        if args.device == "cuda":
            results.setdefault("peak_memory_gib", {})[part] = round(
                torch.cuda.max_memory_allocated() / 2**30, 2
            )
            torch.cuda.reset_peak_memory_stats()
        results["seconds"][part] = round(time.monotonic() - began, 1)
        save()
        print(f"{part}: {results['seconds'][part]} s", flush=True)
    print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
