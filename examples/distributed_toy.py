"""Global AOT coupling under torchrun and DDP: a toy reward model trained on every rank's slice.

Each rank draws its own chosen and rejected feature vectors (different counts per rank) and
scores them with a small MLP wrapped in DistributedDataParallel. ``group="world"`` couples the
rewards of all ranks as one batch: every rank prints the same loss, and after DDP averages the
gradients the update is the one a single process would make on the whole global batch.

    torchrun --standalone --nproc_per_node 2 examples/distributed_toy.py --steps 50
"""

from __future__ import annotations

import argparse

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import aot_loss


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--per-rank", type=int, default=16, help="chosen samples per rank (rejected: fewer)")
    args = parser.parse_args()
    if not dist.is_torchelastic_launched():
        parser.error("launch with torchrun, e.g. torchrun --standalone --nproc_per_node 2 " + __file__)

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", rank % torch.cuda.device_count()) if cuda else torch.device("cpu")
    torch.manual_seed(0)  # the same initial model on every rank (DDP also broadcasts it)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)).to(device)
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=1e-2)
    data = torch.Generator().manual_seed(1 + rank)  # every rank its own data
    shift = torch.linspace(0.0, 1.0, 8)  # chosen features are shifted: a learnable preference

    for step in range(1, args.steps + 1):
        n_pos, n_neg = args.per_rank, args.per_rank - 1 - rank % 3  # uneven sizes are fine
        x_pos = (torch.randn(n_pos, 8, generator=data) + shift).to(device)
        x_neg = torch.randn(n_neg, 8, generator=data).to(device)
        rewards = ddp(torch.cat([x_pos, x_neg])).squeeze(-1)
        loss = aot_loss.unpaired(rewards[:n_pos], rewards[n_pos:], beta=1.0, group="world")
        optimizer.zero_grad()
        loss.backward()  # DDP averages; aot_loss scaled each rank's share by the group size
        optimizer.step()
        if rank == 0 and (step == 1 or step % 10 == 0 or step == args.steps):
            print(f"step {step:3d}  global loss {loss.item():.4f}  ({world} ranks)", flush=True)
    print(f"rank {rank}: final global loss {loss.item():.6f}", flush=True)  # the same on every rank
    # Free the DDP wrapper before the process group: if the group outlives it, its destructor
    # runs at interpreter exit and can deadlock with gloo's worker thread (torch 2.13).
    del ddp
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
