"""Tests of genview_hf.training.trainer's checkpoints and resume: a resumed run is bit-identical to
an uninterrupted one (stopped, killed, killed during a save, with row memory, with dataloader workers),
a damaged or foreign checkpoint is named or passed over, a full disk while saving is named, no hub
token is written into a checkpoint."""

import logging
import shutil

import pytest
import torch
from transformers import TrainerCallback

from genview_hf.integrity import DamagedFileError
from genview_hf.training.trainer import missing_checkpoint_files
from recipe_runs import (
    KillAt,
    StopAt,
    assert_identical,
    checkpoint_tensors,
    recipe,
    short_run,
    tiny_filesystem,
    truncate,
)
from training_helpers import full_state, make_args, make_trainer


@pytest.mark.parametrize("method", ["mocov2", "byol"])
def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, method):
    settings = dict(max_steps=4, save_strategy="steps", save_steps=2)
    model = dict(use_hallucinator=method == "byol")
    full = make_trainer(make_args(tmp_path / "full", method, **settings), **model)
    full.train()
    reference = full_state(full.model)

    interrupted = make_trainer(make_args(tmp_path / "cut", method, **dict(settings, max_steps=4)), **model)

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                control.should_training_stop = True

    interrupted.add_callback(Stop())
    interrupted.train()
    checkpoint = tmp_path / "cut" / "checkpoint-2"
    assert checkpoint.is_dir()
    resumed = make_trainer(make_args(tmp_path / "cut", method, **settings), **model)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    state = full_state(resumed.model)
    assert set(state) == set(reference)
    for name, value in reference.items():
        torch.testing.assert_close(state[name], value, rtol=0, atol=0, msg=name)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    recipe(folder)
    return checkpoint_tensors(folder / "checkpoint-6")


def fails_as_a_full_disk(*args, **kwargs):
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")


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


# ------------------------------------------------------------------ damaged files: named, and the intact checkpoint used
@pytest.mark.parametrize("damaged", ["optimizer.pt", "model.safetensors"])
def test_a_truncated_file_in_the_newest_checkpoint_resumes_from_the_newest_intact_one(
    tmp_path,
    damaged,
    uninterrupted,
    caplog,
):
    recipe(tmp_path, callbacks=[StopAt(4)])
    truncate(tmp_path / "checkpoint-4" / damaged)
    with pytest.raises(
        DamagedFileError, match=rf"checkpoint file {tmp_path / 'checkpoint-4' / damaged} is damaged"
    ):
        recipe(tmp_path, "--resume_from_checkpoint", str(tmp_path / "checkpoint-4"))
    with caplog.at_level(logging.WARNING):
        recipe(tmp_path, "--resume_from_checkpoint", "true")  # from checkpoint-2
    assert f"passing over {tmp_path / 'checkpoint-4'}: its {damaged} is damaged" in caplog.text
    assert_identical(tmp_path / "checkpoint-6", uninterrupted)


def test_a_full_disk_while_saving_a_checkpoint_is_an_enospc_naming_it(tmp_path, monkeypatch, caplog):
    with tiny_filesystem(tmp_path / "disk", "96k") as disk:
        if disk is None:  # torch's writer on a full disk, and a disk with nothing free
            monkeypatch.setattr(torch, "save", fails_as_a_full_disk)
            monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, 0))
        out = (disk or tmp_path) / "run"
        with pytest.raises(
            OSError,
            match=rf"No space left on device while writing checkpoint-2 in {out} \(file written last: {out}/",
        ):
            short_run(out)
        # what is kept: the incomplete checkpoint is passed over by a resume, naming why
        monkeypatch.undo()
        assert (out / "checkpoint-2").is_dir() and missing_checkpoint_files(out / "checkpoint-2")
