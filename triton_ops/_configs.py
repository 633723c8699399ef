"""Block sizes: a measured default per case and the candidates the autotuner times on the GPU at hand.

The first candidate of every list is the default: for fp16/bf16 the winner of a sweep on an H100 with
triton 3.6 (B=2, H=16, N=4096..16384, d=64 and 128); for float32 the largest blocks that compile without
register spills for sm_90 on triton 3.6 to 3.9 (``python -m tools.compile_check``; not yet timed).
The others are there for what that sweep did not see: another GPU, another Triton version (3.9 spills
registers in the d=128 dK/dV default), other kernels' register pressure. Each entry is ``(BLOCK_M, BLOCK_N, num_warps, num_stages)``.
"""

from __future__ import annotations

import itertools

import torch

from ._spec import EXP_INTERSECTION

Block = tuple[int, int, int, int]

# Triton's interpreter runs numpy on the CPU: two small configurations, so tests cover more than one tiling.
INTERPRETER: list[Block] = [(16, 16, 4, 1), (32, 16, 4, 1)]


def fwd_candidates(kernel_id: int, block_d: int, dtype: torch.dtype, causal: bool) -> list[Block]:
    """Forward kernel candidates; ``block_d`` is the padded max(head dim of q/k, head dim of v)."""
    if kernel_id == EXP_INTERSECTION:  # the (BLOCK_M, BLOCK_N, BLOCK_D) broadcast tile lives in registers
        return [(32 if block_d <= 32 else 16, 16, 4, 2)]
    if dtype == torch.float32:  # twice the bytes per tile; defaults chosen spill-free by compile_check
        if block_d <= 64:
            return [(64, 32, 8, 2), (32, 32, 4, 2), (64, 32, 4, 2)]
        if block_d <= 128:
            return [(64, 16, 8, 2), (32, 16, 4, 2), (64, 32, 8, 2)]
        return [(32, 16, 4, 1), (32, 32, 8, 1), (64, 16, 8, 1)]
    if block_d <= 64:
        first = (64, 64, 4, 3) if causal else (128, 64, 4, 3)
        return _unique([first, (128, 64, 4, 3), (64, 64, 4, 3), (128, 64, 8, 3), (128, 32, 4, 4)])
    if block_d <= 128:
        first = (64, 64, 4, 3) if causal else (128, 64, 8, 3)  # causal: smaller query blocks balance the triangle
        return _unique([first, (128, 64, 8, 3), (64, 64, 4, 3), (128, 32, 8, 3), (128, 128, 8, 2), (64, 32, 4, 4)])
    return [(64, 32, 8, 2), (64, 64, 8, 2), (32, 32, 4, 2), (128, 32, 8, 2)]


def dkdv_candidates(kernel_id: int, block_d: int, dtype: torch.dtype, causal: bool) -> list[Block]:
    """dK/dV kernel candidates (a program owns BLOCK_N keys and loops over BLOCK_M queries)."""
    if kernel_id == EXP_INTERSECTION:
        return [(16, 16, 4, 1)]
    if dtype == torch.float32:  # 4 warps spill kilobytes here (compile_check): 8 warps or 16-row blocks
        if block_d <= 64:
            return [(32, 32, 8, 1), (16, 32, 4, 1), (16, 64, 4, 1)]
        if block_d <= 128:
            return [(32, 32, 8, 1), (16, 32, 8, 1), (16, 16, 4, 1)]
        return [(16, 32, 8, 1), (16, 16, 4, 1)]
    if block_d <= 128:  # the default spills on triton 3.9 (not on 3.6, where it was measured): time the others
        return [(64, 64, 4, 2), (64, 64, 8, 2), (32, 64, 4, 2), (32, 128, 8, 2), (16, 64, 4, 2)]
    return [(16, 32, 4, 1), (16, 32, 8, 1), (32, 32, 8, 1)]


def dq_candidates(kernel_id: int, block_d: int, dtype: torch.dtype, causal: bool) -> list[Block]:
    """dQ kernel candidates (a program owns BLOCK_M queries and loops over BLOCK_N keys)."""
    if kernel_id == EXP_INTERSECTION:
        return [(16, 16, 4, 1)]
    if dtype == torch.float32:
        if block_d <= 64:
            return [(32, 32, 8, 1), (64, 32, 8, 2), (32, 32, 4, 2)]
        if block_d <= 128:
            return [(32, 32, 8, 1), (32, 16, 4, 1), (64, 32, 8, 1)]
        return [(32, 16, 8, 1), (32, 16, 4, 1)]
    if block_d <= 128:
        return [(64, 64, 4, 2), (64, 64, 8, 2), (128, 32, 8, 2), (64, 32, 4, 2)]
    return [(32, 16, 4, 1), (32, 16, 8, 1), (32, 32, 8, 1)]


def decode_candidates(kernel_id: int, block_d: int, dtype: torch.dtype) -> list[Block]:
    """Split-KV forward candidates (a few queries against a long cache): the smallest query block a tensor-core
    dot takes, long key blocks to stream the cache. Not yet timed on a GPU (``benchmarks/gpu_round.sh``)."""
    if kernel_id == EXP_INTERSECTION:
        return fwd_candidates(kernel_id, block_d, dtype, False)
    if dtype == torch.float32 or block_d > 128:
        return [(16, 32, 4, 2), (16, 64, 4, 2)]
    return [(16, 64, 4, 3), (16, 128, 4, 3), (16, 64, 4, 2), (32, 64, 4, 3)]


def _unique(blocks: list[Block]) -> list[Block]:
    return list(dict.fromkeys(blocks))


def _space(candidates) -> list[Block]:
    cases = itertools.product((0, EXP_INTERSECTION), (16, 64, 128, 256), (torch.float16, torch.float32), (False, True))
    return _unique(INTERPRETER + [block for case in cases for block in candidates(*case)])


# Every block a case can ask for: the static configuration lists of the ``triton.autotune`` wrappers.
FWD_SPACE = _space(fwd_candidates)
DKDV_SPACE = _space(dkdv_candidates)
DQ_SPACE = _space(dq_candidates)
DECODE_SPACE = [b for b in _space(lambda kid, d, dt, causal: decode_candidates(kid, d, dt)) if b not in FWD_SPACE]
