"""Run by tests/training/test_trainer_distributed.py under ``accelerate launch --multi_gpu --num_processes 2`` (CPU, gloo).

Trains a few steps and writes, per rank, the full state of the wrapper (online and momentum
encoders, heads, queue) so that the test can compare the replicas, and whether ``end_distributed``
freed the process group (one left to the interpreter's exit can abort the process). A third
argument names the ``quality_weighting``; with ``row_memory`` the rank's memory of the rows'
qualities is written too.
"""

import sys
import weakref
from pathlib import Path

import safetensors.torch
import torch
import torch.distributed as dist
from torch.utils.data import default_collate

from genview_hf.data.collators import RowIndexCollator, RowIndexed
from genview_hf.data.views import ROW_INDEX
from genview_hf.distributed import end_distributed

sys.path.insert(0, str(Path(__file__).parent))
from training_helpers import make_args, make_trainer  # noqa: E402


def stack_without_index(rows: list[dict]) -> dict[str, torch.Tensor]:
    """The synthetic rows stacked, their dataset index (which ``RowIndexCollator`` reads) left out."""
    return default_collate([{key: value for key, value in row.items() if key != ROW_INDEX} for row in rows])


def main(output_dir: str, method: str, weighting: str = "softmax") -> None:
    args = make_args(
        output_dir,
        method,
        max_steps=3,
        quality_mode="stored",
        quality_weighting=weighting,
        ddp_backend="gloo",
    )
    trainer = make_trainer(args, length=32)
    if weighting == "row_memory":  # pre-made tensors: the rows' indices added here, as the views collators do
        trainer.train_dataset = RowIndexed(trainer.train_dataset)
        trainer.data_collator = RowIndexCollator(stack_without_index)
    trainer.train()
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    state = {name: t.detach().contiguous().clone() for name, t in trainer.model.state_dict().items()}
    state["__world_size__"] = torch.tensor(world)
    if trainer.pair_weighting.memory is not None:
        state.update(
            {f"__row_memory_{k}__": v for k, v in trainer.pair_weighting.memory.state_dict().items()}
        )
    safetensors.torch.save_file(state, str(Path(output_dir) / f"state-rank{rank}.safetensors"))


if __name__ == "__main__":
    main(*sys.argv[1:])
    rank, world_group = dist.get_rank(), weakref.ref(dist.group.WORLD)
    end_distributed()  # the trainer (DDP holds the group) is garbage now: its group must go too
    (Path(sys.argv[1]) / f"group-freed-rank{rank}.txt").write_text(str(world_group() is None))
