"""Tests of genview_hf.evaluation.retrieval: a matched CLIP stand-in retrieves perfectly and a random
one at chance, several captions per image, ties ranked against the query, bad input named."""

import pytest
import torch

from _evaluation_fixtures import CELLS, cell_clip, cell_dataset
from genview_hf.evaluation import (
    retrieval_evaluate,
    retrieval_ranks,
    retrieval_scores,
)
from genview_hf.testing import (
    tiny_vit,
)


def test_retrieval_matched_clip_is_perfect_and_random_is_chance(clip_processor):
    dataset = cell_dataset(range(CELLS), captions=[f"an image with c{i} lit" for i in range(CELLS)])
    perfect = retrieval_evaluate(cell_clip(clip_processor), dataset, progress=False)
    for direction in ("i2t", "t2i"):
        assert perfect[f"{direction}_R@1"] == 1.0
        assert perfect[f"{direction}_mean_rank"] == 1.0 and perfect[f"{direction}_median_rank"] == 1.0
    chance = retrieval_evaluate(cell_clip(clip_processor, matched=False), dataset, progress=False)
    for direction in ("i2t", "t2i"):
        assert chance[f"{direction}_R@1"] < 0.1  # chance: 1 / 64
        assert chance[f"{direction}_R@10"] < 0.35  # chance: 10 / 64
        assert 20 < chance[f"{direction}_mean_rank"] < 45  # chance: 32.5


def test_retrieval_with_several_captions_per_image(clip_processor):
    captions = [[f"c{i}", f"a photo of c{i}"] for i in range(8)]
    dataset = cell_dataset(range(8), captions=captions)
    scores = retrieval_evaluate(cell_clip(clip_processor), dataset, progress=False)
    assert scores["i2t_R@1"] == 1.0 and scores["t2i_R@1"] == 1.0


def test_retrieval_ranks_count_ties_against_the_query():
    images = torch.ones(4, 3)
    texts = torch.ones(4, 3)  # a collapsed encoder: every score ties
    i2t, t2i = retrieval_ranks(images, texts)
    assert i2t.tolist() == [4, 4, 4, 4] and t2i.tolist() == [4, 4, 4, 4]
    images = torch.eye(3)
    texts = torch.tensor([[0.1, 1.0, 0.0], [1.0, 0.1, 0.0], [0.0, 0.0, 1.0]])  # captions 0 and 1 swapped
    i2t, t2i = retrieval_ranks(images, texts)
    assert i2t.tolist() == [2, 2, 1] and t2i.tolist() == [2, 2, 1]


def test_retrieval_bad_input_is_named(clip_processor):
    with pytest.raises(ValueError, match="5 images but 4 captions"):
        retrieval_scores(torch.randn(5, 8), torch.randn(4, 8))
    with pytest.raises(ValueError, match="image 2 has no caption"):
        retrieval_scores(torch.randn(3, 8), torch.randn(2, 8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="row 1"):
        retrieval_evaluate(cell_clip(clip_processor), cell_dataset(range(2), captions=["c0", "  "]))
    with pytest.raises(KeyError, match="'caption'"):
        retrieval_evaluate(cell_clip(clip_processor), cell_dataset(range(2)))
    vit, processor = tiny_vit()
    with pytest.raises(TypeError, match="CLIP-type encoder"):
        retrieval_evaluate(vit, cell_dataset(range(2), captions=["c0", "c1"]), processor=processor)
