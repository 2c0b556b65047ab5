"""Tests of genview_hf.generation.config (``ViewGenerationConfig``): no model defaults, so a pipeline
the run needs and is not given is refused up front with the papers' choice; a withdrawn Stable
Diffusion 2 id is refused with its mirror, a local folder of that name is fine."""

import pytest

from genview_hf.generation import ViewGenerationConfig
from genview_hf.generation.config import PAPER_MODELS


@pytest.mark.parametrize(
    "settings, missing, needed_by",
    [
        (dict(modes=["ic"]), "unclip_model", "mode ic and the foreground scorer"),
        (dict(modes=["tc"], unclip_model="unclip"), "text2img_model", "mode tc needs it"),
        (dict(modes=["tc"], text2img_model="sd"), "unclip_model", "the foreground scorer"),
    ],
)
def test_a_pipeline_the_run_needs_and_is_not_given_is_named_with_the_papers_choice(
    settings, missing, needed_by
):
    """No model defaults in the library: the configs name the pipelines, a missing one is refused up front."""
    with pytest.raises(
        ValueError, match=rf"{missing} is not set, and {needed_by}.*--{missing} {PAPER_MODELS[missing]}"
    ):
        ViewGenerationConfig(**settings)
    # a tc-only run with its own scorer encoder loads no unCLIP pipeline and needs none
    assert ViewGenerationConfig(modes=["tc"], text2img_model="sd", scorer_model="clip").unclip_model is None


def test_a_local_folder_named_like_a_withdrawn_repo_is_fine(tmp_path, monkeypatch):
    (tmp_path / "stabilityai" / "stable-diffusion-2-1").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert ViewGenerationConfig(
        modes=["tc"], text2img_model="stabilityai/stable-diffusion-2-1", scorer_model="clip"
    ).text2img_model
