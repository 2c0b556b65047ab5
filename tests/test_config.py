from dataclasses import dataclass, field

import pytest

from genview_hf.config import parse_config


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
