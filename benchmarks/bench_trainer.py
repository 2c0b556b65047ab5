"""Throughput of GenView training: the Trainer path against a minimal hand-written loop, the cost of
each quality mode relative to ``off``, and the training levers, side by side in one run.

    python benchmarks/bench_trainer.py                       # CPU, tiny components (seconds)
    python benchmarks/bench_trainer.py --device cuda --real-size   # ViT-B/16 MoCo v3 + CLIP ViT-B/16, batch 256, bf16

Both paths train the same model (same seed), with the same loss, optimizer (AdamW, fused by
default) and data (a DataLoader over pre-made batches following the collators' contract: the
augmentation's cost is not in these figures), and the momentum update after every optimizer step.
Timing starts after ``--warmup`` steps; figures are medians over ``--runs`` runs. ``--real-size``
builds the models from configs with random weights (no download) and reports model FLOPs
utilisation: FLOPs counted by ``torch.utils.flop_counter`` on one training step, over the GPU's
dense bf16 data-sheet peak and over the matrix rate measured in the same run. Levers, each a
switch (``--levers`` sweeps them on MoCo v3 one at a time from the defaults): ``eager_attention``
(SDPA off), ``unfused_adamw``, ``nan_check_every_step`` (the guard's host read every step instead
of every ``--nan-check-steps``), ``compile`` (the Trainer's ``torch_compile``). One JSON line per figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from transformers import CLIPConfig, CLIPModel, CLIPVisionModel, TrainerCallback, ViTConfig, ViTModel  # noqa: E402

from genview_hf import losses  # noqa: E402
from genview_hf.benchmarks.hardware import matmul_tflops  # noqa: E402
from genview_hf.modeling import GenViewCLIPModel, GenViewModel  # noqa: E402
from genview_hf.testing.training_data import SyntheticViews  # noqa: E402
from genview_hf.training import GenViewTrainer, GenViewTrainingArguments, momentum_at  # noqa: E402

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16, SXM parts


class Pool(Dataset):
    """``length`` rows cycling over a small pool of pre-made rows (no per-row generation cost)."""

    def __init__(self, rows: list[dict[str, torch.Tensor]], length: int) -> None:
        self.rows, self.length = rows, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.rows[index % len(self.rows)]


def make_data(kind: str, image_size: int, length: int, text_length: int = 32) -> Pool:
    source = SyntheticViews(length=16, image_size=image_size, kind=kind, text_length=text_length)
    return Pool([source[i] for i in range(16)], length)


@dataclasses.dataclass(frozen=True)
class Levers:
    """The switches of one run (the defaults are what the Trainer path should use)."""

    attention: str = "sdpa"  # or "eager"
    fused_adamw: bool = True
    nan_check_steps: int = 50  # the guard's host read every N steps (1: every step)
    compile: bool = False  # the Trainer's torch_compile; the loop compiles its model alike

    def sweep(self) -> dict[str, Levers]:
        return {
            "eager_attention": dataclasses.replace(self, attention="eager"),
            "unfused_adamw": dataclasses.replace(self, fused_adamw=False),
            "nan_check_every_step": dataclasses.replace(self, nan_check_steps=1),
            "compile": dataclasses.replace(self, compile=True),
        }


def build(case: str, real_size: bool, levers: Levers = Levers(), seed: int = 0):
    """(wrapper model, data kind, image size)."""
    torch.manual_seed(seed)
    if case == "mocov3":
        if real_size:
            backbone, size = (
                ViTModel(ViTConfig(attn_implementation=levers.attention)),
                224,
            )  # ViT-B/16, 224 px
            heads = dict(proj_hidden_dim=4096, proj_dim=256, pred_hidden_dim=4096)
        else:
            from genview_hf.testing import tiny_vit

            backbone, size = tiny_vit()[0], 32
            backbone.set_attn_implementation(levers.attention)
            heads = dict(proj_hidden_dim=64, proj_dim=32, pred_hidden_dim=64)
        return GenViewModel.from_backbone(backbone, method="mocov3", **heads), "ssl", size
    if case == "clip":
        if real_size:
            config = CLIPConfig(
                vision_config=dict(patch_size=16, image_size=224), projection_dim=512
            )  # CLIP ViT-B/16 (text: 12 layers, width 512)
            config._attn_implementation = levers.attention
            clip, size = CLIPModel(config), 224
        else:
            from genview_hf.testing import tiny_clip

            clip, size = tiny_clip()[0], 32
            clip.set_attn_implementation(levers.attention)
        return GenViewCLIPModel.from_clip(clip, method="clip"), "clip", size
    raise ValueError(case)


def hand_written_loss(model, batch) -> torch.Tensor:
    """The objective written out as a plain loop would, from the pure losses: MoCo v3's symmetric
    InfoNCE (tau 0.2, scaled by 2 tau) or CLIP's symmetric cross-entropy."""
    out = model(**batch)
    if isinstance(getattr(model, "_orig_mod", model), GenViewCLIPModel):
        return losses.clip_loss(out.image_embeds, out.text_embeds, out.logit_scale)
    tau = 0.2
    return (
        2
        * tau
        * (
            losses.info_nce_loss(out.queries_1, out.targets_2, temperature=tau)
            + losses.info_nce_loss(out.queries_2, out.targets_1, temperature=tau)
        )
    )


def quality_model(real_size: bool):
    if real_size:  # a CLIP ViT-B/16 vision tower as the frozen token map
        from transformers import CLIPVisionConfig

        return CLIPVisionModel(CLIPVisionConfig(patch_size=16, image_size=224))
    from genview_hf.testing import tiny_clip

    return tiny_clip()[0].vision_model


class Clock(TrainerCallback):
    def __init__(self, warmup: int, sync) -> None:
        self.warmup, self.sync, self.start, self.end = warmup, sync, None, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.sync()
            self.start = time.perf_counter()
        if state.global_step == state.max_steps:
            self.sync()
            self.end = time.perf_counter()


def trainer_run(case, mode, opts, output_dir, levers: Levers = Levers()) -> float:
    model, kind, size = build(case, opts.real_size, levers)
    steps = opts.warmup + opts.steps
    args = GenViewTrainingArguments(
        output_dir=output_dir,
        method=model.config.method,
        quality_mode=mode,
        per_device_train_batch_size=opts.batch_size,
        max_steps=steps,
        learning_rate=1e-4,
        lr_scheduler_type="constant",
        warmup_steps=0,
        logging_steps=10**6,
        save_strategy="no",
        report_to="none",
        use_cpu=opts.device == "cpu",
        bf16=opts.device == "cuda",
        dataloader_num_workers=opts.workers,
        dataloader_pin_memory=opts.device == "cuda",
        disable_tqdm=True,
        seed=0,
        image_size=size,
        optim="adamw_torch_fused" if levers.fused_adamw else "adamw_torch",
        torch_compile=levers.compile,
        nan_check_steps=levers.nan_check_steps,
    )
    sync = torch.cuda.synchronize if opts.device == "cuda" else (lambda: None)
    clock = Clock(opts.warmup, sync)
    trainer = GenViewTrainer(
        model,
        args,
        train_dataset=make_data(kind, size, steps * opts.batch_size),
        quality_model=quality_model(opts.real_size) if mode == "frozen" else None,
        callbacks=[clock],
    )
    trainer.train()
    return opts.steps * opts.batch_size / (clock.end - clock.start)


def loop_run(case, opts, levers: Levers = Levers()) -> float:
    """The minimal hand-written PyTorch loop with the same model, loss, optimizer and data."""
    model, kind, size = build(case, opts.real_size, levers)
    device = torch.device(opts.device)
    model.to(device).train()
    forward = torch.compile(model) if levers.compile else model
    steps = opts.warmup + opts.steps
    loader = DataLoader(
        make_data(kind, size, steps * opts.batch_size),
        batch_size=opts.batch_size,
        shuffle=True,
        num_workers=opts.workers,
        pin_memory=opts.device == "cuda",
        drop_last=True,
    )
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=1e-4,
        weight_decay=0.0,
        fused=levers.fused_adamw,
    )
    sync = torch.cuda.synchronize if opts.device == "cuda" else (lambda: None)
    start = None
    for step, batch in enumerate(loader):
        if step == opts.warmup:
            sync()
            start = time.perf_counter()
        # quality mode off, as in the Trainer run it is compared with: masks stay out
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items() if not k.startswith("masks")}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts.device == "cuda"):
            loss = hand_written_loss(forward, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # the Trainer clips at 1.0 too
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if getattr(model, "has_momentum_encoder", False):
            model.momentum_update(momentum_at(step, steps, 0.99))
    sync()
    return opts.steps * opts.batch_size / (time.perf_counter() - start)


def flops_per_sample(case, opts) -> float:
    """Model FLOPs of one training step (forward + backward) per sample, counted on a small batch."""
    from torch.utils.flop_counter import FlopCounterMode

    model, kind, size = build(case, opts.real_size)
    model.to(opts.device).train()
    batch_size = 8
    data = make_data(kind, size, batch_size)
    batch = {
        k: torch.stack([data[i][k] for i in range(batch_size)]).to(opts.device)
        for k in data[0]
        if not k.startswith("masks")
    }
    counter = FlopCounterMode(display=False)
    with counter, torch.autocast(opts.device, dtype=torch.bfloat16, enabled=opts.device == "cuda"):
        hand_written_loss(model, batch).backward()
    return counter.get_total_flops() / batch_size


def gpu_peak() -> tuple[str, float | None]:
    name = torch.cuda.get_device_name()
    for key, peak in PEAK_BF16_TFLOPS.items():
        if key in name:
            return name, peak
    return name, None


def median(values: list[float]) -> float:
    return statistics.median(values)


def run(opts, emit, deadline: float = float("inf")) -> None:
    """Every figure of ``opts``: per case the loop and the Trainer, then MoCo v3's quality modes and
    its lever sweep; each a row given to ``emit``. Past ``deadline`` (time.monotonic) the rest is
    skipped and named."""
    measured = matmul_tflops(opts.device, torch.bfloat16, 8192 if opts.device == "cuda" else 512)

    def late(what: str, needs_s: float = 0.0) -> bool:
        if time.monotonic() > deadline - needs_s:
            emit(skipped_past_deadline=what)
            return True
        return False

    with tempfile.TemporaryDirectory() as tmp:
        for case in opts.cases:
            if late(case):
                continue
            # interleaved, so that a drift of the machine's load hits both paths alike
            pairs = [(loop_run(case, opts), trainer_run(case, "off", opts, tmp)) for _ in range(opts.runs)]
            loop = median([pair[0] for pair in pairs])
            trainer = median([pair[1] for pair in pairs])
            row = dict(case=case, loop_samples_per_s=round(loop, 2), trainer_samples_per_s=round(trainer, 2))
            row["trainer_overhead"] = round(loop / trainer, 3)
            flops = flops_per_sample(case, opts)
            row["gflops_per_sample"] = round(flops / 1e9, 2)
            row["measured_bf16_matmul_tflops"] = round(measured, 1)
            row["mfu_trainer_of_measured"] = round(trainer * flops / (measured * 1e12), 4)
            row["mfu_loop_of_measured"] = round(loop * flops / (measured * 1e12), 4)
            if opts.device == "cuda":
                name, peak = gpu_peak()
                if peak:
                    row["mfu_trainer"] = round(trainer * flops / (peak * 1e12), 4)
                    row["mfu_loop"] = round(loop * flops / (peak * 1e12), 4)
            emit(**row)
            if case != "mocov3":
                continue
            for mode in opts.modes:
                if mode == "off" or late(f"{case} quality_mode={mode}"):
                    continue
                rate = median([trainer_run(case, mode, opts, tmp) for _ in range(opts.runs)])
                emit(
                    case=case,
                    quality_mode=mode,
                    trainer_samples_per_s=round(rate, 2),
                    cost_vs_off=round(trainer / rate, 3),
                )
            for name, levers in Levers().sweep().items():
                compiling = 100.0 if levers.compile and opts.device == "cuda" else 0.0
                if name not in opts.levers or late(f"{case} lever {name}", compiling):
                    continue
                rate = median([trainer_run(case, "off", opts, tmp, levers) for _ in range(opts.lever_runs)])
                emit(
                    case=case,
                    lever=name,
                    trainer_samples_per_s=round(rate, 2),
                    vs_defaults=round(rate / trainer, 3),
                )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--real-size", action="store_true", help="ViT-B/16 MoCo v3 and CLIP ViT-B/16, batch 256"
    )
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lever-runs", type=int, default=1, help="runs per lever of the sweep")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--cases", nargs="+", default=["mocov3", "clip"])
    parser.add_argument("--modes", nargs="+", default=["off", "stored", "frozen"])
    parser.add_argument(
        "--levers", nargs="*", default=list(Levers().sweep()), help="levers to sweep (none: skip)"
    )
    opts = parser.parse_args(argv)
    opts.batch_size = opts.batch_size or (256 if opts.real_size else 16)
    opts.steps = opts.steps or (10 if opts.real_size else 8)
    opts.workers = opts.workers if opts.workers is not None else (6 if opts.device == "cuda" else 0)
    return opts


def common_fields(opts) -> dict:
    hardware = (
        torch.cuda.get_device_name() if opts.device == "cuda" else f"CPU x{torch.get_num_threads()} threads"
    )
    return dict(
        date=time.strftime("%Y-%m-%d"),
        hardware=hardware,
        batch=opts.batch_size,
        real_size=opts.real_size,
        torch=torch.__version__,
        runs=opts.runs,
    )


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    if opts.device == "cpu":
        torch.set_num_threads(1)  # steady figures on a shared machine
    common = common_fields(opts)
    run(opts, lambda **row: print(json.dumps({**common, **row}), flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
