"""Evaluation throughput: feature extraction (ViT-B/16 at 224 px, bf16 on GPU), kNN and linear probe.

    python benchmarks/bench_evaluation.py --device cuda   # ViT-B/16, 100k-feature kNN, 50k linear probe
    python benchmarks/bench_evaluation.py --device cpu    # a small CPU run (default without CUDA)

Prints one JSON line per measurement with the date and the hardware.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time

import torch
from transformers import ViTConfig, ViTImageProcessor, ViTModel

from genview_hf.evaluation import extract_features, knn_evaluate, linear_probe
from genview_hf.testing.samples import load_sample


def report(name: str, seconds: float, device: str, **figures) -> None:
    device = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"  # the hardware
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    print(
        json.dumps({"bench": name, "seconds": round(seconds, 3), **figures, "device": device, "date": when})
    )


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    device = parser.parse_args(argv).device
    gpu = device.startswith("cuda")
    dataset = load_sample("digits", split="train")
    if not gpu:
        dataset = dataset.select(range(64))
    config = ViTConfig() if gpu else ViTConfig(hidden_size=192, num_hidden_layers=4, num_attention_heads=3)
    model = ViTModel(config).to(device)
    processor = ViTImageProcessor(size={"height": 224, "width": 224})
    options = dict(processor=processor, batch_size=256, num_workers=8 if gpu else 0, progress=False)
    extract_features(model, dataset.select(range(min(256, len(dataset)))), **options)  # warm-up
    sync(device)
    start = time.perf_counter()
    features = extract_features(model, dataset, **options)
    sync(device)
    seconds = time.perf_counter() - start
    report(
        "extract_features",
        seconds,
        device,
        model="ViT-B/16" if gpu else "ViT-tiny",
        images=len(dataset),
        images_per_s=round(len(dataset) / seconds, 1),
        dim=features.shape[1],
    )

    bank, queries, dim, classes = (100_000, 10_000, 768, 1000) if gpu else (5_000, 1_000, 128, 100)
    generator = torch.Generator().manual_seed(0)
    train_x = torch.randn(bank, dim, generator=generator).to(device)
    train_y = torch.randint(0, classes, (bank,), generator=generator).to(device)
    test_x = torch.randn(queries, dim, generator=generator).to(device)
    test_y = torch.randint(0, classes, (queries,), generator=generator)
    sync(device)
    start = time.perf_counter()
    knn_evaluate(train_x, train_y, test_x, test_y)
    sync(device)
    report("knn", time.perf_counter() - start, device, bank=bank, queries=queries, dim=dim, classes=classes)

    n, epochs = (50_000, 10) if gpu else (2_000, 5)
    start = time.perf_counter()
    linear_probe(train_x[:n], train_y[:n], test_x, test_y, epochs=epochs)
    sync(device)
    report(
        "linear_probe",
        time.perf_counter() - start,
        device,
        train=n,
        dim=dim,
        classes=classes,
        epochs=epochs,
        learning_rates=7,
        note="sweep on 90% + refit on 100%",
    )


if __name__ == "__main__":
    main()
