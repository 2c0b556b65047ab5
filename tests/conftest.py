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
