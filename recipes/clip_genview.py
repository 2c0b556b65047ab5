"""GenView training of image-text methods through ``GenViewTrainer``: CLIP, SLIP (CLIP plus an
image SSL head) and GenView++ (``--multi_positive``: each caption against its real image and its
generated views, weighted by a frozen CLIP).

    accelerate launch recipes/clip_genview.py --config recipes/configs/clip_vitb16_cc3m.yaml
    accelerate launch --multi_gpu recipes/clip_genview.py --config recipes/configs/genviewpp_slip_vitb16_cc3m.yaml
    genview train --config recipes/configs/slip_vitb16_cc3m.yaml --max_steps 100

The flow is the one every training recipe runs, ``train_genview.main``: load the views dataset,
build a ``CLIPModel`` (+ SLIP's image head) and its ``CLIPProcessor``, train with the quality
weights, save a plain ``CLIPModel`` root (``pipeline("zero-shot-image-classification")`` loads it)
with its card, push when asked. Image SSL methods (MoCo, SimSiam, BYOL, SimCLR) are refused here,
naming ``recipes/train_genview.py``.
"""

from __future__ import annotations

import sys

from genview_hf.recipes.train_genview import main, parse, run

__all__ = ["cli", "main"]


def cli(argv: list[str] | None = None) -> int:
    """``recipes/clip_genview.py``: the image-text methods."""
    return run(*parse(argv, image_text=True))


if __name__ == "__main__":
    sys.exit(cli())
