"""Run by tests/test_trainer_distributed.py under ``accelerate launch --multi_gpu --num_processes 2`` (CPU, gloo).

Trains a few steps and writes, per rank, the full state of the wrapper (online and momentum
encoders, heads, queue) so that the test can compare the replicas.
"""

import sys
from pathlib import Path

import safetensors.torch
import torch
import torch.distributed as dist

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
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
