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
