"""Inputs of known structure for the evaluation tests: separable clusters of features, images cut
into a grid of cells (a cell's colour is its class) and a CLIP stand-in that scores them."""

import re

import numpy as np
import torch
from datasets import ClassLabel, Dataset, Features, Image, Sequence, Value
from PIL import Image as PILImage
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from genview_hf.evaluation import (
    load_encoder,
)

GRID = 8  # 32 px images cut into 8 x 8 cells of 4 px


CELLS = GRID * GRID


def clusters(n_classes=10, n_train=400, n_test=200, dim=32, spread=0.5, seed=0):
    """Gaussian clusters around well separated centres: separable by construction."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, dim, generator=generator) * 4

    def sample(n):
        labels = torch.arange(n) % n_classes
        return centres[labels] + spread * torch.randn(n, dim, generator=generator), labels

    return (*sample(n_train), *sample(n_test))


def cell_image(cell: int, seed: int = 0) -> PILImage.Image:
    """A dark, slightly noisy 32 px image whose cell ``cell`` (of the 8 x 8 grid) is bright."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 40, size=(32, 32, 3), dtype=np.uint8)
    row, column = divmod(cell, GRID)
    pixels[4 * row : 4 * row + 4, 4 * column : 4 * column + 4] = 255
    return PILImage.fromarray(pixels)


def cell_dataset(cells, labels=None, captions=None, class_names=None):
    data = {"image": [cell_image(cell, seed=index) for index, cell in enumerate(cells)]}
    features = {"image": Image()}
    if labels is not None:
        data["label"] = list(labels)
        features["label"] = ClassLabel(names=class_names) if class_names else Value("int64")
    if captions is not None:
        data["caption"] = captions
        features["caption"] = Sequence(Value("string")) if isinstance(captions[0], list) else Value("string")
    return Dataset.from_dict(data, features=Features(features))


class CellCLIP(nn.Module):
    """A CLIP-type model built to match: an image embeds as its 8 x 8 cell brightness map, a text
    naming ``c<i>`` as the one-hot of cell i, so image i and text "c<i>" align and nothing else does.
    ``matched=False`` gives each text a random embedding instead (seeded by the text): chance."""

    def __init__(self, tokenizer, matched: bool = True):
        super().__init__()
        self.tokenizer = tokenizer
        self.matched = matched
        self.scale = nn.Parameter(torch.ones(()))

    def get_image_features(self, pixel_values):
        cells = nn.functional.avg_pool2d(pixel_values.mean(dim=1, keepdim=True), 32 // GRID).flatten(1)
        return BaseModelOutputWithPooling(
            pooler_output=self.scale * (cells - cells.mean(dim=1, keepdim=True))
        )

    def get_text_features(self, input_ids, attention_mask=None):
        embeddings = []
        for text in self.tokenizer.batch_decode(input_ids, skip_special_tokens=True):
            if self.matched:
                embeddings.append(
                    nn.functional.one_hot(
                        torch.tensor(int(re.search(r"c(\d+)", text.replace(" ", ""))[1])), CELLS
                    )
                )
            else:
                generator = torch.Generator().manual_seed(sum(map(ord, text)) * 7919 + len(text))
                embeddings.append(torch.randn(CELLS, generator=generator))
        return BaseModelOutputWithPooling(pooler_output=self.scale * torch.stack(embeddings).float())


def cell_clip(processor, matched=True):
    return load_encoder(CellCLIP(processor.tokenizer, matched=matched), processor)


def write_card(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text(
        "---\nlicense: apache-2.0\nlibrary_name: transformers\ntags:\n- genview\n---\n"
        "# tiny-genview\n\n## Results\n\n<!-- genview-eval:start -->\n_none yet_\n<!-- genview-eval:end -->\n\n"
        "## Usage\n\nText after the table stays.\n"
    )


def stripes(label: int, seed: int) -> PILImage.Image:
    """Class 0: horizontal stripes; class 1: vertical; a little noise."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    if label == 0:
        pixels[::4] = 255
    else:
        pixels[:, ::4] = 255
    return PILImage.fromarray(np.clip(pixels + rng.integers(0, 30, pixels.shape), 0, 255).astype(np.uint8))
