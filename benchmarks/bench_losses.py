"""Overhead of quality-driven weighting: weight computation and weighted vs unweighted losses.

    python benchmarks/bench_losses.py                 # CPU
    python benchmarks/bench_losses.py --device cuda   # GPU

Measures (median of --repeats timed runs after --warmup runs, forward + backward for losses;
weighted and unweighted runs alternate so that background load hits both alike):
- the GenView pair weights (``quality_weights``) at N=256 pairs, T=49 tokens, C=1024 channels
  (a 7x7 ConvNeXt-Base token map, as in the official code), from the projection on a direction
  and from given masks, plus the GenView++ multi-view and image-text weights on 256 views;
  reported in ms and relative to the unweighted InfoNCE forward + backward on the same N;
- every loss at N=4096, D=256: unweighted and weighted, and their ratio.
Prints a markdown table; ``--json PATH`` also writes the figures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch

from genview_hf.losses import (
    byol_loss,
    clip_loss,
    info_nce_loss,
    leoclr_loss,
    multi_positive_clip_loss,
    multi_positive_loss,
    negative_cosine_loss,
    nt_xent_loss,
    slip_loss,
)
from genview_hf.quality import image_text_quality_weights, multi_view_quality_weights, quality_weights


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def paired_median_ms(
    first: Callable[[], object], second: Callable[[], object], device: torch.device, warmup: int, repeats: int
) -> tuple[float, float]:
    """Median ms of two thunks timed alternately, so that background load hits both alike."""
    for _ in range(warmup):
        first()
        second()
    _sync(device)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, bucket in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            _sync(device)
            bucket.append((time.perf_counter() - start) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


def _leaf(*shape, device, dtype=torch.float32):
    return torch.randn(*shape, device=device, dtype=dtype).requires_grad_()


AUTOCAST: torch.dtype | None = None  # set by --autocast


def _backward(loss_fn: Callable[[], torch.Tensor], leaves: list[torch.Tensor]) -> Callable[[], None]:
    def run() -> None:
        for leaf in leaves:
            leaf.grad = None
        device_type = leaves[0].device.type
        with torch.autocast(device_type, dtype=AUTOCAST or torch.bfloat16, enabled=AUTOCAST is not None):
            loss = loss_fn()
        loss.backward()

    return run


def loss_cases(n: int, d: int, queue_size: int, device: torch.device):
    """name -> (unweighted thunk, weighted thunk), both forward + backward."""
    a, b, c = (_leaf(n, d, device=device) for _ in range(3))
    keys = torch.randn(n, d, device=device)  # momentum keys: no gradient
    keys2 = torch.randn(n, d, device=device)
    queue = torch.nn.functional.normalize(torch.randn(queue_size, d, device=device), dim=-1)
    w = torch.rand(n, device=device) + 0.5
    scale = torch.tensor(14.3, device=device, requires_grad=True)
    v = 4
    views = _leaf(n // v, v, d, device=device)
    wv = torch.rand(n // v, v, v, device=device) + 0.5
    wi = torch.rand(n // v, v, device=device) + 0.5
    captions = _leaf(n // v, d, device=device)
    spec = {
        "info_nce (MoCo v3, in-batch)": (lambda w_: info_nce_loss(a, keys, weights=w_), [a], w),
        f"info_nce (MoCo v2, queue {queue_size})": (
            lambda w_: info_nce_loss(a, keys, queue, weights=w_),
            [a],
            w,
        ),
        "nt_xent (SimCLR)": (lambda w_: nt_xent_loss(a, b, weights=w_), [a, b], w),
        "negative_cosine (SimSiam)": (lambda w_: negative_cosine_loss(a, b, weights=w_), [a], w),
        "byol": (lambda w_: byol_loss(a, b, weights=w_), [a], w),
        "clip": (lambda w_: clip_loss(a, b, scale, weights=w_), [a, b, scale], w),
        "slip": (
            lambda w_: slip_loss(a, b, scale, c, a, weights=w_, ssl_weights=w_),
            [a, b, c, scale],
            w,
        ),
        f"leoclr (queue {queue_size})": (lambda w_: leoclr_loss(a, keys, keys2, queue, weights=w_), [a], w),
        f"multi_positive ({n // v} x {v} views)": (
            lambda w_: multi_positive_loss(views, weights=w_),
            [views],
            wv,
        ),
        f"multi_positive_clip ({n // v} x {v} views)": (
            lambda w_: multi_positive_clip_loss(views, captions, scale, weights=w_),
            [views, captions, scale],
            wi,
        ),
    }
    return {
        name: (_backward(lambda f=f: f(None), leaves), _backward(lambda f=f, w_=w_: f(w_), leaves))
        for name, (f, leaves, w_) in spec.items()
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--n", type=int, default=4096, help="batch size for the losses (default 4096)")
    parser.add_argument("--d", type=int, default=256, help="embedding size for the losses (default 256)")
    parser.add_argument(
        "--queue-size", type=int, default=None, help="MoCo queue (default 65536 on GPU, 8192 on CPU)"
    )
    parser.add_argument(
        "--quality-n", type=int, default=256, help="pairs for the quality weights (default 256)"
    )
    parser.add_argument("--tokens", type=int, default=49, help="tokens per image (default 49 = 7x7)")
    parser.add_argument("--channels", type=int, default=1024, help="token channels (default 1024)")
    parser.add_argument(
        "--autocast", choices=["none", "bf16"], default="none", help="run the losses under bf16 autocast"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed runs first (default 10 on GPU, 3 on CPU)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default 30 on GPU, 7 on CPU)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    global AUTOCAST
    AUTOCAST = torch.bfloat16 if args.autocast == "bf16" else None
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda given but torch.cuda.is_available() is False")
    gpu = device.type == "cuda"
    repeats = args.repeats or (30 if gpu else 7)
    args.warmup = args.warmup if args.warmup is not None else (10 if gpu else 3)
    queue_size = args.queue_size or (65536 if gpu else 8192)
    torch.manual_seed(0)
    hardware = (
        torch.cuda.get_device_name(device)
        if gpu
        else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    )
    results: dict = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "device": hardware,
        "torch": torch.__version__,
        "repeats": repeats,
        "autocast": args.autocast,
        "quality": {},
        "losses": {},
    }

    # --- quality weights
    n, t, c = args.quality_n, args.tokens, args.channels
    t1, t2 = torch.randn(n, t, c, device=device), torch.randn(n, t, c, device=device)
    direction = torch.randn(c, device=device)
    m1, m2 = torch.rand(n, t, device=device), torch.rand(n, t, device=device)
    v = 4
    view_tokens = torch.randn(n // v, v, t, c, device=device)
    real_tokens = torch.randn(n // v, t, c, device=device)
    image_embeds, text_embeds = (
        torch.randn(n // v, v, 640, device=device),
        torch.randn(n // v, 640, device=device),
    )
    q = _leaf(n, args.d, device=device)
    k = torch.randn(n, args.d, device=device)
    reference_ms = median_ms(_backward(lambda: info_nce_loss(q, k), [q]), device, args.warmup, repeats)
    quality_cases = {
        f"quality_weights, projection (N={n}, T={t}, C={c})": lambda: quality_weights(t1, t2, direction),
        f"quality_weights, given masks (N={n}, T={t}, C={c})": lambda: quality_weights(
            t1, t2, None, masks1=m1, masks2=m2
        ),
        f"multi_view_quality_weights ({n // v} x {v} views)": lambda: multi_view_quality_weights(
            view_tokens, direction
        ),
        f"image_text_quality_weights ({n // v} x {v} views)": lambda: image_text_quality_weights(
            image_embeds, text_embeds, view_tokens, real_tokens, direction
        ),
    }
    for name, fn in quality_cases.items():
        ms = median_ms(fn, device, args.warmup, repeats)
        results["quality"][name] = {"ms": ms, "relative_to_info_nce": ms / reference_ms}
    results["quality_reference"] = {f"info_nce fwd+bwd (N={n}, D={args.d})": reference_ms}

    # --- losses
    for name, (plain, weighted) in loss_cases(args.n, args.d, queue_size, device).items():
        plain_ms, weighted_ms = paired_median_ms(plain, weighted, device, args.warmup, repeats)
        results["losses"][name] = {
            "unweighted_ms": plain_ms,
            "weighted_ms": weighted_ms,
            "ratio": weighted_ms / plain_ms,
        }

    print(
        f"# bench_losses: {results['device']}, torch {results['torch']}, {results['date']}, "
        f"median of {repeats}, autocast {args.autocast}, MoCo queue {queue_size}"
    )
    print()
    ref_name, ref_ms = next(iter(results["quality_reference"].items()))
    print(f"| quality weights | ms | x {ref_name} ({ref_ms:.3f} ms) |")
    print("| --- | ---: | ---: |")
    for name, row in results["quality"].items():
        print(f"| {name} | {row['ms']:.3f} | {row['relative_to_info_nce']:.2f} |")
    print()
    print(f"| loss, fwd+bwd, N={args.n}, D={args.d} | unweighted ms | weighted ms | weighted / unweighted |")
    print("| --- | ---: | ---: | ---: |")
    for name, row in results["losses"].items():
        print(f"| {name} | {row['unweighted_ms']:.3f} | {row['weighted_ms']:.3f} | {row['ratio']:.3f} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
