"""The wheel ships every module, the card templates, the recipes and their configs, the benchmarks, and finds them
installed."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What a build reads is copied; what it writes (build/, *.egg-info) stays out of the repository.
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", "outputs"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the working tree, offline, with the environment's setuptools."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=NOT_COPIED)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    built = subprocess.run(
        [*command, "--quiet", "-w", str(tmp / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    [path] = (tmp / "dist").glob("genview_hf-*.whl")
    return path


def expected_files() -> dict[str, Path]:
    """Wheel path -> source file, for everything the package must carry."""
    expected = {}
    for path in (ROOT / "src" / "genview_hf").rglob("*.py"):
        expected["genview_hf/" + path.relative_to(ROOT / "src" / "genview_hf").as_posix()] = path
    for folder, package, patterns in (
        ("hub_cards", "hub_cards", ("*.py", "*.md")),
        ("recipes", "recipes", ("*.py", "configs/**/*.yaml")),
        ("benchmarks", "benchmarks", ("*.py",)),  # the demo reads the efficacy benchmark's settings
    ):
        for pattern in patterns:
            for path in (ROOT / folder).glob(pattern):
                expected[f"genview_hf/{package}/" + path.relative_to(ROOT / folder).as_posix()] = path
    return expected


def test_wheel_holds_every_module_template_and_recipe(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = expected_files()
    # the named pieces exist in the source, so the comparison below cannot pass on an empty tree
    for required in (
        "genview_hf/hub_cards/model_card.md",
        "genview_hf/hub_cards/dataset_card.md",
        "genview_hf/hub.py",
        "genview_hf/evaluation/card.py",
    ):
        assert required in expected, f"{required} is missing from the source tree"
    assert any(name.startswith("genview_hf/recipes/configs/") for name in expected)
    assert any(
        name.startswith("genview_hf/evaluation/metrics/") and name.count("/") == 4 for name in expected
    )
    assert sum(name.startswith("genview_hf/recipes/") and name.endswith(".py") for name in expected) >= 2
    assert "genview_hf/benchmarks/efficacy_settings.py" in expected
    missing = sorted(set(expected) - names)
    assert not missing, f"the wheel lacks {missing} (pyproject.toml's packages / package-data)"


def test_installed_wheel_finds_its_templates(wheel, tmp_path):
    """Unpacked alone on the path, the package reads its card templates and recipe configs from itself."""
    zipfile.ZipFile(wheel).extractall(tmp_path)
    script = (
        "from importlib import resources\n"
        "import genview_hf\n"
        "from genview_hf import hub\n"
        "print(genview_hf.__file__)\n"
        "print(hub.card_template_path('model_card'))\n"
        "print(hub.card_template_path('dataset_card'))\n"
        "print(resources.files('genview_hf.recipes').joinpath('configs'))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    paths = [Path(line) for line in run.stdout.splitlines()]
    assert len(paths) == 4
    for path in paths:
        assert path.is_relative_to(tmp_path), f"{path} is read from outside the installed wheel"
        assert path.exists()
    yamls = {path.name for path in paths[3].glob("*.yaml")}
    assert yamls == {path.name for path in (ROOT / "recipes" / "configs").glob("*.yaml")} and yamls
