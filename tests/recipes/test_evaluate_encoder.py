"""Tests of the evaluation recipe (genview_hf.recipes.evaluate_encoder, ``genview evaluate``): on a
CLIP folder it writes the results and the card."""

import json

import pytest
from datasets import DatasetDict
from huggingface_hub import ModelCard

from _evaluation_fixtures import cell_dataset, write_card
from genview_hf.recipes.evaluate_encoder import cli as run_main
from genview_hf.testing import (
    tiny_clip,
)


def test_evaluate_command_on_a_clip_folder_writes_results_and_card(tmp_path, clip_processor):
    clip, processor = tiny_clip()
    folder = tmp_path / "clip"
    clip.save_pretrained(folder)
    processor.save_pretrained(folder)
    write_card(folder)
    names = [f"c{i}" for i in range(4)]

    def split(offset):
        labels = [i % 4 for i in range(8)]
        return cell_dataset(
            [label + offset for label in labels],
            labels=labels,
            captions=[f"c{i}" for i in range(8)],
            class_names=names,
        )

    DatasetDict({"train": split(0), "test": split(0)}).save_to_disk(tmp_path / "data")
    argv = f"--model_name_or_path {folder} --dataset_name {tmp_path / 'data'} --output_dir {tmp_path / 'out'}".split()
    argv += "--protocols knn linear zero-shot retrieval --linear_epochs 2 --update_card".split()
    assert run_main(argv) == 0
    results = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    for key in ("knn_top1", "linear_top1", "zero_shot_top1", "i2t_R@1", "t2i_mean_rank"):
        assert key in results
    assert 0.0 <= results["knn_top1"] <= 1.0 and 0.0 <= results["i2t_R@1"] <= 1.0
    assert results["protocols"] == ["knn", "linear", "zero_shot", "retrieval"]
    assert list((tmp_path / "out" / "feature_cache").glob("*.safetensors"))
    card = ModelCard.load(folder / "README.md")
    assert {r.task_type for r in card.data.eval_results} == {
        "image-classification",
        "zero-shot-image-classification",
        "image-text-retrieval",
    }
    with pytest.raises(KeyError, match="no split 'validation'"):
        run_main(argv[:6] + ["--dataset_test_split", "validation"])
