"""Throughput of the paired image + mask augmentation, per method: samples/s, median of several runs.

A sample is everything the method's collator builds from one row: two views (SSL), plus the
uncropped original (LeOCLR), the CLIP view (CLIP), the CLIP view and two SimCLR views (SLIP),
each image with its foreground mask riding through the same geometry. Inputs are uint8 images
of ImageNet-like sizes (mixed, around 375x500) with token-resolution masks, already decoded (JPEG
decoding is the data loader's cost, not ours).

    python benchmarks/bench_augment.py                 # CPU, 224 px, batch 256
    python benchmarks/bench_augment.py --device cuda   # the same on a GPU
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import datetime, timezone

import torch

from genview_hf.data.augment import augment_views
from genview_hf.methods import METHODS, get_method


def make_batch(batch_size: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    sizes = [(375, 500), (500, 375), (333, 500), (400, 400)]
    images, masks = [], []
    for index in range(batch_size):
        height, width = sizes[index % len(sizes)]
        images.append(torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8).to(device))
        masks.append(
            torch.randint(0, 256, (height // 25, width // 25), generator=g, dtype=torch.uint8).to(device)
        )
    return images, masks


def views_of(method: str):
    augmentations = get_method(method).augmentations
    return [
        aug
        for aug in (augmentations.view_1, augmentations.view_2, augmentations.original, augmentations.image)
        if aug
    ]


def run_once(images, masks, views, size: int, generator, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for aug in views:
        augment_views(images, aug, size, masks=masks, generator=generator)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    images, masks = make_batch(args.batch_size, args.device)
    generator = torch.Generator().manual_seed(0)
    hardware = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else platform.processor() or platform.machine()
    )
    print(
        f"# {datetime.now(timezone.utc):%Y-%m-%d} {args.device} ({hardware}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {args.image_size} px, batch {args.batch_size}, median of {args.runs}"
    )
    print("| method | views per sample | samples/s | ms per batch |")
    print("| --- | --- | --- | --- |")
    for method in args.methods:
        views = views_of(method)
        run_once(images, masks, views, args.image_size, generator, args.device)  # warm-up
        times = [
            run_once(images, masks, views, args.image_size, generator, args.device) for _ in range(args.runs)
        ]
        median = statistics.median(times)
        print(f"| {method} | {len(views)} | {args.batch_size / median:,.0f} | {median * 1000:,.0f} |")


if __name__ == "__main__":
    main()
