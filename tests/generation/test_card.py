"""Tests of genview_hf.generation.card: every dataset card the demo writes, read back with
huggingface_hub's ``DatasetCardData``, carries the licence, tasks, size category and source the Hub
reads; the views' licence is carried from the source, given, or refused."""

from pathlib import Path

import pytest
from datasets import Dataset, load_dataset
from huggingface_hub import DatasetCard, DatasetCardData

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


def _source(license=None) -> Dataset:
    dataset = Dataset.from_dict({"image": [None], "caption": ["a cat"]})
    dataset.info.license = license
    return dataset


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
