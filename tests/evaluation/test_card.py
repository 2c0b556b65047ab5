"""Tests of genview_hf.evaluation.card: evaluation results written into a model card round-trip
through the Hub's own parser, and a card without markers gets an evaluation section."""

import pytest
from huggingface_hub import ModelCard

from _evaluation_fixtures import write_card
from genview_hf.evaluation import (
    add_eval_results_to_card,
)


def test_card_metadata_round_trips_through_the_hub_parser(tmp_path):
    folder = tmp_path / "model"
    write_card(folder)
    results = {
        "knn_top1": 0.75,
        "knn_top5": 0.95,
        "linear_best_lr": 0.1,
        "i2t_R@1": 0.5,
        "t2i_median_rank": 2.0,
    }
    add_eval_results_to_card(
        folder, results, dataset_name="digits", dataset_split="test", figures=["knn_curve.png"]
    )
    card = ModelCard.load(folder / "README.md")  # the Hub's parser, from the file
    found = {(r.task_type, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert found == {
        ("image-classification", "kNN top-1 accuracy"): 0.75,
        ("image-classification", "kNN top-5 accuracy"): 0.95,
        ("image-text-retrieval", "image-to-text R@1"): 0.5,
        ("image-text-retrieval", "text-to-image median rank"): 2.0,
    }
    assert {r.dataset_name for r in card.data.eval_results} == {"digits"}
    assert {r.dataset_split for r in card.data.eval_results} == {"test"}
    assert card.data.model_name == "model" and card.data.license == "apache-2.0"
    assert (
        "| Image classification (frozen features) | digits | test | kNN top-1 accuracy | 75.00% |"
        in card.text
    )
    assert "![knn curve](knn_curve.png)" in card.text and "_none yet_" not in card.text
    assert "Text after the table stays." in card.text
    # Measured again: the new value replaces the old, other results and figures stay.
    card = add_eval_results_to_card(folder, {"knn_top1": 0.8}, dataset_name="digits", dataset_split="test")
    found = {(r.task_type, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert found[("image-classification", "kNN top-1 accuracy")] == 0.8 and len(found) == 4
    assert card.text.count("<!-- genview-eval:start -->") == 1 and "knn_curve.png" in card.text


def test_card_without_markers_gets_an_evaluation_section(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    ModelCard("---\nlicense: mit\n---\n# A model\n").save(folder / "README.md")
    card = add_eval_results_to_card(folder, {"zero_shot_top1": 0.5}, dataset_name="digits", model_name="m")
    assert (
        "## Evaluation" in card.text
        and card.data.eval_results[0].task_type == "zero-shot-image-classification"
    )
    with pytest.raises(FileNotFoundError, match="no model card"):
        add_eval_results_to_card(tmp_path / "nowhere", {"knn_top1": 0.5}, dataset_name="digits")
    with pytest.raises(ValueError, match="no card-worthy metrics"):
        add_eval_results_to_card(folder, {"linear_best_lr": 0.1}, dataset_name="digits")
