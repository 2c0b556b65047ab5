"""Run by tests/test_trainer_distributed.py under ``accelerate launch --multi_gpu --num_processes 2`` (CPU, gloo).

Trains a few steps and writes, per rank, the full state of the wrapper (online and momentum
encoders, heads, queue) so that the test can compare the replicas, and whether ``end_distributed``
freed the process group (one left to the interpreter's exit can abort the process).
"""

import sys
import weakref
from pathlib import Path

import safetensors.torch
import torch
import torch.distributed as dist

from genview_hf.distributed import end_distributed

sys.path.insert(0, str(Path(__file__).parent))
from training_helpers import make_args, make_trainer  # noqa: E402


def main(output_dir: str, method: str) -> None:
    args = make_args(output_dir, method, max_steps=3, quality_mode="stored", ddp_backend="gloo")
    trainer = make_trainer(args, length=32)
    trainer.train()
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    state = {name: t.detach().contiguous().clone() for name, t in trainer.model.state_dict().items()}
    state["__world_size__"] = torch.tensor(world)
    safetensors.torch.save_file(state, str(Path(output_dir) / f"state-rank{rank}.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    rank, world_group = dist.get_rank(), weakref.ref(dist.group.WORLD)
    end_distributed()  # the trainer (DDP holds the group) is garbage now: its group must go too
    (Path(sys.argv[1]) / f"group-freed-rank{rank}.txt").write_text(str(world_group() is None))
