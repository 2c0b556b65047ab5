"""Nothing lost, nothing silently wrong: exact resume through the training recipe, checkpoints that
refuse the wrong folder, rows that generation recorded as failed, NaN losses, tokens kept out of
checkpoints, stale caches, re-run guards and unfinished generation folders."""

import logging
import os
from pathlib import Path

import pytest
import safetensors.torch
import torch
from datasets import Dataset, Features, Image, Value, load_dataset
from PIL import Image as PILImage
from torch.utils.data import DataLoader
from transformers import TrainerCallback

from genview_hf.config import ScriptArguments, parse_config
from genview_hf.data.collators import RowIndexed, SSLCollator
from genview_hf.data.images import decode_image
from genview_hf.data.loading import load_split
from genview_hf.data.views import ROW_INDEX
from genview_hf.generation import ForegroundScorer, ViewGenerationConfig, generate_views, load_components
from genview_hf.generation import driver as driver_module
from genview_hf.generation.components import build_generator
from genview_hf.recipes.train_genview import main as train_main
from genview_hf.testing import tiny_path
from genview_hf.testing.samples import shapes
from genview_hf.training import GenViewTrainer, GenViewTrainingArguments, ModelArguments, builders
from training_helpers import NaNRow, build_model, make_args, make_trainer

ROOT = Path(__file__).resolve().parents[1]
SSL_CONFIG = ROOT / "recipes" / "configs" / "tiny_mocov3_shapes.yaml"


# ------------------------------------------------------------------ exact resume through the recipe
def recipe(output_dir, *flags, callbacks=None):
    """The training recipe on 12 shapes rows, batch 4: 3 steps an epoch, 6 steps, checkpoints every 2."""
    argv = [
        "--config", str(SSL_CONFIG), "--model_name_or_path", str(tiny_path("vit")), "--output_dir", str(output_dir),
        "--knn_monitor_split", "", "--training_figures", "false", "--max_train_samples", "12",
        "--per_device_train_batch_size", "4", "--max_steps", "6", "--save_steps", "2", "--logging_steps", "1",
        "--disable_tqdm", "true", *flags,
    ]  # fmt: skip
    # Each run starts as a fresh process would: the recipe builds the model before the Trainer seeds.
    torch.manual_seed(0)
    arguments = parse_config((ScriptArguments, GenViewTrainingArguments, ModelArguments), argv)
    return train_main(*arguments, callbacks=callbacks)


def checkpoint_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor a checkpoint holds: the model's (encoders, heads, momentum encoder, queue) and the optimizer's."""
    tensors = {
        f"model.{k}": v for k, v in safetensors.torch.load_file(str(folder / "model.safetensors")).items()
    }
    optimizer = torch.load(folder / "optimizer.pt", weights_only=True)
    for index, state in optimizer["state"].items():
        tensors.update({f"optimizer.{index}.{k}": v for k, v in state.items() if isinstance(v, torch.Tensor)})
    return tensors


def assert_identical(folder: Path, reference: dict[str, torch.Tensor]) -> None:
    tensors = checkpoint_tensors(folder)
    assert tensors.keys() == reference.keys()
    different = [name for name, value in reference.items() if not torch.equal(tensors[name], value)]
    assert not different, f"{len(different)} of {len(reference)} tensors differ, e.g. {different[:3]}"


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


class KillAt(TrainerCallback):
    """Dies at the start of the step after ``step`` (a kill between two steps)."""

    def __init__(self, step):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("killed")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    recipe(folder)
    return checkpoint_tensors(folder / "checkpoint-6")


def test_a_run_stopped_and_resumed_through_the_recipe_is_bit_identical(tmp_path, uninterrupted):
    recipe(tmp_path, callbacks=[StopAt(2)])
    recipe(tmp_path, "--resume_from_checkpoint", "true")  # from checkpoint-2, across the epoch boundary
    assert_identical(tmp_path / "checkpoint-6", uninterrupted)


def test_a_run_killed_in_its_second_epoch_resumes_bit_identical(tmp_path, uninterrupted):
    with pytest.raises(KeyboardInterrupt):
        recipe(tmp_path, callbacks=[KillAt(4)])
    recipe(tmp_path, "--resume_from_checkpoint", "true")  # from checkpoint-4, in epoch 1
    assert_identical(tmp_path / "checkpoint-6", uninterrupted)


def test_a_kill_during_a_save_resumes_from_the_newest_complete_checkpoint(tmp_path, uninterrupted):
    """A kill during a save leaves a checkpoint without ``trainer_state.json``, which the stock
    ``_save_checkpoint`` writes after the weights, optimizer and RNG states (no file is newer)."""
    with pytest.raises(KeyboardInterrupt):
        recipe(tmp_path, callbacks=[KillAt(4)])
    files = {path.name: path.stat().st_mtime_ns for path in (tmp_path / "checkpoint-4").iterdir()}
    assert files["trainer_state.json"] == max(files.values())
    (tmp_path / "checkpoint-4" / "trainer_state.json").unlink()  # what the kill leaves
    assert (tmp_path / "checkpoint-4" / "model.safetensors").exists()
    with pytest.raises(FileNotFoundError, match=r"checkpoint-4 is not a complete .*no trainer_state.json"):
        recipe(tmp_path, "--resume_from_checkpoint", str(tmp_path / "checkpoint-4"))
    recipe(tmp_path, "--resume_from_checkpoint", "true")  # passes over checkpoint-4: from checkpoint-2
    assert_identical(tmp_path / "checkpoint-6", uninterrupted)


def test_a_row_memory_run_resumes_bit_identical_with_its_rows_memory(tmp_path):
    # 12 rows, 3 steps an epoch: the steps after the resume revisit rows the memory saw before it
    flags = ("--quality_weighting", "row_memory")
    recipe(tmp_path / "full", *flags)
    recipe(tmp_path / "cut", *flags, callbacks=[StopAt(2)])
    assert (tmp_path / "cut" / "checkpoint-2" / "quality_row_memory.safetensors").is_file()
    recipe(tmp_path / "cut", *flags, "--resume_from_checkpoint", "true")
    assert_identical(
        tmp_path / "cut" / "checkpoint-6", checkpoint_tensors(tmp_path / "full" / "checkpoint-6")
    )


def test_a_missing_row_memory_file_is_named_and_the_memory_starts_empty(tmp_path, caplog):
    flags = ("--quality_weighting", "row_memory")
    recipe(tmp_path, *flags, callbacks=[StopAt(2)])
    (tmp_path / "checkpoint-2" / "quality_row_memory.safetensors").unlink()
    with caplog.at_level(logging.WARNING, logger="genview_hf.training.trainer"):
        recipe(tmp_path, *flags, "--resume_from_checkpoint", "true")
    assert "quality_row_memory.safetensors" in caplog.text and "starts empty" in caplog.text


@pytest.mark.slow
def test_resume_is_bit_identical_with_dataloader_workers(tmp_path):
    workers = ("--dataloader_num_workers", "2", "--max_steps", "4")
    recipe(tmp_path / "full", *workers)
    recipe(tmp_path / "cut", *workers, callbacks=[StopAt(2)])
    recipe(tmp_path / "cut", *workers, "--resume_from_checkpoint", "true")
    assert_identical(
        tmp_path / "cut" / "checkpoint-4", checkpoint_tensors(tmp_path / "full" / "checkpoint-4")
    )


def test_augmentation_is_a_function_of_seed_epoch_and_row_index():
    rows = [dict(row, **{ROW_INDEX: 10 + i}) for i, row in enumerate(shapes(num_rows=6, image_size=32))]
    collator = SSLCollator("mocov3", 32, seed=0)
    batch = collator(rows)
    torch.manual_seed(123)  # the global generator plays no part
    again = SSLCollator("mocov3", 32, seed=0)(rows[::-1])  # other batch-mates, other order
    assert torch.equal(again["pixel_values_1"], batch["pixel_values_1"].flip(0))
    collator.set_epoch(1)
    assert not torch.equal(
        collator(rows)["pixel_values_1"], batch["pixel_values_1"]
    )  # a new epoch, new views
    assert not torch.equal(SSLCollator("mocov3", 32, seed=1)(rows)["pixel_values_1"], batch["pixel_values_1"])
    # DataLoader workers draw the very same views as the main process (a row keeps its own index)
    loader = DataLoader(
        RowIndexed(rows), batch_size=3, num_workers=2, collate_fn=SSLCollator("mocov3", 32, seed=0)
    )
    assert torch.equal(torch.cat([b["pixel_values_1"] for b in loader]), batch["pixel_values_1"])


def test_persistent_workers_are_refused():
    """They would keep the first epoch's collator, repeating its augmentations every epoch."""
    args = make_args("unused", dataloader_num_workers=2, dataloader_persistent_workers=True)
    model, processor = build_model(args)
    with pytest.raises(ValueError, match="dataloader_persistent_workers"):
        GenViewTrainer(model, args, train_dataset=[{}] * 4, data_collator=SSLCollator("mocov3", 32))


# ------------------------------------------------------------------ checkpoints
def test_a_checkpoint_of_another_method_or_an_exported_root_is_refused_by_name(tmp_path):
    mocov3 = make_trainer(make_args(tmp_path, "mocov3", save_strategy="steps", save_steps=3))
    mocov3.train()
    mocov3.save_model()
    mocov2 = make_trainer(make_args(tmp_path / "other", "mocov2"))
    with pytest.raises(ValueError, match=r"checkpoint of method 'mocov3'; this run trains 'mocov2'"):
        mocov2.train(resume_from_checkpoint=str(tmp_path / "checkpoint-3"))
    again = make_trainer(make_args(tmp_path / "again", "mocov3"))
    with pytest.raises(
        ValueError, match=r"holds an exported 'vit' encoder .* resume from one of its checkpoint-\*"
    ):
        again.train(resume_from_checkpoint=str(tmp_path))


def test_hub_token_is_never_written_into_a_checkpoint(tmp_path):
    secret = "hf_not_a_real_token_123"
    trainer = make_trainer(make_args(tmp_path, "byol", hub_token=secret, save_strategy="steps", save_steps=3))
    trainer.train()
    saved = torch.load(tmp_path / "checkpoint-3" / "training_args.bin", weights_only=False)
    assert saved.hub_token is None and saved.method == "byol"
    assert not [p.name for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert trainer.args.hub_token == secret  # the run itself can still push


# ------------------------------------------------------------------ NaN
@pytest.mark.parametrize("quality_mode", ["off", "frozen"])
def test_a_nan_loss_stops_training_naming_the_step_before_any_parameter_is_hit(tmp_path, quality_mode):
    trainer = make_trainer(make_args(tmp_path, "mocov3", quality_mode=quality_mode, max_steps=8))
    trainer.train_dataset = NaNRow(length=16)
    with pytest.raises(FloatingPointError, match=r"step \d+ \(epoch \d\): the loss is nan") as error:
        trainer.train()
    assert "embeddings (queries_1" in str(error.value)
    if quality_mode == "frozen":  # the frozen model's token map is NaN too: the weights are named
        assert "the quality weights (pairs)" in str(error.value)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


# ------------------------------------------------------------------ rows generation recorded as failed
def views_rows(num_rows: int, null_views=(), corrupt_images=()) -> Dataset:
    """shapes rows with a generated view (the mirrored image) and its mask; ``null_views``: rows whose
    view and mask generation recorded as failed; ``corrupt_images``: rows whose image bytes are garbage."""
    data = shapes(num_rows=num_rows, image_size=32)
    mirror = PILImage.Transpose.FLIP_LEFT_RIGHT

    def add_view(row, index):
        failed = index in null_views
        row["view_ic"] = None if failed else row["image"].transpose(mirror)
        row["mask_ic"] = None if failed else row["mask"].transpose(mirror)
        return row

    def break_image(row, index):
        if index in corrupt_images:
            row["image"] = {"bytes": b"not an image", "path": None}
        return row

    data = data.map(
        add_view,
        with_indices=True,
        features=Features({**data.features, "view_ic": Image(), "mask_ic": Image()}),
    )
    return (
        data.cast_column("image", Image(decode=False))
        .map(break_image, with_indices=True)
        .cast_column("image", Image())
    )


def test_rows_without_their_views_are_skipped_with_a_count_or_refused(tmp_path, caplog):
    data = views_rows(12, null_views=(3, 9))
    args = make_args(tmp_path, "mocov3", quality_mode="stored")
    with caplog.at_level(logging.WARNING):
        kept = builders.views_dataset(data, args, where="views")
    assert len(kept) == 10 and kept[ROW_INDEX] == [i for i in range(12) if i not in (3, 9)]
    assert "views: leaving out 2 of 12 rows" in caplog.text and "(rows 3, 9;" in caplog.text
    refuse = make_args(tmp_path, "mocov3", quality_mode="stored", skip_incomplete_rows=False)
    with pytest.raises(ValueError, match=r"views cannot train .*2 of 12 rows have no value .*\(rows 3, 9;"):
        builders.views_dataset(data, refuse, where="views")


def test_a_bad_row_past_the_checked_ones_is_named_by_its_dataset_row(tmp_path):
    """Row 3 lost its view (left out: the check of the first 64 rows passes); row 68's image does not
    decode: the step that draws it names the dataset row, not its place in the batch."""
    views_rows(70, null_views=(3,), corrupt_images=(68,)).save_to_disk(str(tmp_path / "views"))
    flags = ["--dataset_name", str(tmp_path / "views"), "--max_train_samples", "70", "--max_steps", "3"]
    flags += ["--per_device_train_batch_size", "23", "--save_strategy", "no"]  # 69 rows: 3 full batches
    with pytest.raises(ValueError, match=r"row 68 \(batch item \d+\), column 'image': cannot decode"):
        recipe(tmp_path / "out", *flags)


def test_a_non_text_caption_column_is_a_type_error_up_front(tmp_path):
    data = shapes(num_rows=4, image_size=32)
    args = make_args(tmp_path, "clip", quality_mode="off")
    with pytest.raises(TypeError, match=r"caption column 'caption' must hold text, it holds ClassLabel"):
        builders.views_dataset(data.remove_columns("caption"), args, caption_column="label")


# ------------------------------------------------------------------ the one decode
def test_zero_byte_and_transparent_images_in_the_cells_training_and_generation_read():
    with pytest.raises(ValueError, match=r"row 7, column 'image': the image file is empty \(0 bytes\)"):
        decode_image({"bytes": b"", "path": None}, "row 7, column 'image'")
    rgba = PILImage.new("RGBA", (32, 32), (255, 0, 0, 0))  # fully transparent red: white once composited
    row = {"image": rgba, ROW_INDEX: 0}
    batch = SSLCollator("mocov3", 32, mean=(0, 0, 0), std=(1, 1, 1), generated_view_prob=0.0, seed=0)(
        [row, row]
    )
    assert batch["pixel_values_1"].amin() > 0.5  # no black (alpha dropped) and no red: jittered white


# ------------------------------------------------------------------ stale caches
def rows_of(value: int, n: int = 4) -> Dataset:
    return Dataset.from_dict({"value": [value] * n, "text": [f"row {value}"] * n})


def keep_times(path: Path, write) -> None:
    """``write()`` the file again with the same size and the very same mtime (``cp -p`` / ``rsync -t``)."""
    before = path.stat()
    write()
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_a_views_folder_rewritten_with_the_same_size_and_mtime_is_read_afresh(tmp_path):
    shard = tmp_path / "views" / "data" / "train-00000-of-00001.parquet"
    shard.parent.mkdir(parents=True)
    rows_of(1).to_parquet(str(shard))
    assert load_split(str(tmp_path / "views"), "train")["value"] == [1] * 4
    keep_times(shard, lambda: rows_of(2).to_parquet(str(shard)))
    assert load_split(str(tmp_path / "views"), "train")["value"] == [2] * 4


def test_a_folder_with_a_configs_card_rewritten_in_place_is_read_afresh(tmp_path):
    """load_dataset(folder) with a configs block caches on the card's YAML alone (see data.loading)."""
    folder = tmp_path / "jsonl"
    (folder / "data").mkdir(parents=True)
    card = "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/*.jsonl\n---\n"
    (folder / "README.md").write_text(card)
    rows = folder / "data" / "rows.jsonl"
    rows_of(1).to_json(str(rows))
    assert load_split(str(folder), "train")["value"] == [1] * 4
    keep_times(rows, lambda: rows_of(2).to_json(str(rows)))
    assert load_split(str(folder), "train")["value"] == [2] * 4


# ------------------------------------------------------------------ generation: guards and unfinished folders
UNCLIP, TEXT2IMG = str(tiny_path("unclip-img2img")), str(tiny_path("text2img"))


def gen_config(folder, **overrides) -> ViewGenerationConfig:
    settings = dict(
        output_dir=str(folder), unclip_model=UNCLIP, text2img_model=TEXT2IMG, modes=["ic"], num_inference_steps=2,
        height=32, width=32, batch_size=2, shard_size=2, fg_sample_size=4, mixed_precision="no",
    )  # fmt: skip
    settings.update(overrides)
    return ViewGenerationConfig(**settings)


@pytest.fixture(scope="module")
def components():
    return load_components(gen_config("unused", modes=["ic", "tc"]))


def source(num_rows: int = 4) -> Dataset:
    data = shapes(num_rows=num_rows, image_size=32)
    features = Features({**data.features, "picture": Image(), "alt_caption": Value("string")})
    return data.map(lambda row: {"picture": row["image"], "alt_caption": row["caption"]}, features=features)


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


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


def test_foreground_artifacts_save_whole_and_a_truncated_file_is_named(tmp_path, components, monkeypatch):
    scorer = ForegroundScorer(direction=torch.ones(32) / 32**0.5, threshold=0.5, grid=(8, 8))
    scorer.save(tmp_path / "fg")
    meta = tmp_path / "fg" / "foreground.json"
    meta.write_text(meta.read_text()[:20])  # a copy cut short
    with pytest.raises(ValueError, match=rf"{meta} is not a foreground scorer's metadata .*truncated"):
        ForegroundScorer.load(tmp_path / "fg")
    with pytest.raises(ValueError, match=r"foreground.json is not a foreground scorer's metadata"):
        generate_views(
            source(),
            gen_config(tmp_path / "v", foreground_artifacts=str(tmp_path / "fg")),
            components=components,
        )
    assert not (tmp_path / "v").exists()

    # a kill while the metadata is being written leaves no artifact that looks whole
    real_write_text = Path.write_text

    def killed_halfway(path, text, *args, **kwargs):
        real_write_text(path, text[: len(text) // 2], *args, **kwargs)
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(Path, "write_text", killed_halfway)
    with pytest.raises(KeyboardInterrupt):
        scorer.save(tmp_path / "fresh")
    monkeypatch.undo()
    assert not ForegroundScorer.exists(tmp_path / "fresh")
    assert not (tmp_path / "fresh" / "foreground.json").exists()
