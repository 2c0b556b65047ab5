"""Tests of genview_hf.generation.driver's guards: an unfinished views folder is no dataset, a rerun
with other settings is refused before anything is touched, a damaged shard is generated again, bad
settings, a failed fit, and a full disk leave nothing that looks whole,
and an image cell holding only a path is written as the image's bytes."""

import errno
import io
import logging

import pytest
import torch
from datasets import Dataset, Features, Image, load_dataset
from PIL import Image as PILImage

from genview_hf.data.loading import load_split
from genview_hf.generation import ForegroundScorer, generate_views
from genview_hf.generation import driver as driver_module
from genview_hf.generation.components import build_generator
from genview_hf.testing.samples import shapes
from recipe_runs import gen_config, listing, recipe, source, tiny_filesystem, truncate


def test_an_unfinished_run_is_no_dataset_and_a_rerun_with_other_outputs_is_refused(
    tmp_path, components, monkeypatch
):
    out = tmp_path / "views"
    real_write = driver_module.write_shard

    def killed_after_the_first_shard(*args, **kwargs):
        if args[1] == 1:
            raise KeyboardInterrupt("killed")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(driver_module, "write_shard", killed_after_the_first_shard)
    with pytest.raises(KeyboardInterrupt):
        generate_views(source(), gen_config(out), dataset_name="shapes", components=components)
    monkeypatch.undo()
    # nothing a reader would take for a (smaller) dataset
    assert [p.name for p in out.iterdir()] == [".work"]
    with pytest.raises(FileNotFoundError):
        load_dataset(str(out), split="train")
    with pytest.raises(ValueError, match=r"unfinished `genview generate` run \(1 of 2 shards done\)"):
        load_split(str(out), "train")
    with pytest.raises(ValueError, match="unfinished"):  # the training recipe refuses it by name
        recipe(tmp_path / "train", "--dataset_name", str(out))

    # every setting that changes the outputs is refused, before anything is touched
    other_scorer = tmp_path / "other-scorer"
    ForegroundScorer(direction=torch.ones(32) / 32**0.5, threshold=0.0, grid=(8, 8)).save(other_scorer)
    before = listing(out)
    for setting, value in [
        ("foreground_artifacts", str(other_scorer)),
        ("image_column", "picture"),
        ("caption_column", "alt_caption"),
    ]:
        with pytest.raises(ValueError, match=rf"other settings \({setting}\)"):
            generate_views(
                source(), gen_config(out, **{setting: value}), dataset_name="shapes", components=components
            )
    with pytest.raises(ValueError, match=r"other settings \(dataset_fingerprint\)"):
        generate_views(
            source(6).select(range(2, 6)), gen_config(out), dataset_name="shapes", components=components
        )
    assert listing(out) == before

    generate_views(
        source(), gen_config(out), dataset_name="shapes", components=components
    )  # the same: resumes
    assert len(load_dataset(str(out), split="train")) == 4 and len(load_split(str(out), "train")) == 4
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "train-00000-of-00002.parquet", "train-00001-of-00002.parquet",
    ]  # fmt: skip


def test_the_same_foreground_artifacts_resume_and_changed_ones_are_refused(tmp_path, components):
    scorer = ForegroundScorer(direction=torch.ones(32) / 32**0.5, threshold=0.0, grid=(8, 8))
    scorer.save(tmp_path / "scorer")
    settings = gen_config(tmp_path / "views", foreground_artifacts=str(tmp_path / "scorer"), max_rows=2)
    generate_views(source(), settings, components=components)
    generate_views(source(), settings, components=components)  # same artifacts: a finished run, re-assembled
    ForegroundScorer(direction=-scorer.direction, threshold=0.0, grid=(8, 8)).save(tmp_path / "scorer")
    with pytest.raises(ValueError, match=r"other settings \(foreground_artifacts\)"):
        generate_views(source(), settings, components=components)


def test_bad_settings_and_a_failed_fit_write_nothing(tmp_path, components):
    with pytest.raises(ValueError, match=r"fg_share must be in \(0, 1\), got 1.5"):
        gen_config(tmp_path, fg_share=1.5)
    with pytest.raises(ValueError, match="guidance scales must be >= 0"):
        gen_config(tmp_path, ic_guidance_scale=-1.0)
    with pytest.raises(ValueError, match="guidance scales must be >= 0"):
        gen_config(tmp_path, guidance_scales=[8, 6, -4, 2])
    # no image of the fit's sample decodes: the fit fails before a file is written ...
    broken = Dataset.from_dict(
        {"image": [{"bytes": b"garbage", "path": None}] * 4}, features=Features({"image": Image()})
    )
    with pytest.raises(ValueError, match="no decodable image"):
        generate_views(broken, gen_config(tmp_path / "views", license="other"), components=components)
    assert not (tmp_path / "views").exists()
    # ... so the corrected run into the same folder is not refused
    generate_views(source(2), gen_config(tmp_path / "views"), components=components)
    assert len(load_split(str(tmp_path / "views"), "train")) == 2


def test_a_non_text_caption_column_is_refused_before_generation(tmp_path, components):
    with pytest.raises(TypeError, match=r"caption_column 'label' must hold text"):
        generate_views(
            source(), gen_config(tmp_path / "a", modes=["tc"], caption_column="label"), components=components
        )
    assert not (tmp_path / "a").exists()
    scorer = ForegroundScorer(direction=torch.ones(32) / 32**0.5, threshold=0.0, grid=(8, 8))
    generator = build_generator(components, scorer, gen_config(tmp_path, modes=["tc"]))
    batch = {
        "image": list(source(2).cast_column("image", Image(decode=False))["image"]),
        "caption": ["a cat", 3],
    }
    with pytest.raises(TypeError, match=r"row 1, column 'caption': captions must be text, got int 3"):
        generator(batch, [0, 1])


def test_a_cell_holding_only_a_local_path_is_written_as_the_image_bytes(tmp_path, components):
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
    out = generate_views(data, gen_config(tmp_path / "views", license="apache-2.0"), components=components)
    for file in files:
        file.unlink()
    cells = load_split(str(out), "train").cast_column("image", Image(decode=False))["image"]
    assert [cell["bytes"] for cell in cells] == originals
    assert PILImage.open(io.BytesIO(cells[0]["bytes"])).size == (32, 32)


def test_a_generation_rerun_finds_and_redoes_a_damaged_shard(views, components, caplog):
    shard = views / "data" / "train-00001-of-00002.parquet"
    rows = load_split(str(views), "train").cast_column("image", Image(decode=False))
    truncate(shard)
    with caplog.at_level(logging.WARNING, logger="genview_hf.generation"):
        generate_views(source(), gen_config(views), dataset_name="shapes", components=components)
    assert f"generating {shard} again: it is not a whole parquet file" in caplog.text
    again = load_split(str(views), "train").cast_column("image", Image(decode=False))
    assert again.to_dict() == rows.to_dict()  # views depend on (seed, row id) only: the same rows


def test_a_full_disk_while_generating_is_an_enospc_and_the_finished_shards_stay(
    tmp_path, components, monkeypatch
):
    with tiny_filesystem(
        tmp_path / "disk", "100k"
    ) as disk:  # room for the first shard (~50 kB), not the second
        if disk is None:
            real = Dataset.to_parquet

            def second_shard_fills_the_disk(self, path, *args, **kwargs):
                if "00001-of" in str(path):
                    raise OSError(errno.ENOSPC, "No space left on device")
                return real(self, path, *args, **kwargs)

            monkeypatch.setattr(Dataset, "to_parquet", second_shard_fills_the_disk)
        out = (disk or tmp_path) / "views"
        with pytest.raises(
            OSError, match=rf"No space left on device while writing the views folder in {out}"
        ) as error:
            generate_views(source(8), gen_config(out), components=components)
        assert error.value.errno == errno.ENOSPC
        assert (out / ".work" / "shards" / "train-00000-of-00004.parquet").is_file()  # kept for the re-run
        assert not (out / ".work" / "lock.json").exists()
