import subprocess
import sys

import genview_hf


def test_every_public_name_resolves():
    for name in genview_hf.__all__:
        assert getattr(genview_hf, name) is not None, name


def test_import_is_light():
    code = "import sys, genview_hf; print(any(m in sys.modules for m in ('diffusers', 'datasets', 'torch')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
