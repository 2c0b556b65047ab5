"""Suite-wide settings: everything runs offline, on the CPU, with few threads.

``GENVIEW_TEST_THREADS`` sets torch's thread count (default: 2, or fewer cores): the suite must
pass with 1 and with 2, since a float32 reduction may be summed in another order with another
count (CONTRIBUTING.md: how the numeric tests derive their tolerances).
"""

import os

# huggingface_hub reads these at import time, so set them before anything imports it.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("GENVIEW_TEST_THREADS") or min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)


# `genview demo` reduced to seconds: the whole job (generate -> train -> evaluate) on few rows and steps.
REDUCED_DEMO = [
    "--max-rows",
    "16",
    "--max-steps",
    "4",
    "--clip-steps",
    "2",
    "--batch-size",
    "8",
    "--controlled-rows",
    "48",
]


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """One reduced demo run shared by the demo, card and interop tests: (output folder, printed output)."""
    import contextlib
    import io

    from genview_hf import cli

    output_dir = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["demo", "--output-dir", str(output_dir), *REDUCED_DEMO]) == 0
    return output_dir, printed.getvalue()


# The generation fault tests share these (tests/generation/test_driver_guards.py, tests/data/test_integrity.py,
# tests/generation/test_lock.py, tests/test_preflight.py); a module may define its own (generation/test_driver.py).
@pytest.fixture(scope="module")
def components():
    """The tiny generation components (unCLIP img2img for the ic views, text2img for the tc views)."""
    from genview_hf.generation import load_components
    from recipe_runs import gen_config

    return load_components(gen_config("unused", modes=["ic", "tc"]))


@pytest.fixture
def views(tmp_path, components):
    """A finished views folder of 4 rows in 2 shards."""
    from genview_hf.generation import generate_views
    from recipe_runs import gen_config, source

    return generate_views(
        source(), gen_config(tmp_path / "views"), dataset_name="shapes", components=components
    )


@pytest.fixture(scope="module")
def clip_processor():
    """The tiny CLIP's processor (image processor and tokenizer) of the zero-shot, retrieval and evaluate tests."""
    from transformers import CLIPProcessor

    from genview_hf.testing import tiny_clip_tokenizer
    from genview_hf.testing.tiny_models import tiny_clip_image_processor

    return CLIPProcessor(image_processor=tiny_clip_image_processor(), tokenizer=tiny_clip_tokenizer())
