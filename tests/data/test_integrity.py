"""Tests of genview_hf.data.integrity through the loader: a views folder's deleted, truncated or
replaced shard is named, never silently skipped."""

import pyarrow.parquet as pq
import pytest

from genview_hf.data.integrity import DamagedDataError
from genview_hf.data.loading import load_split
from genview_hf.integrity import DamagedFileError
from recipe_runs import truncate


def test_a_deleted_shard_is_named_not_silently_skipped(views):
    assert len(load_split(str(views), "train")) == 4
    (views / "data" / "train-00001-of-00002.parquet").unlink()
    with pytest.raises(
        DamagedDataError, match=r"1 of 2 shards of split 'train' are missing \(train-00001-of-00002"
    ):
        load_split(str(views), "train")


def test_a_truncated_shard_is_named(views):
    shard = views / "data" / "train-00000-of-00002.parquet"
    truncate(shard)
    with pytest.raises(DamagedFileError, match=rf"shard {shard} is damaged: it is not a whole parquet file"):
        load_split(str(views), "train")


def test_a_shard_replaced_by_one_of_other_rows_disagrees_with_the_card(views):
    shard = views / "data" / "train-00000-of-00002.parquet"
    table = pq.read_table(shard)
    pq.write_table(table.slice(0, 1), shard)  # whole, but one row short
    with pytest.raises(DamagedDataError, match=r"says split 'train' has 4 rows, its shards hold 3"):
        load_split(str(views), "train")
