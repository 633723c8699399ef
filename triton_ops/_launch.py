"""Kernel launches and their autotuning (imports triton; loaded lazily by :mod:`triton_ops.attention`)."""

from __future__ import annotations

import os
import time
from contextlib import nullcontext

import torch
import triton
import triton.testing

from ._backward import _dkdv_kernel, _dq_kernel
from ._configs import (
    DECODE_SPACE, DKDV_SPACE, DQ_SPACE, FWD_SPACE, INTERPRETER, Block, decode_candidates, dkdv_candidates,
    dq_candidates, fwd_candidates,
)
from ._forward import _fwd_kernel
from ._interpreter import interpreting
from ._features import NO_FEATURES, Features
from ._spec import COSINE, EXP_INTERSECTION, LAPLACIAN, RBF, KernelSpec

_NORM_KERNELS = (RBF, LAPLACIAN, COSINE)


# Plain-Python integer helpers: triton.cdiv / next_power_of_2 are constexpr functions, several times slower
# to call from Python, and these run on every launch.
def _next_pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _pow2(n: int) -> int:
    return max(16, _next_pow2(n))


def autotune_enabled() -> bool:
    """Whether launches time the candidate block sizes (``TRITON_OPS_AUTOTUNE``; default on, off in the interpreter)."""
    env = os.environ.get("TRITON_OPS_AUTOTUNE")
    if env is not None:
        return env.lower() not in ("0", "false", "")
    return not interpreting()


def _bench(fn, quantiles):
    """Timer of the autotuner: CUDA events on a GPU, the wall clock of one call in the interpreter."""
    if interpreting():
        t0 = time.perf_counter()
        fn()
        return [(time.perf_counter() - t0) * 1e3] * len(quantiles)
    return triton.testing.do_bench(fn, warmup=5, rep=25, quantiles=quantiles)


def _candidates(kind: str, kernel_id: int, block_d: int, dtype: torch.dtype, causal: bool,
                decode: bool = False) -> list[Block]:
    if kind in CONFIG_OVERRIDE:
        return [CONFIG_OVERRIDE[kind]]
    if interpreting():
        return list(INTERPRETER)
    if decode:
        return decode_candidates(kernel_id, block_d, dtype)
    return _CANDIDATES[kind](kernel_id, block_d, dtype, causal)


def _pruner(kind: str):
    def prune(configs, named_args, **kwargs):
        blocks = _candidates(kind, kwargs["KERNEL"], max(kwargs["BLOCK_D"], kwargs["BLOCK_DV"]),
                             named_args["Q"].dtype, kwargs["CAUSAL"], kwargs.get("SPLIT", False))
        return [c for c in configs if _block(c) in blocks]
    return prune


def _block(config) -> Block:
    return config.kwargs["BLOCK_M"], config.kwargs["BLOCK_N"], config.num_warps, config.num_stages


def _meta(block: Block) -> dict:
    m, n, warps, stages = block
    return dict(BLOCK_M=m, BLOCK_N=n, num_warps=warps, num_stages=stages)


# The autotuner re-times when one of these changes (and the dtypes of the tensor arguments, which triton adds).
_TUNE_KEY = ("KERNEL", "DEGREE", "NORMALIZE", "CAUSAL", "MASK_KIND", "PRECISION", "BLOCK_D", "BLOCK_DV", "TUNE_N",
             "SOFTCAP", "ALIBI", "WINDOW", "VARLEN")
_FWD_TUNE_KEY = _TUNE_KEY + ("SPLIT", "PACK_GQA")


def _autotuned(kernel, space: list[Block], kind: str, key=_TUNE_KEY):
    configs = [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=st) for m, n, w, st in space]
    return triton.autotune(
        configs, key=list(key), prune_configs_by={"early_config_prune": _pruner(kind)},
        do_bench=lambda fn, quantiles: _bench(fn, quantiles),  # looked up per call, so tests can spy on it
    )(kernel)


_CANDIDATES = {"fwd": fwd_candidates, "dkdv": dkdv_candidates, "dq": dq_candidates}
# The forward kernel's interior key blocks skip bounds checks when the block divides the key length.
_fwd_tuned = _autotuned(
    triton.heuristics({"EVEN_N": lambda a: a["NK"] % a["BLOCK_N"] == 0})(_fwd_kernel), FWD_SPACE + DECODE_SPACE, "fwd",
    _FWD_TUNE_KEY,
)
_dkdv_tuned = _autotuned(_dkdv_kernel, DKDV_SPACE, "dkdv")
_dq_tuned = _autotuned(_dq_kernel, DQ_SPACE, "dq")

# Tests and tuning scripts pin a block here: {"fwd" | "dkdv" | "dq": (BLOCK_M, BLOCK_N, num_warps, num_stages)}.
CONFIG_OVERRIDE: dict[str, Block] = {}

# ``tools.compile_check`` sets this to a ``(kernel, grid, args, meta, is_default) -> None`` callable that
# compiles every candidate instead of launching (ahead-of-time compilation for a GPU that is not here).
_CAPTURE = None


def _tune_n(*lengths: int) -> int:
    """Autotuning bucket of the sequence lengths: tune once per power of two, not once per length."""
    return _next_pow2(max(lengths))


def _case(q, mask, nq: int, nk: int) -> tuple:
    """What the autotuning key holds besides the kernel flags: device, mask dtype, length bucket."""
    return q.device, mask.dtype, _tune_n(nq, nk)


# Winners of the autotuner by case. Triton's Autotuner re-derives its key from every argument on each call
# (tens of microseconds, as much as the rest of the launch); after the first call of a case we launch the
# winner directly.
_TUNED: dict[tuple, Block] = {}


def _run(tuned, kind: str, kernel_id: int, block_d: int, dtype, causal: bool, grid, args, flags, case,
         decode: bool = False) -> None:
    blocks = _candidates(kind, kernel_id, block_d, dtype, causal, decode)
    if _CAPTURE is not None:
        for i, block in enumerate(blocks):
            _CAPTURE(tuned.fn, grid, args, {**flags, **_meta(block)}, i == 0)
        return
    block = blocks[0]
    if autotune_enabled() and len(blocks) > 1 and kind not in CONFIG_OVERRIDE:
        key = (kind, dtype, *case, *flags.values())
        block = _TUNED.get(key)
        if block is None:
            tuned[grid](*args, **flags)
            _TUNED[key] = _block(tuned.best_config)
            return
    tuned.fn[grid](*args, **flags, **_meta(block))


def _norms(spec: KernelSpec, q, k):
    """float32 row norms (B, H, N), computed once instead of per tile: squared for rbf and laplacian,
    inverse for cosine (0 for a zero row, whose cosine weights are 0), so the tile loop only multiplies."""
    if spec.kernel_id not in _NORM_KERNELS:
        return q, q  # unused placeholders

    def norm(t):
        sq = torch.linalg.vector_norm(t, dim=-1, dtype=torch.float32).square_()
        if spec.kernel_id == COSINE:
            sq = torch.where(sq > 0, sq.rsqrt(), 0.0)
        return sq.contiguous()

    return norm(q), norm(k)


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
    if interpreting() and tensors[0].dtype == torch.bfloat16:
        return tuple(t.float() for t in tensors), True
    return tensors, False


def _window_args(feat: Features, nq: int, nk: int) -> tuple[int, int]:
    """(WL, WR) for the kernels: an unbounded side becomes a bound no key reaches (sums stay in int32)."""
    if feat.window is None:
        return 0, 0
    big = nq + nk + 1
    left, right = feat.window
    return (big if left < 0 else left), (big if right < 0 else right)


def _feature_flags(spec: KernelSpec, normalize: bool, feat: Features, slope_grad: bool = False) -> dict:
    return dict(
        # rbf drops its row constant -gamma |q|^2 from the log-weight when normalizing, unless a soft cap (not
        # additive) or a sink (compared with the log-weights) needs the whole log-weight
        DROP_ROW=normalize and feat.softcap is None and feat.sinks is None,
        SOFTCAP=feat.softcap is not None, ALIBI=feat.alibi_slopes is not None, WINDOW=feat.window is not None,
        VARLEN=feat.varlen,
    )


def _feature_args(q, feat: Features):
    """Pointer and stride arguments of the features (``q`` fills the pointers a kernel never reads)."""
    slopes = feat.alibi_slopes if feat.alibi_slopes is not None else q
    ssb = 0 if feat.alibi_slopes is None or feat.alibi_slopes.shape[0] == 1 else feat.alibi_slopes.stride(0)
    cuq = feat.cu_seqlens_q if feat.varlen else q
    cuk = feat.cu_seqlens_k if feat.varlen else q
    return slopes, ssb, cuq, cuk


# Split-KV decoding: a forward whose query blocks and heads give fewer programs than this many per
# multiprocessor splits the keys into slices (``SPLIT_KV`` pins the number of slices, for tests).
_PROGRAMS_PER_SM = 2
_MIN_KEYS_PER_SPLIT = 256
SPLIT_KV: int | None = None


def _num_splits(q, programs: int, nk: int, feat: Features) -> int:
    if feat.varlen:
        return 1
    if SPLIT_KV is not None:
        return max(1, min(SPLIT_KV, nk))
    if not q.is_cuda:
        return 1
    sms = torch.cuda.get_device_properties(q.device).multi_processor_count
    want = -(-_PROGRAMS_PER_SM * sms // max(programs, 1))
    return max(1, min(want, nk // _MIN_KEYS_PER_SPLIT, 128))


# Decoding with grouped-query heads: the GROUP query heads that share a key/value head are rows of one block, so
# each key/value block is read once per group instead of once per query head (FlashDecoding's GQA packing).
PACK_GQA_MAX_QUERIES = 16


def _pack_gqa(group: int, nq: int, feat: Features, coord_chunk: bool, mask_kind: int, mask_strides) -> bool:
    """Whether the forward packs the heads of a group into its query blocks: a few queries, no packed batch, no
    coordinate chunks (their loads take one row pointer), a mask shared by the heads (head stride 0)."""
    return (group > 1 and nq <= PACK_GQA_MAX_QUERIES and not feat.varlen and not coord_chunk
            and (mask_kind == 0 or mask_strides[1] == 0))


def _merge_splits(out_p, lse_p, sinks, normalize: bool):
    """Merge split-KV partial results: out = sum_s exp(lse_s - lse) out_s, lse = logsumexp_s lse_s (and sink)."""
    if not normalize:
        return out_p.sum(0), lse_p[:0]
    parts = lse_p
    if sinks is not None:
        parts = torch.cat([lse_p, sinks.view(1, 1, -1, 1).expand(1, *lse_p.shape[1:])], 0)
    lse = torch.logsumexp(parts, 0)
    finite = torch.isfinite(lse)
    w = torch.where(finite, torch.exp(lse_p - torch.where(finite, lse, 0.0)), 0.0)
    out = (w.unsqueeze(-1) * out_p).sum(0)
    return out, lse.contiguous()


def forward(q, k, v, mask_view, mask_kind, spec: KernelSpec, normalize, causal, precision,
            feat: Features = NO_FEATURES):
    """Launch the forward kernel on (B, H, N, D) tensors (varlen: (1, H, total, D) views of the packed ones)."""
    (q, k, v), upcast = _interpreter_bf16(q, k, v)
    if upcast:
        out, lse = forward(q, k, v, mask_view, mask_kind, spec, normalize, causal, precision, feat)
        return out.bfloat16(), lse
    b, hq, nq, d = q.shape
    hk, nk, dv = k.shape[1], k.shape[2], v.shape[-1]
    nseq = feat.cu_seqlens_q.numel() - 1 if feat.varlen else b
    rows_q = feat.max_seqlen_q if feat.varlen else nq
    block_d, block_dv = _pow2(d), _pow2(dv)
    m, ms = _mask_args(mask_view, q)
    pack = _pack_gqa(hq // hk, nq, feat, _coord_chunk(spec, block_d), mask_kind, ms)
    heads = hk if pack else hq  # programs along grid axis 1, per sequence
    rows = nq * (hq // hk) if pack else rows_q  # block rows per (sequence, head of axis 1)
    splits = _num_splits(q, nseq * heads * _cdiv(rows, 64), nk, feat)
    if feat.varlen:  # packed (total, H, Dv) output, seen as (1, H, total, Dv)
        out = torch.empty((nq, hq, dv), device=q.device, dtype=q.dtype).transpose(0, 1).unsqueeze(0)
    else:
        out = torch.empty((b, hq, nq, dv), device=q.device, dtype=q.dtype)
    lse = torch.empty((b, hq, nq) if normalize else (0,), device=q.device, dtype=torch.float32)
    o_dst, l_dst = out, lse
    if splits > 1:
        o_dst = torch.empty((splits, b, hq, nq, dv), device=q.device, dtype=torch.float32)
        l_dst = torch.empty((splits, b, hq, nq) if normalize else (1, 0), device=q.device, dtype=torch.float32)
    qn, kn = _norms(spec, q, k)
    slopes, ssb, cuq, cuk = _feature_args(q, feat)
    wl, wr = _window_args(feat, nq, nk)
    sinks = feat.sinks if feat.sinks is not None else q
    args = (
        q, k, v, m, o_dst, l_dst, qn, kn, slopes, sinks, cuq, cuk,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), o_dst.stride(-4), o_dst.stride(-3), o_dst.stride(-2), *ms,
        o_dst.stride(0) if splits > 1 else 0, l_dst.stride(0) if splits > 1 else 0, ssb,
        hq, hk, hq // hk, nq, nk, d, dv, spec.c0, spec.c1, feat.softcap or 1.0, wl, wr, _cdiv(nk, splits),
        _tune_n(nq, nk),
    )
    flags = dict(
        KERNEL=int(spec.kernel_id), DEGREE=spec.degree, EXP=spec.exponential, NORMS=spec.kernel_id in _NORM_KERNELS,
        NORMALIZE=normalize, CAUSAL=causal, MASK_KIND=mask_kind, PRECISION=precision,
        EVEN_D=(d == block_d and dv == block_dv), COORD_CHUNK=_coord_chunk(spec, block_d),
        APPROX=q.dtype != torch.float32, **_feature_flags(spec, normalize, feat),
        SINK=feat.sinks is not None and splits == 1, SPLIT=splits > 1, PACK_GQA=pack, BLOCK_D=block_d,
        BLOCK_DV=block_dv,
    )
    with torch.cuda.device(q.device) if q.is_cuda else nullcontext():
        _run(_fwd_tuned, "fwd", int(spec.kernel_id), max(block_d, block_dv), q.dtype, causal,
             lambda meta: (_cdiv(rows, meta["BLOCK_M"]), nseq * heads, splits), args, flags,
             _case(q, m, rows_q, feat.max_seqlen_k if feat.varlen else nk), decode=splits > 1)
    if splits > 1:
        merged, lse_m = _merge_splits(o_dst, l_dst, feat.sinks, normalize)
        out.copy_(merged)
        if normalize:
            lse.copy_(lse_m)
    return out, lse


def backward(q, k, v, out, lse, dout, mask_view, mask_kind, spec: KernelSpec, normalize, causal, precision,
             bias_grad, feat: Features = NO_FEATURES, dlse=None, slope_grad: bool = False):
    """Gradients (dq, dk, dv, d bias, d slopes, d sinks); ``dlse`` is the upstream gradient of ``lse``."""
    (q, k, v, out, dout), upcast = _interpreter_bf16(q, k, v, out, dout)
    if upcast:
        grads = backward(q, k, v, out, lse, dout, mask_view, mask_kind, spec, normalize, causal, precision,
                         bias_grad, feat, dlse, slope_grad)
        return tuple(g.bfloat16() for g in grads[:3]) + grads[3:]
    b, hq, nq, d = q.shape
    hk, nk, dv = k.shape[1], k.shape[2], v.shape[-1]
    nseq = feat.cu_seqlens_q.numel() - 1 if feat.varlen else b
    rows_q = feat.max_seqlen_q if feat.varlen else nq
    rows_k = feat.max_seqlen_k if feat.varlen else nk
    dsinks = None
    if normalize:
        delta = (dout.float() * out.float()).sum(-1)  # Delta_i = dO_i . O_i
        if dlse is not None:  # d lse_i / d log w_ij = P_ij: the lse gradient enters as -dlse in Delta
            delta = delta - dlse.float()
        delta = delta.contiguous()
        if feat.sinks is not None:  # d out_i / d sink = -P_sink,i out_i, d lse_i / d sink = P_sink,i
            p_sink = torch.exp(feat.sinks.view(1, -1, 1) - lse)
            dsinks = -(p_sink * delta).sum((0, 2))
    else:
        delta = lse  # never read without normalization (NORMALIZE is a compile-time flag); any tensor fills it
    dq = torch.empty_like(q, memory_format=torch.contiguous_format)
    dk = torch.empty_like(k, memory_format=torch.contiguous_format)
    dvv = torch.empty_like(v, memory_format=torch.contiguous_format)
    # the unused pointer arguments (no bias gradient, no coordinate chunks) get ``lse``: never read, any tensor
    db = torch.zeros((b, hq, nq, nk), device=q.device, dtype=torch.float32) if bias_grad else lse
    slope_grad = slope_grad and feat.alibi_slopes is not None
    # one partial slope gradient per key block of the smallest BLOCK_N (16) and (sequence, head)
    dslope = torch.zeros((_cdiv(rows_k, 16), nseq * hq), device=q.device, dtype=torch.float32) if slope_grad else lse
    block_d, block_dv = _pow2(d), _pow2(dv)
    m, ms = _mask_args(mask_view, q)
    qn, kn = _norms(spec, q, k)
    chunk = _coord_chunk(spec, block_d)
    dq_acc = torch.zeros((b, hq, nq, d), device=q.device, dtype=torch.float32) if chunk else lse
    dk_acc = torch.zeros((b, hk, nk, d), device=q.device, dtype=torch.float32) if chunk else lse
    slopes, ssb, cuq, cuk = _feature_args(q, feat)
    wl, wr = _window_args(feat, nq, nk)
    flags = dict(
        COORD_CHUNK=chunk, KERNEL=int(spec.kernel_id), DEGREE=spec.degree, EXP=spec.exponential,
        NORMS=spec.kernel_id in _NORM_KERNELS, NORMALIZE=normalize, CAUSAL=causal, MASK_KIND=mask_kind,
        PRECISION=precision, APPROX=q.dtype != torch.float32, **_feature_flags(spec, normalize, feat),
        BLOCK_D=block_d, BLOCK_DV=block_dv,
    )
    common = (
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), dout.stride(0), dout.stride(1), dout.stride(2), *ms,
    )
    sizes = (hq, hk, hq // hk, nq, nk, d, dv, spec.c0, spec.c1, feat.softcap or 1.0, wl, wr, _tune_n(nq, nk))
    dkdv_args = (q, k, v, m, dout, lse, delta, dk, dvv, db, qn, kn, dk_acc, slopes, dslope, cuq, cuk, *common,
                 dk.stride(0), dk.stride(1), dk.stride(2), dvv.stride(0), dvv.stride(1), dvv.stride(2), ssb, *sizes)
    dq_args = (q, k, v, m, dout, lse, delta, dq, qn, kn, dq_acc, slopes, cuq, cuk, *common,
               dq.stride(0), dq.stride(1), dq.stride(2), ssb, *sizes)
    tune = (int(spec.kernel_id), max(block_d, block_dv), q.dtype, causal)
    with torch.cuda.device(q.device) if q.is_cuda else nullcontext():
        case = _case(q, m, rows_q, rows_k)
        _run(_dkdv_tuned, "dkdv", *tune, lambda meta: (_cdiv(rows_k, meta["BLOCK_N"]), nseq * hk), dkdv_args,
             dict(flags, BIAS_GRAD=bias_grad, SLOPE_GRAD=slope_grad), case)
        _run(_dq_tuned, "dq", *tune, lambda meta: (_cdiv(rows_q, meta["BLOCK_M"]), nseq * hq), dq_args, flags, case)
    if chunk:
        dq.copy_(dq_acc)
        dk.copy_(dk_acc)
    dslopes = None
    if slope_grad:
        dslopes = dslope.sum(0).view(nseq, hq)
        dslopes = dslopes.sum(0, keepdim=True) if feat.alibi_slopes.shape[0] == 1 else dslopes
    return dq, dk, dvv, (db if bias_grad else None), dslopes, dsinks
