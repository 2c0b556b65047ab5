"""Tests of the generation recipe (genview_hf.recipes.generate_views, ``genview generate``): a
dataset without rows is refused before anything is generated."""

import pytest

from genview_hf.data.loading import EmptyDatasetError
from genview_hf.testing.samples import shapes
from recipe_runs import generate


@pytest.mark.parametrize("written_by", ["save_to_disk", "parquet"])
def test_a_dataset_without_rows_is_refused_before_generation(tmp_path, written_by):
    empty = shapes(num_rows=4, image_size=32).select([])
    if written_by == "save_to_disk":
        empty.save_to_disk(str(tmp_path / "empty"))
    else:
        empty.to_parquet(str(tmp_path / "empty" / "data" / "train-00000-of-00001.parquet"))
    with pytest.raises(EmptyDatasetError, match=rf"{tmp_path / 'empty'}: split 'train' has 0 rows"):
        generate(tmp_path / "views", "--dataset_name", str(tmp_path / "empty"))
    assert not (tmp_path / "views").exists()
