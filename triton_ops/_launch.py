"""Block sizes and kernel launches (imports triton; loaded lazily by :mod:`triton_ops.attention`)."""

from __future__ import annotations

import os
from contextlib import nullcontext

import torch
import triton

from ._backward import _dkdv_kernel, _dq_kernel
from ._forward import _fwd_kernel
from ._spec import COSINE, EXP_INTERSECTION, LAPLACIAN, RBF, KernelSpec

_NORM_KERNELS = (RBF, LAPLACIAN, COSINE)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _pow2(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def _fwd_config(spec: KernelSpec, block_d: int, dtype: torch.dtype, causal: bool) -> dict:
    """Block sizes of the forward kernel; bf16/fp16 values from a sweep on an H100 (triton 3.6)."""
    if _interpreting():
        return dict(BLOCK_M=16, BLOCK_N=16, num_warps=4, num_stages=1)
    if spec.kernel_id == EXP_INTERSECTION:  # (BLOCK_M, BLOCK_N, BLOCK_D) broadcast tile lives in registers
        return dict(BLOCK_M=32 if block_d <= 32 else 16, BLOCK_N=16, num_warps=4, num_stages=2)
    if dtype == torch.float32:  # twice the bytes per tile: halve the blocks to fit shared memory
        if block_d <= 128:
            return dict(BLOCK_M=64, BLOCK_N=32, num_warps=4, num_stages=2)
        return dict(BLOCK_M=32, BLOCK_N=16, num_warps=4, num_stages=1)
    if block_d <= 64:
        return dict(BLOCK_M=64 if causal else 128, BLOCK_N=64, num_warps=4, num_stages=3)
    if block_d <= 128:
        if causal:  # smaller query blocks balance the triangular work better
            return dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=3)
        return dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=3)
    return dict(BLOCK_M=64, BLOCK_N=32, num_warps=8, num_stages=2)


def _bwd_config(spec: KernelSpec, block_d: int, dtype: torch.dtype) -> tuple[dict, dict]:
    """Configs of the dK/dV kernel and of the dQ kernel (64 x 64 blocks won the H100 sweep for d = 64, 128)."""
    if _interpreting():
        c = dict(BLOCK_M=16, BLOCK_N=16, num_warps=4, num_stages=1)
        return c, c
    if spec.kernel_id == EXP_INTERSECTION:
        c = dict(BLOCK_M=16, BLOCK_N=16, num_warps=4, num_stages=1)
        return c, c
    if dtype == torch.float32:
        c = dict(BLOCK_M=32, BLOCK_N=32, num_warps=4, num_stages=1) if block_d > 64 else \
            dict(BLOCK_M=32, BLOCK_N=64, num_warps=4, num_stages=2)
        return c, c
    if block_d <= 128:
        c = dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=2)
        return c, c
    return (dict(BLOCK_M=16, BLOCK_N=32, num_warps=4, num_stages=1),
            dict(BLOCK_M=32, BLOCK_N=16, num_warps=4, num_stages=1))


# Set by benchmarks/tuning scripts to try block sizes: {"fwd": dict, "dkdv": dict, "dq": dict}.
CONFIG_OVERRIDE: dict = {}


def _norms(spec: KernelSpec, q, k):
    """float32 squared row norms (B, H, N) for rbf/laplacian/cosine, computed once instead of per tile."""
    if spec.kernel_id not in _NORM_KERNELS:
        return q, q  # unused placeholders
    def sq(t):
        return torch.linalg.vector_norm(t, dim=-1, dtype=torch.float32).square_().contiguous()
    return sq(q), sq(k)


def _coord_chunk(spec: KernelSpec, block_d: int) -> bool:
    """exp_intersection above head dim 64: accumulate over coordinate chunks instead of one register tile."""
    return spec.kernel_id == EXP_INTERSECTION and block_d > _COORD_TILE_MAX_D


_COORD_TILE_MAX_D = 64


def _mask_args(mask_view, ref):
    if mask_view is None:
        return ref, (0, 0, 0, 0)
    return mask_view, tuple(mask_view.stride())


def _interpreter_bf16(*tensors):
    """Triton's interpreter (numpy) mis-multiplies bfloat16 dots: compute in float32 there (exact inputs)."""
    if _interpreting() and tensors[0].dtype == torch.bfloat16:
        return tuple(t.float() for t in tensors), True
    return tensors, False


def forward(q, k, v, mask_view, mask_kind, spec: KernelSpec, normalize, causal, precision):
    (q, k, v), upcast = _interpreter_bf16(q, k, v)
    if upcast:
        out, lse = forward(q, k, v, mask_view, mask_kind, spec, normalize, causal, precision)
        return out.bfloat16(), lse
    b, hq, nq, d = q.shape
    hk, nk, dv = k.shape[1], k.shape[2], v.shape[-1]
    out = torch.empty((b, hq, nq, dv), device=q.device, dtype=q.dtype)
    lse = torch.empty((b, hq, nq) if normalize else (0,), device=q.device, dtype=torch.float32)
    block_d, block_dv = _pow2(d), _pow2(dv)
    cfg = CONFIG_OVERRIDE.get("fwd") or _fwd_config(spec, max(block_d, block_dv), q.dtype, causal)
    m, ms = _mask_args(mask_view, q)
    qn, kn = _norms(spec, q, k)
    grid = (triton.cdiv(nq, cfg["BLOCK_M"]), b * hq)
    with torch.cuda.device(q.device) if q.is_cuda else nullcontext():
        _fwd_kernel[grid](
            q, k, v, m, out, lse, qn, kn,
            q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
            v.stride(0), v.stride(1), v.stride(2), out.stride(0), out.stride(1), out.stride(2), *ms,
            hq, hk, hq // hk, nq, nk, d, dv, spec.c0, spec.c1,
            KERNEL=spec.kernel_id, DEGREE=spec.degree, EXP=spec.exponential,
            NORMS=spec.kernel_id in _NORM_KERNELS, NORMALIZE=normalize, CAUSAL=causal, MASK_KIND=mask_kind,
            PRECISION=precision, EVEN_N=nk % cfg["BLOCK_N"] == 0, EVEN_D=(d == block_d and dv == block_dv),
            COORD_CHUNK=_coord_chunk(spec, block_d),
            BLOCK_D=block_d, BLOCK_DV=block_dv, **cfg,
        )
    return out, lse


def backward(q, k, v, out, lse, dout, mask_view, mask_kind, spec: KernelSpec, normalize, causal, precision,
             bias_grad):
    (q, k, v, out, dout), upcast = _interpreter_bf16(q, k, v, out, dout)
    if upcast:
        grads = backward(q, k, v, out, lse, dout, mask_view, mask_kind, spec, normalize, causal, precision, bias_grad)
        return tuple(g.bfloat16() for g in grads[:3]) + grads[3:]
    b, hq, nq, d = q.shape
    hk, nk, dv = k.shape[1], k.shape[2], v.shape[-1]
    if normalize:
        delta = (dout.float() * out.float()).sum(-1).contiguous()  # Delta_i = dO_i . O_i
    else:
        delta = lse
    dq = torch.empty_like(q, memory_format=torch.contiguous_format)
    dk = torch.empty_like(k, memory_format=torch.contiguous_format)
    dvv = torch.empty_like(v, memory_format=torch.contiguous_format)
    db = torch.zeros((b, hq, nq, nk), device=q.device, dtype=torch.float32) if bias_grad else lse
    block_d, block_dv = _pow2(d), _pow2(dv)
    cfg_kv, cfg_q = _bwd_config(spec, max(block_d, block_dv), q.dtype)
    cfg_kv = CONFIG_OVERRIDE.get("dkdv") or cfg_kv
    cfg_q = CONFIG_OVERRIDE.get("dq") or cfg_q
    m, ms = _mask_args(mask_view, q)
    qn, kn = _norms(spec, q, k)
    chunk = _coord_chunk(spec, block_d)
    dq_acc = torch.zeros((b, hq, nq, d), device=q.device, dtype=torch.float32) if chunk else lse
    dk_acc = torch.zeros((b, hk, nk, d), device=q.device, dtype=torch.float32) if chunk else lse
    flags = dict(
        COORD_CHUNK=chunk, KERNEL=spec.kernel_id, DEGREE=spec.degree, EXP=spec.exponential, NORMS=spec.kernel_id in _NORM_KERNELS,
        NORMALIZE=normalize, CAUSAL=causal, MASK_KIND=mask_kind, PRECISION=precision,
        BLOCK_D=block_d, BLOCK_DV=block_dv,
    )
    common = (
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), dout.stride(0), dout.stride(1), dout.stride(2), *ms,
    )
    with torch.cuda.device(q.device) if q.is_cuda else nullcontext():
        _dkdv_kernel[(triton.cdiv(nk, cfg_kv["BLOCK_N"]), b * hk)](
            q, k, v, m, dout, lse, delta, dk, dvv, db, qn, kn, dk_acc, *common,
            dk.stride(0), dk.stride(1), dk.stride(2), dvv.stride(0), dvv.stride(1), dvv.stride(2),
            hq, hk, hq // hk, nq, nk, d, dv, spec.c0, spec.c1, BIAS_GRAD=bias_grad, **flags, **cfg_kv,
        )
        _dq_kernel[(triton.cdiv(nq, cfg_q["BLOCK_M"]), b * hq)](
            q, k, v, m, dout, lse, delta, dq, qn, kn, dq_acc, *common, dq.stride(0), dq.stride(1), dq.stride(2),
            hq, hk, hq // hk, nq, nk, d, dv, spec.c0, spec.c1, **flags, **cfg_q,
        )
    if chunk:
        dq.copy_(dq_acc)
        dk.copy_(dk_acc)
    return dq, dk, dvv, (db if bias_grad else None)

