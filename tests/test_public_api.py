import subprocess
import sys

import genview_hf


def test_every_public_name_resolves():
    for name in genview_hf.__all__:
        assert getattr(genview_hf, name) is not None, name


def test_import_is_light_and_registers_the_wrappers(tmp_path):
    code = "import sys, genview_hf; print(any(m in sys.modules for m in ('diffusers', 'datasets')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    from transformers import AutoConfig, AutoModel

    from genview_hf.testing import tiny_vit

    model = genview_hf.GenViewModel.from_backbone(tiny_vit()[0], method="byol", proj_hidden_dim=8, proj_dim=4)
    model.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).method == "byol"
    assert type(AutoModel.from_pretrained(tmp_path)) is genview_hf.GenViewModel


def test_tiny_components_are_saved_atomically(tmp_path):
    from genview_hf.testing import tiny_clip_tokenizer
    from genview_hf.testing.tiny_models import save_atomically

    first = tiny_clip_tokenizer(tmp_path / "tok")
    # a second build of the same folder (another process finishing later) leaves the first one whole
    save_atomically(tmp_path / "tok", first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]  # no staging folder left behind
    assert tiny_clip_tokenizer(tmp_path / "tok").get_vocab() == first.get_vocab()
