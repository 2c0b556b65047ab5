"""The controlled false-positive benchmark's settings (``bench_efficacy.py``), read by the benchmark
and by the demo (as ``genview_hf.benchmarks.efficacy_settings``), which trains the same run and
quotes the benchmark's figures.

- :func:`efficacy_encoder`: the small stock ``ResNetModel`` every arm trains from scratch and, at its
  fixed random weights, the frozen quality model of the frozen arms;
- ``CONTROLLED_RUN``: MoCo v3 on the controlled set (``genview_hf.testing.controlled``), the heads and
  rates of a short run;
- ``WEIGHTED``: our quality options of the frozen mode (docs/efficacy.md);
- ``RECOMMENDED``: those options with the weighting the benchmark supports at 200, 400 and 800
  steps (``row_memory``), which the demo trains.
"""

from __future__ import annotations

import os
from pathlib import Path

IMAGE_SIZE = 32  # the controlled set's side and the small ResNet's input
ENCODER_WIDTH = 16  # the small ResNet's stem width (stages of 16 and 32 channels)
# MoCo v3 on the controlled set, as every arm of the benchmark trains: the small ResNet's heads and a
# short run's rates.
CONTROLLED_RUN = dict(
    method="mocov3",
    proj_hidden_dim=128,
    proj_dim=64,
    pred_hidden_dim=128,
    temperature=0.2,  # MoCo v3: 0.2
    learning_rate=2e-3,
    momentum=0.9,  # a short run: the key encoder follows faster than MoCo v3's 0.99
)
# Our options of the frozen mode: the frozen encoder's tokens pooled with the stored masks, on each
# view's crop and flip before its colour operations, with centred cosines.
WEIGHTED = dict(
    quality_mode="frozen", quality_foreground="masks", quality_views="geometric", quality_center=True
)
# ... with each row's quality averaged over its visits and the pairs below 0 weighted 0: the option
# that gains over off at 200, 400 and 800 steps on ten paired seeds (docs/efficacy.md, 2026-12-07).
RECOMMENDED = {**WEIGHTED, "quality_weighting": "row_memory"}


def efficacy_encoder(folder: str | os.PathLike) -> Path:
    """A small stock ``ResNetModel`` (two basic-block stages of ``ENCODER_WIDTH`` and twice as many
    channels, ``IMAGE_SIZE`` px, seeded random weights) and its processor, saved in ``folder`` once:
    the encoder the benchmark and the demo train from scratch and, at these weights, their frozen
    quality model (random features: nothing about the task leaks into the weights)."""
    import torch
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetModel

    from genview_hf.testing.tiny_models import save_atomically

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        config = ResNetConfig(
            embedding_size=ENCODER_WIDTH,
            hidden_sizes=[ENCODER_WIDTH, 2 * ENCODER_WIDTH],
            depths=[1, 1],
            layer_type="basic",
            downsample_in_first_stage=False,
        )
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = ResNetModel(config)
        processor = ConvNextImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_pct=1.0)
        save_atomically(folder, model, processor)
    return folder
