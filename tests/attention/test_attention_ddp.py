"""DistributedDataParallel (gloo, 2 CPU processes): one step gives the single-process gradients."""

from __future__ import annotations

import gc

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from attention_kernels.modules import KernelMultiheadAttention


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.attn = KernelMultiheadAttention(8, 2, batch_first=True, kernel="rbf")
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        out, _ = self.attn(x, x, x, need_weights=False, is_causal=True)
        return self.head(out)


def _data():
    return torch.randn(4, 6, 8, generator=torch.Generator().manual_seed(1))


def _worker(rank, world, store, path):
    torch.set_num_threads(1)
    # a file rendezvous: no TCP port to pick, so no race with other processes on the machine for a free one
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        model = nn.parallel.DistributedDataParallel(_Net())
        x = _data().chunk(world)[rank]
        model(x).square().mean().backward()  # DDP averages the gradients over the ranks
        if rank == 0:
            torch.save([p.grad for p in model.module.parameters()], path)
        # DDP's reducer holds the process group: freed only at interpreter exit, gloo's threads are torn down
        # during finalization and can abort the process (SIGABRT, "terminate called without an active
        # exception"; seen once in CI). Free it here, while the interpreter is whole.
        del model
        gc.collect()
        # both ranks leave together: a rank that tears gloo down while the other still talks to it aborts
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes_match_single_process(tmp_path):
    path = str(tmp_path / "grads.pt")
    mp.spawn(_worker, args=(2, str(tmp_path / "rendezvous"), path), nprocs=2, join=True)
    ddp_grads = torch.load(path)
    model = _Net()
    model(_data()).square().mean().backward()
    for g_ddp, p in zip(ddp_grads, model.parameters()):
        torch.testing.assert_close(g_ddp, p.grad, rtol=1e-5, atol=1e-6)
