"""Tests of genview_hf.evaluation.zero_shot: a matched CLIP stand-in is perfect and a random one at
chance, the real tiny CLIP runs the whole path, bad input is named."""

import pytest

from _evaluation_fixtures import cell_clip, cell_dataset
from genview_hf.evaluation import (
    evaluate_encoder,
    zero_shot_evaluate,
)
from genview_hf.testing import (
    tiny_clip,
    tiny_vit,
)


def test_zero_shot_matched_clip_is_perfect_and_random_is_chance(clip_processor):
    classes = 16
    labels = [index % classes for index in range(64)]
    dataset = cell_dataset(labels, labels=labels, class_names=[f"c{i}" for i in range(classes)])
    perfect = zero_shot_evaluate(cell_clip(clip_processor), dataset, progress=False)
    assert perfect == {"zero_shot_top1": 1.0, "zero_shot_top5": 1.0, "zero_shot_mean_per_class_accuracy": 1.0}
    chance = zero_shot_evaluate(cell_clip(clip_processor, matched=False), dataset, progress=False)
    assert chance["zero_shot_top1"] < 3 / classes
    assert chance["zero_shot_top5"] < 0.6  # chance: 5 / 16


def test_zero_shot_on_the_real_tiny_clip_runs_the_whole_path(tmp_path):
    clip, processor = tiny_clip()
    labels = [index % 4 for index in range(8)]
    dataset = cell_dataset(labels, labels=labels, class_names=["cat", "dog", "car", "tree"])
    scores = zero_shot_evaluate(
        clip, dataset, processor=processor, templates=["a photo of a {}."], progress=False
    )
    assert set(scores) == {"zero_shot_top1", "zero_shot_mean_per_class_accuracy"}  # 4 classes: no top-5
    assert 0.0 <= scores["zero_shot_top1"] <= 1.0


def test_zero_shot_bad_input_is_named(clip_processor):
    vit, processor = tiny_vit()
    dataset = cell_dataset([0, 1], labels=[0, 1], class_names=["c0", "c1"])
    with pytest.raises(TypeError, match="CLIP-type encoder.*ViTModel"):
        zero_shot_evaluate(vit, dataset, processor=processor)
    with pytest.raises(TypeError, match="CLIP-type encoder"):
        evaluate_encoder(vit, dataset, protocols=["zero_shot"], processor=processor)
    plain_labels = cell_dataset([0, 1], labels=[0, 1])
    with pytest.raises(ValueError, match="class names"):
        zero_shot_evaluate(cell_clip(clip_processor), plain_labels)
    with pytest.raises(ValueError, match="class names"):  # checked before the kNN features are computed
        evaluate_encoder(
            cell_clip(clip_processor),
            plain_labels,
            train_dataset=plain_labels,
            protocols=["knn", "zero_shot"],
        )
    with pytest.raises(ValueError, match="'{}'"):
        zero_shot_evaluate(cell_clip(clip_processor), dataset, templates=["no slot"])
