"""Tests of genview_hf.config (``parse_config``): YAML values then flags, later files over earlier ones,
unknown keys and unknown ``tiny:NAME`` components named, and a YAML value of the wrong type named with
its key and file (booleans read as the word they spell where a setting takes words)."""

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from genview_hf.config import ScriptArguments, parse_config
from genview_hf.generation import ViewGenerationConfig
from genview_hf.testing import tiny_path
from genview_hf.training import GenViewTrainingArguments, ModelArguments
from recipe_runs import SSL_CONFIG, short_run

TRAIN = (ScriptArguments, GenViewTrainingArguments, ModelArguments)  # the train recipe's settings


@dataclass
class RunSettings:
    name: str = field(metadata={"help": "required"})
    steps: int = 10
    rate: float = 0.5


def test_yaml_values_then_flags_override(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: tiny\nsteps: 3\n")
    (settings,) = parse_config((RunSettings,), ["--config", str(path), "--rate", "0.25"])
    assert (settings.name, settings.steps, settings.rate) == ("tiny", 3, 0.25)
    (settings,) = parse_config((RunSettings,), [f"--config={path}", "--steps", "7"])
    assert settings.steps == 7


def test_unknown_yaml_key_is_named(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: tiny\nstpes: 3\n")
    with pytest.raises(ValueError, match="stpes"):
        parse_config((RunSettings,), ["--config", str(path)])


def write_yaml(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "line, message",
    [
        ("max_steps: 2.5", r"max_steps: must be a whole number, got 2.5"),
        ("learning_rate: fast", r"learning_rate: must be a number, got 'fast'"),
        ("per_device_train_batch_size: true", r"per_device_train_batch_size: must be a number, got True"),
        ("use_hallucinator: maybe", r"use_hallucinator: must be true or false, got 'maybe'"),
        ("quality_mode: sometimes", r"quality_mode: must be one of frozen, stored, off, got 'sometimes'"),
        ("dataset_name: no", r"dataset_name: must be text, got False \(YAML reads off/no/on/yes unquoted"),
    ],
)
def test_a_yaml_value_of_the_wrong_type_names_the_key_and_file(tmp_path, line, message):
    config = write_yaml(tmp_path / "mine.yaml", line + "\n")
    with pytest.raises(ValueError, match=rf"{config}: {message}"):
        short_run(tmp_path / "run", "--config", config)
    assert not (tmp_path / "run").exists()


def test_yaml_booleans_where_a_setting_takes_words_are_read_as_the_word_they_spell(tmp_path):
    train = write_yaml(tmp_path / "train.yaml", "quality_mode: off\neval_strategy: no\nmax_steps: 3.0\n")
    argv = ["--config", str(SSL_CONFIG), "--config", train, "--output_dir", str(tmp_path / "run")]
    _, args, _ = parse_config(TRAIN, argv)
    assert (args.quality_mode, args.eval_strategy, args.max_steps) == ("off", "no", 3)
    views = write_yaml(tmp_path / "views.yaml", "modes: ic\n")  # one value for a list setting
    _, config = parse_config(
        (ScriptArguments, ViewGenerationConfig),
        ["--config", views, "--output_dir", "v", "--dataset_name", "sample:shapes", "--unclip_model", "u"],
    )
    assert config.modes == ["ic"]


def test_an_unknown_tiny_component_is_named_with_its_setting(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("model_name_or_path: tiny:vitt\n")
    with pytest.raises(ValueError, match=r"mine\.yaml: model_name_or_path: unknown tiny component 'vitt'"):
        parse_config(TRAIN, ["--config", str(config)])
    with pytest.raises(ValueError, match=r"--quality_model: unknown tiny component 'clop'"):
        parse_config(TRAIN, ["--quality_model=tiny:clop"])
    argv = [
        "--quality_model",
        "tiny:clip",
        "--model_name_or_path",
        "tiny:vit",
        "--dataset_name",
        "sample:shapes",
    ]
    _, args, model_args = parse_config(TRAIN, [*argv, "--use_cpu", "true"])
    assert (args.quality_model, model_args.model_name_or_path) == (
        str(tiny_path("clip")),
        str(tiny_path("vit")),
    )


def test_later_config_files_override_earlier_ones_and_flags_override_both(tmp_path):
    base, override = tmp_path / "base.yaml", tmp_path / "override.yaml"
    base.write_text(
        "method: simsiam\nlearning_rate: 0.1\nmax_steps: 50\ndataset_name: x\nmodel_name_or_path: y\n"
    )
    override.write_text("learning_rate: 0.5\nmax_steps: 7\n")
    argv = ["--config", str(base), f"--config={override}", "--max_steps", "3", "--use_cpu", "true"]
    _, args, _ = parse_config(TRAIN, argv)
    assert (args.method, args.learning_rate, args.max_steps) == ("simsiam", 0.5, 3)
    override.write_text("learning_rate: 0.5\nlerning_rate: 0.2\n")
    with pytest.raises(ValueError, match=r"override\.yaml: unknown settings lerning_rate"):
        parse_config(TRAIN, ["--config", str(base), "--config", str(override)])
    with pytest.raises(ValueError, match="--config needs a YAML file path"):
        parse_config(TRAIN, ["--config", str(base), "--config"])
