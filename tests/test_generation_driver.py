"""The driver: a loadable folder, batch-size invariance, resume after a kill, push, the command line."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset, Features, Image, concatenate_datasets, load_dataset

from genview_hf.data.samples import shapes
from genview_hf.generation import NoisePolicy, ViewGenerationConfig, generate_views, row_seed
from genview_hf.generation import driver as driver_module
from genview_hf.generation.components import load_components
from genview_hf.generation.run import main

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / "recipes" / "configs" / "tiny_shapes_generate.yaml"
MODES = ["ic", "tc", "itc"]


def source_rows(num_rows=5):
    """shapes rows, then one row whose image bytes are corrupt."""
    data = shapes(num_rows=num_rows, image_size=32)
    broken = data.select([0]).cast_column("image", Image(decode=False))
    broken = Dataset.from_dict(
        {**broken.to_dict(), "image": [{"bytes": b"corrupt", "path": None}]},
        features=Features({**broken.features, "image": Image(decode=False)}),
    ).cast_column("image", Image())
    return concatenate_datasets([data, broken])


def config(folder, **overrides):
    settings = dict(
        output_dir=str(folder), unclip_model="tiny", text2img_model="tiny", modes=MODES, num_inference_steps=2,
        height=32, width=32, batch_size=2, shard_size=3, fg_sample_size=6, mixed_precision="no",
    )  # fmt: skip
    settings.update(overrides)
    return ViewGenerationConfig(**settings)


@pytest.fixture(scope="module")
def components():
    return load_components(config("unused"))


@pytest.fixture(scope="module")
def run(tmp_path_factory, components):
    folder = tmp_path_factory.mktemp("views")
    generate_views(source_rows(), config(folder), components=components)
    return folder


def loaded(folder):
    return load_dataset(str(folder), split="train")


def test_folder_loads_without_genview_hf(run):
    script = textwrap.dedent(
        f"""
        import json, sys
        import datasets
        ds = datasets.load_dataset({str(run)!r}, split="train")
        assert not any(name.startswith("genview_hf") for name in sys.modules), "genview_hf was imported"
        row = ds[0]
        print(json.dumps({{"n": len(ds), "features": {{k: repr(v) for k, v in ds.features.items()}},
                          "mask_mode": row["mask"].mode, "view": row["view_ic"].size}}))
        """
    )
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd="/")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout.strip().splitlines()[-1])
    features = info["features"]
    assert info["n"] == 6 and info["mask_mode"] == "L" and info["view"] == [32, 32]
    for column in ["image", "mask"] + [f"{kind}_{m}" for m in MODES for kind in ("view", "mask")]:
        assert features[column].startswith("Image(") and "decode=True" in features[column], column
    assert "float32" in features["fg_ratio"] and "int32" in features["noise_level"]
    assert "float32" in features["guidance_scale"] and "int8" in features["caption_complexity"]
    assert "int64" in features["seed"]
    assert "ClassLabel" in features["label"] and "source_mask" in features  # source columns pass through


def test_rows_follow_policies_and_failures_are_listed(run):
    views = loaded(run)
    for row in views.select(range(5)):
        assert row["noise_level"] == NoisePolicy()(row["fg_ratio"])
        assert row["guidance_scale"] == {1: 8, 2: 6, 3: 4, 4: 2}[row["caption_complexity"]]
    assert views["seed"] == [row_seed(0, i) for i in range(6)]
    assert (
        views[5]["view_ic"] is None
        and views[5]["mask"] is None
        and views[5]["image"] is None
        and views[5]["view_tc"] is not None
    )
    failures = [json.loads(line) for line in (run / "failures.jsonl").read_text().splitlines()]
    assert [f["row"] for f in failures] == [5] and "cannot be decoded" in failures[0]["reason"]
    card = (run / "README.md").read_text()
    assert "`view_itc`" in card and "(0.2, 0.4] -> 100" in card and "preview.png" in card
    assert (run / "preview.png").stat().st_size > 0 and not list((run / "data").glob(".tmp-*"))


def test_batch_size_does_not_change_rows(run, tmp_path, components):
    other = generate_views(
        source_rows(),
        config(tmp_path, batch_size=4, shard_size=6, foreground_artifacts=str(run / "foreground")),
        components=components,
    )
    a, b = loaded(run), loaded(other)
    assert a["noise_level"] == b["noise_level"] and a["seed"] == b["seed"]
    assert a["fg_ratio"][5] is None and b["fg_ratio"][5] is None
    np.testing.assert_allclose(a["fg_ratio"][:5], b["fg_ratio"][:5], atol=1e-6)
    for column in [f"view_{m}" for m in MODES]:
        for x, y in zip(a[column], b[column]):
            assert (x is None) == (y is None)
            if x is not None:
                assert np.abs(np.asarray(x, np.int16) - np.asarray(y, np.int16)).max() <= 2, column


def test_killed_run_resumes_to_the_full_dataset(tmp_path, monkeypatch):
    argv = [
        "--config", str(TINY_CONFIG), "--output_dir", str(tmp_path), "--max_rows", "4", "--shard_size", "2",
        "--modes", "ic", "--fg_sample_size", "4",
    ]  # fmt: skip
    real_write = driver_module.write_shard
    calls = []

    def dies_on_second_shard(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            tmp = tmp_path / "data" / ".tmp-train-00001-of-00002.parquet-p0-1"
            tmp.write_bytes(b"half a parquet file")  # what a kill mid-write leaves behind
            raise KeyboardInterrupt("killed")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(driver_module, "write_shard", dies_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        main(argv)
    shards = sorted(p.name for p in (tmp_path / "data").glob("train-*.parquet"))
    assert shards == ["train-00000-of-00002.parquet"] and not (tmp_path / "README.md").exists()
    first_mtime = (tmp_path / "data" / shards[0]).stat().st_mtime_ns

    calls.clear()
    monkeypatch.setattr(
        driver_module, "write_shard", lambda *a, **k: calls.append(a[1]) or real_write(*a, **k)
    )
    assert main(argv) == 0
    assert calls == [1]  # the finished shard is skipped
    assert (tmp_path / "data" / shards[0]).stat().st_mtime_ns == first_mtime
    views = loaded(tmp_path)
    assert views["seed"] == [row_seed(0, i) for i in range(4)]  # every row once, in order
    assert views["label"] == shapes(num_rows=4)["label"]
    assert all(v is not None for v in views["view_ic"]) and not list((tmp_path / "data").glob(".tmp-*"))

    with pytest.raises(ValueError, match="other settings.*seed"):
        main(argv + ["--seed", "1"])


class FakeApi:
    def __init__(self, fail=False):
        self.calls, self.fail = [], fail

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        if self.fail:
            raise ConnectionError("network down")
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        return "https://huggingface.co/datasets/user/views/commit/1"


def test_push_uploads_the_assembled_folder(run, components):
    before = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    api = FakeApi()
    settings = config(run, push_to_hub="user/views", private=True, revision="v1", commit_message="views")
    generate_views(
        source_rows(), settings, components=components, api=api
    )  # all shards done: assemble + push
    kinds = [c[0] for c in api.calls]
    assert kinds == ["create_repo", "create_branch", "upload_folder"]
    assert api.calls[0][2]["repo_type"] == "dataset" and api.calls[0][2]["private"] is True
    upload = api.calls[2][2]
    assert (
        Path(upload["folder_path"]) == run
        and upload["revision"] == "v1"
        and upload["commit_message"] == "views"
    )
    assert ".work/*" in upload["ignore_patterns"]
    assert "user/views" in (run / "README.md").read_text()

    with pytest.raises(ConnectionError):
        generate_views(source_rows(), settings, components=components, api=FakeApi(fail=True))
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == before  # the folder stays whole
    assert len(loaded(run)) == 6


def test_bad_input_is_named(tmp_path, components):
    data = shapes(num_rows=2, image_size=32)
    with pytest.raises(KeyError, match="picture"):
        generate_views(data, config(tmp_path, image_column="picture"), components=components)
    with pytest.raises(KeyError, match="caption"):
        generate_views(data.remove_columns("caption"), config(tmp_path), components=components)
    with pytest.raises(ValueError, match="unknown generation mode"):
        config(tmp_path, modes=["ic", "video"])


def test_help_lists_every_setting(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--push-to-hub", "--private", "--revision", "--commit-message", "--max_rows", "--modes"):
        assert flag in text


def test_input_from_sample_saved_folder_and_load_dataset_folder(run, tmp_path):
    from genview_hf.generation import load_input

    assert len(load_input(ViewGenerationConfig(dataset="sample:shapes"))) == 240
    shapes(num_rows=3, image_size=16).save_to_disk(str(tmp_path / "saved"))
    assert len(load_input(ViewGenerationConfig(dataset=str(tmp_path / "saved")))) == 3
    again = load_input(ViewGenerationConfig(dataset=str(run)))  # a views folder is itself an input
    assert len(again) == 6 and "view_ic" in again.column_names


def test_map_workers_with_rank_give_the_same_rows(run, tmp_path, components):
    """num_proc=2: each map worker builds its own pipelines (on GPU `rank` when there are GPUs)."""
    settings = config(tmp_path, num_proc=2, foreground_artifacts=str(run / "foreground"))
    other = generate_views(source_rows(), settings, components=components)
    a, b = loaded(run), loaded(other)
    assert a["seed"] == b["seed"] and a["noise_level"] == b["noise_level"]
    for column in [f"view_{m}" for m in MODES]:
        for x, y in zip(a[column], b[column]):
            assert (x is None) == (y is None)
            if x is not None:
                assert np.abs(np.asarray(x, np.int16) - np.asarray(y, np.int16)).max() <= 2, column
