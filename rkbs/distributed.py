"""Data parallelism through ``torch.distributed``: each process holds a shard of the training rows.

Inside :func:`data_parallel`, the estimators' Nystroem fits treat the rows of every process as one data set:
landmarks are drawn from the union of the shards (every process gets the same ones), and every sum over rows
(``K^T K``, ``K^T y``, the products of the conjugate-gradient solver) is all-reduced, so each process ends
with the coefficients of the single-process fit on the concatenated rows (rank 0's shard first). Any back
end of ``torch.distributed`` works: gloo for CPU tensors, NCCL for CUDA tensors (``device="cuda:<local
rank>"``).

Examples
--------
A script run with ``torchrun --nproc-per-node 2 fit.py``::

    import numpy as np, torch.distributed as dist
    from rkbs.distributed import data_parallel
    from rkbs.estimators import RKBSRegressor

    dist.init_process_group("gloo")
    X = np.load("X.npy", mmap_mode="r"); y = np.load("y.npy", mmap_mode="r")
    shard = np.array_split(np.arange(len(X)), dist.get_world_size())[dist.get_rank()]
    with data_parallel():
        model = RKBSRegressor(n_components=2000, solver="falkon", random_state=0).fit(X[shard], y[shard])
    dist.barrier()
    dist.destroy_process_group()
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["ProcessGroup", "current_group", "data_parallel"]


@dataclass(frozen=True)
class ProcessGroup:
    """The process group of a :func:`data_parallel` block, with this process's rank and the group's size."""

    group: Any
    rank: int
    world_size: int

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the processes, in place; returns it."""
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=self.group)
        return tensor

    def broadcast(self, tensor: torch.Tensor, src_rank: int = 0) -> torch.Tensor:
        """Overwrite ``tensor`` with the group rank ``src_rank``'s copy; returns it."""
        import torch.distributed as dist

        src = src_rank if self.group is None else dist.get_global_rank(self.group, src_rank)
        dist.broadcast(tensor, src=src, group=self.group)
        return tensor

    def shard_sizes(self, n_local: int, device: torch.device) -> list[int]:
        """The number of rows of every process, in rank order."""
        sizes = torch.zeros(self.world_size, dtype=torch.int64, device=device)
        sizes[self.rank] = n_local
        return [int(s) for s in self.all_reduce(sizes).cpu()]


_CURRENT: contextvars.ContextVar[ProcessGroup | None] = contextvars.ContextVar("rkbs_process_group", default=None)


def current_group() -> ProcessGroup | None:
    """The :class:`ProcessGroup` of the enclosing :func:`data_parallel` block, or None outside one."""
    return _CURRENT.get()


@contextlib.contextmanager
def data_parallel(group: Any = None) -> Iterator[ProcessGroup]:
    """Fit the estimators of this block on the union of the row shards of the processes of ``group``.

    Parameters
    ----------
    group : torch.distributed.ProcessGroup, default=None
        ``None`` is the default (world) group. ``torch.distributed.init_process_group`` must have been called.

    Yields
    ------
    ProcessGroup

    Raises
    ------
    RuntimeError
        When torch.distributed is not available or not initialized.
    """
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("data_parallel needs an initialized default process group: call "
                           "torch.distributed.init_process_group first (e.g. under torchrun)")
    pg = ProcessGroup(group, dist.get_rank(group), dist.get_world_size(group))
    token = _CURRENT.set(pg)
    try:
        yield pg
    finally:
        _CURRENT.reset(token)
