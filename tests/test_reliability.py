"""Nothing lost, third pass: each fault made to happen (a shard deleted or cut short, a cell that
holds only a path, a used output folder, a truncated checkpoint, wrong YAML, a read-only or full
disk, two jobs in one folder), and what the user sees."""

import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from datasets import Dataset, Features, Image
from PIL import Image as PILImage

from genview_hf.data.integrity import DamagedDataError
from genview_hf.data.loading import load_split
from genview_hf.data.samples import shapes
from genview_hf.generation import generate_views
from genview_hf.integrity import DamagedFileError
from test_robustness import components, gen_config, source  # noqa: F401 (components: a fixture)


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut ``path`` to ``keep`` of its size (a copy or a write that did not finish)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# ------------------------------------------------------------------ 1. views folders read as written
@pytest.fixture
def views(tmp_path, components):  # noqa: F811
    """A finished views folder of 4 rows in 2 shards."""
    return generate_views(
        source(), gen_config(tmp_path / "views"), dataset_name="shapes", components=components
    )


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


def test_a_cell_holding_only_a_local_path_is_written_as_the_image_bytes(tmp_path, components):  # noqa: F811
    """The views dataset keeps the original image even once the file the cell pointed at is gone."""
    files = []
    for index, row in enumerate(shapes(num_rows=4, image_size=32)):
        files.append(tmp_path / f"image-{index}.png")
        row["image"].save(files[-1])
    originals = [file.read_bytes() for file in files]
    data = Dataset.from_dict(
        {"image": [{"bytes": None, "path": str(file)} for file in files]},
        features=Features({"image": Image()}),
    )
    assert data.cast_column("image", Image(decode=False))[0]["image"]["bytes"] is None  # only a path
    out = generate_views(data, gen_config(tmp_path / "views"), components=components)
    for file in files:
        file.unlink()
    cells = load_split(str(out), "train").cast_column("image", Image(decode=False))["image"]
    assert [cell["bytes"] for cell in cells] == originals
    assert PILImage.open(io.BytesIO(cells[0]["bytes"])).size == (32, 32)
