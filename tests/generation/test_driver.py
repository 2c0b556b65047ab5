"""The driver and its recipe: a loadable folder, its card, batch-size invariance, resume after a kill,
the resume guard, push (the shipped configs run in tests/recipes/test_configs.py)."""

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, Features, Image, concatenate_datasets, load_dataset
from huggingface_hub import DatasetCard

from genview_hf.config import ScriptArguments, parse_config
from genview_hf.data.loading import load_split
from genview_hf.generation import (
    ForegroundScorer,
    NoisePolicy,
    ViewGenerationConfig,
    generate_views,
    load_components,
    row_seed,
)
from genview_hf.generation import driver as driver_module
from genview_hf.recipes.generate_views import cli
from genview_hf.testing import tiny_path
from genview_hf.testing.samples import shapes

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "recipes" / "configs"
TINY_CONFIG = CONFIGS / "tiny_shapes_generate.yaml"
UNCLIP = str(tiny_path("unclip-img2img"))
TEXT2IMG = str(tiny_path("text2img"))
TINY_MODELS = ["--unclip_model", UNCLIP, "--text2img_model", TEXT2IMG]  # the config names folders to build
MODES = ["ic", "tc", "itc"]
SOURCE_NAME = "shapes-with-a-corrupt-row"


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
        output_dir=str(folder), unclip_model=UNCLIP, text2img_model=TEXT2IMG, modes=MODES, num_inference_steps=2,
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
    generate_views(source_rows(), config(folder), dataset_name=SOURCE_NAME, components=components)
    return folder


def loaded(folder):
    return load_dataset(str(folder), split="train")


def listing(folder):
    """Every file under ``folder`` with its bytes: a refused run must leave all of them as they were."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


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
    assert [f["row"] for f in failures] == [5]
    assert failures[0]["reason"].startswith("row 5, column 'image': cannot decode the image")
    assert (run / "preview.png").stat().st_size > 0 and not list((run / "data").glob(".tmp-*"))


def test_card_round_trips_and_reproduces_the_run(run, tmp_path):
    card = DatasetCard.load(run / "README.md")
    data = card.data
    assert data.pretty_name == f"{SOURCE_NAME} generated views (ic, tc, itc)"
    assert data.size_categories == ["n<1K"] and "genview" in data.tags
    assert data.license == "apache-2.0"  # carried from the shapes rows' DatasetInfo
    assert data.task_categories == ["image-feature-extraction", "image-to-image", "text-to-image"]
    assert data.source_datasets == ["extended"]  # a local source: no Hub id to name
    assert data.configs == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}
    ]
    info = data.dataset_info
    assert info["splits"] == [{"name": "train", "num_bytes": info["dataset_size"], "num_examples": 6}]
    assert info["download_size"] == sum(p.stat().st_size for p in (run / "data").glob("train-*.parquet"))
    assert [f["name"] for f in info["features"]] == loaded(run).column_names
    text = card.text
    assert "| 6 | ic, tc, itc | 1 | 2 |" in text  # rows, modes, rows with a failure, shards
    assert "| `view_itc` | generated view, image+text-conditioned" in text and "| `source_mask` |" in text
    assert (
        f"| unCLIP img2img | `{UNCLIP}` |" in text
        and "[0, 0.2] -> 0, (0.2, 0.4] -> 100" in text
        and "preview.png" in text
    )
    assert 'load_dataset("path/to/this/folder", split="train")' in text  # not pushed: no Hub id to show
    assert "accelerate launch recipes/generate_views.py --config <config.yaml>" in text

    # the reproduce block is a --config file that gives back the run's settings
    block = re.search(r"```yaml\n(.*?)\n```", text, re.S).group(1)
    (tmp_path / "config.yaml").write_text(block)
    script_args, again = parse_config(
        (ScriptArguments, ViewGenerationConfig), ["--config", str(tmp_path / "config.yaml")]
    )
    assert script_args.dataset_name == SOURCE_NAME and again == config(run)


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
        "--config", str(TINY_CONFIG), *TINY_MODELS, "--output_dir", str(tmp_path), "--max_rows", "4",
        "--shard_size", "2", "--modes", "ic", "--fg_sample_size", "4",
    ]  # fmt: skip
    real_write = driver_module.write_shard
    calls = []

    def dies_on_second_shard(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            tmp = tmp_path / ".work" / "shards" / ".tmp-train-00001-of-00002.parquet-p0-1"
            tmp.write_bytes(b"half a parquet file")  # what a kill mid-write leaves behind
            raise KeyboardInterrupt("killed")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(driver_module, "write_shard", dies_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        cli(argv)
    # the finished shard waits in .work/: an unfinished folder holds nothing a reader would load
    shards = sorted(p.name for p in (tmp_path / ".work" / "shards").glob("train-*.parquet"))
    assert shards == ["train-00000-of-00002.parquet"] and [p.name for p in tmp_path.iterdir()] == [".work"]
    first_mtime = (tmp_path / ".work" / "shards" / shards[0]).stat().st_mtime_ns

    calls.clear()
    monkeypatch.setattr(
        driver_module, "write_shard", lambda *a, **k: calls.append(a[1]) or real_write(*a, **k)
    )
    assert cli(argv) == 0
    assert calls == [1]  # the finished shard is skipped
    assert (tmp_path / "data" / shards[0]).stat().st_mtime_ns == first_mtime
    views = loaded(tmp_path)
    assert views["seed"] == [row_seed(0, i) for i in range(4)]  # every row once, in order
    assert views["label"] == load_split("sample:shapes", "train", max_rows=4)["label"]
    assert all(v is not None for v in views["view_ic"]) and not list(tmp_path.rglob(".tmp-*"))
    record = json.loads((tmp_path / ".work" / "run.json").read_text())
    assert record["dataset_name"] == "sample:shapes" and record["num_rows"] == 4
    assert record["dataset_fingerprint"] == load_split("sample:shapes", "train")._fingerprint

    # other settings or another dataset in the same folder: refused by name, nothing touched
    before = listing(tmp_path)
    with pytest.raises(ValueError, match=r"other settings \(seed\)"):
        cli(argv + ["--seed", "1"])
    with pytest.raises(ValueError, match=r"other settings \(dataset_fingerprint, dataset_name\)"):
        cli(argv + ["--dataset_name", "sample:digits"])
    same_settings = config(tmp_path, modes=["ic"], shard_size=2)
    with pytest.raises(ValueError, match=r"other settings \(dataset_fingerprint\)"):
        generate_views(shapes(num_rows=4, seed=1), same_settings, dataset_name="sample:shapes")
    assert listing(tmp_path) == before


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


def test_push_uploads_the_assembled_folder(run, components, tmp_path):
    # a copy: pushing re-assembles the folder with a Hub id in its card, which the shared run must not get
    run = Path(shutil.copytree(run, tmp_path / "views"))
    before = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    api = FakeApi()
    settings = config(
        run,
        push_to_hub=True,
        hub_dataset_id="user/views",
        hub_private_repo=True,
        hub_revision="v1",
        hub_commit_message="views",
    )
    # all shards done: assemble + push
    generate_views(source_rows(), settings, dataset_name=SOURCE_NAME, components=components, api=api)
    kinds = [c[0] for c in api.calls]
    assert kinds == ["create_repo", "create_branch", "upload_folder"]
    assert api.calls[0][1] == "user/views"
    assert api.calls[0][2]["repo_type"] == "dataset" and api.calls[0][2]["private"] is True
    upload = api.calls[2][2]
    assert (
        Path(upload["folder_path"]) == run
        and upload["revision"] == "v1"
        and upload["commit_message"] == "views"
    )
    assert ".work/*" in upload["ignore_patterns"]
    assert 'load_dataset("user/views", split="train")' in (run / "README.md").read_text()

    with pytest.raises(ConnectionError):
        generate_views(
            source_rows(), settings, dataset_name=SOURCE_NAME, components=components, api=FakeApi(fail=True)
        )
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == before  # the folder stays whole
    assert len(loaded(run)) == 6


def test_hub_dataset_id_defaults_to_the_output_folder_name(tmp_path):
    assert config(tmp_path / "my-views", push_to_hub=True).hub_dataset_id == "my-views"
    assert config(tmp_path / "my-views").hub_dataset_id is None  # not pushing: nothing to name


def test_bad_input_is_named_before_anything_is_written(tmp_path, components):
    data = shapes(num_rows=2, image_size=32)
    with pytest.raises(KeyError, match="picture"):
        generate_views(data, config(tmp_path / "a", image_column="picture"), components=components)
    with pytest.raises(KeyError, match="caption"):
        generate_views(data.remove_columns("caption"), config(tmp_path / "b"), components=components)
    with pytest.raises(ValueError, match="unknown generation mode"):
        config(tmp_path, modes=["ic", "video"])
    other_grid = ForegroundScorer(direction=torch.ones(32), threshold=0.0, grid=(4, 4))
    other_grid.save(tmp_path.parent / f"{tmp_path.name}-fg")
    with pytest.raises(
        ValueError, match=r"foreground_artifacts .* \(4, 4\) token grid, the encoder has \(8, 8\)"
    ):
        artifacts = str(tmp_path.parent / f"{tmp_path.name}-fg")
        generate_views(data, config(tmp_path / "c", foreground_artifacts=artifacts), components=components)
    assert not list(tmp_path.iterdir())
    with pytest.raises(SystemExit):  # fixed choices are checked by the parser
        cli(["--mixed_precision", "fp8"])


def test_help_lists_every_setting(capsys):
    with pytest.raises(SystemExit) as stop:
        cli(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    flags = (
        "--dataset_name", "--dataset_config", "--dataset_train_split", "--push_to_hub", "--hub_dataset_id",
        "--hub_private_repo", "--hub_revision", "--hub_commit_message", "--max_rows", "--modes",
        "--scorer_model",
    )  # fmt: skip
    for flag in flags:
        assert flag in text, flag
    assert "{no,fp16,bf16}" in text


def test_the_recipe_reads_samples_saved_folders_and_views_folders(run, tmp_path):
    assert "image" in load_split("sample:shapes", "train").column_names
    shapes(num_rows=3, image_size=16).save_to_disk(str(tmp_path / "saved"))
    assert len(load_split(str(tmp_path / "saved"), "train")) == 3
    again = load_split(str(run), "train")  # a views folder is itself an input
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


class CountingPipeline:
    """A pipeline that records the size of each call."""

    def __init__(self, pipe):
        self.pipe, self.sizes = pipe, []

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __call__(self, **kwargs):
        self.sizes.append(len(kwargs["prompt"]))
        return self.pipe(**kwargs)


def test_a_shard_is_generated_in_full_calls_per_noise_level(run, tmp_path, components):
    """The driver hands the generator a whole shard: each noise level's rows fill calls of batch_size."""
    from genview_hf.generation.components import Components
    from genview_hf.generation.views import pipeline_batches

    counting = CountingPipeline(components.unclip)
    settings = config(tmp_path, modes=["ic"], shard_size=6, foreground_artifacts=str(run / "foreground"))
    generate_views(source_rows(), settings, components=Components(components.encoder, unclip=counting))
    levels = loaded(tmp_path)["noise_level"]
    keys = {row: (level, 10.0) for row, level in enumerate(levels) if level is not None}
    assert counting.sizes == [len(rows) for _, rows in pipeline_batches(keys, batch_size=2)]
    per_batch = [  # what map batches of batch_size made before: one call per level in each batch
        len(rows)
        for start in range(0, 6, 2)
        for _, rows in pipeline_batches({r: k for r, k in keys.items() if start <= r < start + 2}, 2)
    ]
    assert sum(counting.sizes) == sum(per_batch) == 5 and len(counting.sizes) <= len(per_batch)
