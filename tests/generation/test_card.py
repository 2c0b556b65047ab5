"""Every card the demo writes, read back with huggingface_hub's own types (``DatasetCardData``,
``ModelCardData``, ``model_index_to_eval_results``): the fields the Hub reads are there and typed
as its spec says, no local path reaches the metadata, and the cards' model-index is derived from
``eval_results.json`` (the contract). The views' licence: carried, given, or refused."""

import json
from pathlib import Path

import pytest
from datasets import Dataset, load_dataset
from huggingface_hub import DatasetCard, DatasetCardData, ModelCard, ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results

from genview_hf.evaluation.card import eval_results_from_dict
from genview_hf.generation.card import views_license
from genview_hf.hub import SIZE_CATEGORIES, is_hub_id

HUB_SIZES = {name for _, name in SIZE_CATEGORIES} | {"n>1B"}


def _check_dataset_card(path: Path) -> DatasetCardData:
    data = DatasetCard.load(path).data
    assert isinstance(data, DatasetCardData)
    assert isinstance(data.license, str) and data.license
    for field in ("task_categories", "size_categories", "source_datasets", "tags"):
        value = getattr(data, field)
        assert isinstance(value, list) and value and all(isinstance(v, str) for v in value), (path, field)
    assert set(data.size_categories) <= HUB_SIZES
    return data


def test_the_dataset_cards_carry_licence_tasks_size_and_source(demo):
    output_dir, _ = demo
    views = _check_dataset_card(output_dir / "views" / "README.md")
    assert views.license == "apache-2.0"  # the shapes sample's licence, carried
    assert views.task_categories == ["image-feature-extraction", "image-to-image", "text-to-image"]
    assert views.size_categories == ["n<1K"] and views.source_datasets == ["extended"]
    controlled = _check_dataset_card(output_dir / "controlled" / "README.md")
    assert controlled.source_datasets == ["original"]
    splits = load_dataset(str(output_dir / "controlled"))  # the card's configs block over the Arrow files
    assert {name: len(split) for name, split in splits.items()} == {"train": 48, "test": 300}


def test_the_model_cards_have_hub_ids_only_and_a_model_index_derived_from_eval_results(demo):
    output_dir, _ = demo
    results = json.loads((output_dir / "eval_results.json").read_text())
    for name, metrics in (
        ("model", results),
        ("model_off", results["mocov3_off"]),
        ("clip", results["clip"]),
    ):
        card = ModelCard.load(output_dir / name / "README.md")
        data = card.data
        assert isinstance(data, ModelCardData)
        assert data.datasets is None and data.base_model is None  # local data, weights from a local folder
        model_name, parsed = model_index_to_eval_results(data.to_dict()["model-index"])
        assert model_name == data.model_name and parsed
        for result in parsed:
            assert not Path(result.dataset_type).is_absolute() and "/" not in result.dataset_type
            assert str(output_dir) not in result.dataset_name
        dataset = "sample:shapes" if name == "clip" else str(output_dir / "controlled")
        derived = eval_results_from_dict(
            {k: v for k, v in metrics.items() if not isinstance(v, dict)},
            dataset_name=dataset,
            dataset_split="test",
        )
        assert {(r.dataset_type, r.metric_name, r.metric_value) for r in parsed} == {
            (r.dataset_type, r.metric_name, r.metric_value) for r in derived
        }, name
    assert {r.dataset_type for r in eval_results_from_dict({"knn_top1": 0.5}, dataset_name="owner/set")} == {
        "owner/set"
    }


def _source(license=None) -> Dataset:
    dataset = Dataset.from_dict({"image": [None], "caption": ["a cat"]})
    dataset.info.license = license
    return dataset


def test_the_views_licence_is_carried_given_or_refused(tmp_path):
    assert views_license(None, _source("cc-by-4.0"), None) == "cc-by-4.0"
    assert views_license("cc-by-4.0", _source("cc-by-4.0"), None) == "cc-by-4.0"
    assert views_license("other", _source(), "someone/unreadable-offline") == "other"
    with pytest.raises(ValueError, match=r"licence of .*source.* is unknown.*--license"):
        views_license(None, _source(), None)
    with pytest.raises(ValueError, match="license 'mit' disagrees with the source's 'cc-by-4.0'"):
        views_license("mit", _source("cc-by-4.0"), None)
    folder = tmp_path / "local_source"  # a local folder's card says
    folder.mkdir()
    DatasetCard("---\nlicense: cc-by-sa-4.0\n---\n# source\n").save(folder / "README.md")
    assert views_license(None, _source(), str(folder)) == "cc-by-sa-4.0"
    assert not is_hub_id(str(folder))
