"""Shared pieces of the checkpoint, resume and fault tests: the training and generation recipes
run on a few shapes rows with tiny components, checkpoints compared tensor by tensor, callbacks that
stop or kill a run at a step, and the tools that make a fault happen (truncate a file, a read-only
folder, a small filesystem)."""

import contextlib
import subprocess
from pathlib import Path

import safetensors.torch
import torch
from datasets import Dataset, Features, Image, Value
from transformers import TrainerCallback

from genview_hf.config import ScriptArguments, parse_config
from genview_hf.generation import ViewGenerationConfig
from genview_hf.recipes import clip_genview, train_genview
from genview_hf.recipes.generate_views import cli as generate_cli
from genview_hf.recipes.train_genview import main as train_main
from genview_hf.testing import tiny_path
from genview_hf.testing.samples import shapes
from genview_hf.training import GenViewTrainingArguments, ModelArguments

ROOT = Path(__file__).resolve().parents[1]


SSL_CONFIG = ROOT / "recipes" / "configs" / "tiny_mocov3_shapes.yaml"


# ------------------------------------------------------------------ exact resume through the recipe
def recipe(output_dir, *flags, callbacks=None):
    """The training recipe on 12 shapes rows, batch 4: 3 steps an epoch, 6 steps, checkpoints every 2."""
    argv = [
        "--config", str(SSL_CONFIG), "--model_name_or_path", str(tiny_path("vit")), "--output_dir", str(output_dir),
        "--knn_monitor_split", "", "--training_figures", "false", "--max_train_samples", "12",
        "--per_device_train_batch_size", "4", "--max_steps", "6", "--save_steps", "2", "--logging_steps", "1",
        "--disable_tqdm", "true", *flags,
    ]  # fmt: skip
    # Each run starts as a fresh process would: the recipe builds the model before the Trainer seeds.
    torch.manual_seed(0)
    arguments = parse_config((ScriptArguments, GenViewTrainingArguments, ModelArguments), argv)
    return train_main(*arguments, callbacks=callbacks)


def checkpoint_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor a checkpoint holds: the model's (encoders, heads, momentum encoder, queue) and the optimizer's."""
    tensors = {
        f"model.{k}": v for k, v in safetensors.torch.load_file(str(folder / "model.safetensors")).items()
    }
    optimizer = torch.load(folder / "optimizer.pt", weights_only=True)
    for index, state in optimizer["state"].items():
        tensors.update({f"optimizer.{index}.{k}": v for k, v in state.items() if isinstance(v, torch.Tensor)})
    return tensors


def assert_identical(folder: Path, reference: dict[str, torch.Tensor]) -> None:
    tensors = checkpoint_tensors(folder)
    assert tensors.keys() == reference.keys()
    different = [name for name, value in reference.items() if not torch.equal(tensors[name], value)]
    assert not different, f"{len(different)} of {len(reference)} tensors differ, e.g. {different[:3]}"


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


class KillAt(TrainerCallback):
    """Dies at the start of the step after ``step`` (a kill between two steps)."""

    def __init__(self, step):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("killed")


# ------------------------------------------------------------------ generation: guards and unfinished folders
UNCLIP, TEXT2IMG = str(tiny_path("unclip-img2img")), str(tiny_path("text2img"))


def gen_config(folder, **overrides) -> ViewGenerationConfig:
    settings = dict(
        output_dir=str(folder), unclip_model=UNCLIP, text2img_model=TEXT2IMG, modes=["ic"], num_inference_steps=2,
        height=32, width=32, batch_size=2, shard_size=2, fg_sample_size=4, mixed_precision="no",
    )  # fmt: skip
    settings.update(overrides)
    return ViewGenerationConfig(**settings)


def source(num_rows: int = 4) -> Dataset:
    data = shapes(num_rows=num_rows, image_size=32)
    features = Features({**data.features, "picture": Image(), "alt_caption": Value("string")})
    return data.map(lambda row: {"picture": row["image"], "alt_caption": row["caption"]}, features=features)


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut ``path`` to ``keep`` of its size (a copy or a write that did not finish)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# ------------------------------------------------------------------ one run per output folder
def short_run(output_dir, *flags, callbacks=None):
    """The training recipe for 2 steps (a checkpoint at step 2) on the shapes set, quality_mode stored."""
    return recipe(output_dir, "--max_steps", "2", *flags, callbacks=callbacks)


# ------------------------------------------------------------------ refused at the edge, before any work
GENERATE_CONFIG = ROOT / "recipes" / "configs" / "tiny_shapes_generate.yaml"


def generate(output_dir, *flags):
    """The generation recipe on 4 shapes rows, tiny components."""
    argv = [
        "--config", str(GENERATE_CONFIG), "--output_dir", str(output_dir), "--max_rows", "4", "--shard_size", "2",
        "--fg_sample_size", "4", "--unclip_model", UNCLIP, "--text2img_model", TEXT2IMG, *flags,
    ]  # fmt: skip
    return generate_cli(argv)


@contextlib.contextmanager
def tiny_filesystem(folder: Path, size: str):
    """``folder`` on a ``size`` tmpfs where the test may mount one; None where it may not (the test
    then patches a writer to fail as a full disk does)."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    )
    try:
        yield folder if mounted.returncode == 0 else None
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", "--lazy", str(folder)], check=True)


CONFIGS = Path(__file__).resolve().parents[1] / "recipes" / "configs"


TINY = dict(ssl=str(CONFIGS / "tiny_mocov3_shapes.yaml"), clip=str(CONFIGS / "tiny_clip_shapes.yaml"))


def run(config, tmp_path, *flags):
    image_text = config == TINY["clip"]
    model = tiny_path("clip" if image_text else "vit")
    recipe = clip_genview if image_text else train_genview
    return recipe.cli(
        ["--config", config, "--model_name_or_path", str(model), "--quality_model", str(tiny_path("clip")),
         "--output_dir", str(tmp_path), "--max_steps", "2", "--save_steps", "2", *flags]
    )  # fmt: skip
