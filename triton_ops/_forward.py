"""Fused forward kernel: out = norm(phi(s Q K^T, |Q|^2, |K|^2) [mask]) V, one pass over key blocks.

One program computes BLOCK_M query rows of one (batch, query head); key/value heads are shared by GROUP
consecutive query heads (grouped-query attention). Exponential kernels in normalized mode keep a running
maximum (FlashAttention's online softmax, base 2); the other kernels accumulate weights and their row sum
directly. Head dims are padded to a power of two with masked loads.
"""

import triton
import triton.language as tl

from ._coordinate import coordinate_score_chunked
from ._epilogue import LN2, LOG2E, log2_weight, raw_score, row_constant, weight


@triton.jit
def load_mask_tile(M, b, h, rows, cols, smb, smh, smm, smn, NQ, NK, MASK_KIND: tl.constexpr):
    """Boolean (MASK_KIND 1, as uint8) or additive (MASK_KIND 2, as float32) mask tile; strides may be 0."""
    ptrs = M + b * smb + h * smh + rows[:, None].to(tl.int64) * smm + cols[None, :] * smn
    inside = (rows[:, None] < NQ) & (cols[None, :] < NK)
    if MASK_KIND == 1:
        t = tl.load(ptrs, mask=inside, other=0) != 0
    else:
        t = tl.load(ptrs, mask=inside, other=0.0).to(tl.float32)
    return t


@triton.jit
def _fwd_inner(
    acc, l_i, m_i, q, qn, q_base, sqm, k_base, v_base, kn_base, M, b, h, rows, lo, hi,
    skn, svn, smb, smh, smm, smn, NQ, NK, D, DV, c0, c1,
    KERNEL: tl.constexpr, DEGREE: tl.constexpr, EXP: tl.constexpr, NORMS: tl.constexpr,
    NORMALIZE: tl.constexpr, MASK_KIND: tl.constexpr, PRECISION: tl.constexpr, COORD_CHUNK: tl.constexpr,
    CHECK_N: tl.constexpr, CAUSAL_TILE: tl.constexpr, EVEN_D: tl.constexpr, APPROX: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
):
    """Accumulate key blocks [lo, hi). CHECK_N: the sequence end may fall inside a block; CAUSAL_TILE: the
    causal diagonal crosses the blocks. Interior blocks skip both (no per-element select)."""
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        k_ptrs = k_base + cols[:, None].to(tl.int64) * skn + offs_d[None, :]
        v_ptrs = v_base + cols[:, None].to(tl.int64) * svn + offs_dv[None, :]
        if CHECK_N or not EVEN_D:
            k = tl.load(k_ptrs, mask=(cols[:, None] < NK) & (offs_d[None, :] < D), other=0.0)
            v = tl.load(v_ptrs, mask=(cols[:, None] < NK) & (offs_dv[None, :] < DV), other=0.0)
        else:
            k = tl.load(k_ptrs)
            v = tl.load(v_ptrs)
        if NORMS:
            kn = tl.load(kn_base + cols, mask=cols < NK, other=0.0)
        else:
            kn = tl.zeros([BLOCK_N], dtype=tl.float32)
        if COORD_CHUNK:
            s = coordinate_score_chunked(q_base, sqm, k_base, skn, rows, cols, NQ, NK, D, BLOCK_M, BLOCK_N, 16)
        else:
            s = raw_score(q, k, KERNEL, PRECISION)
        if (CHECK_N or CAUSAL_TILE) or (MASK_KIND == 1):
            valid = cols[None, :] < NK
            if CAUSAL_TILE:
                valid = valid & (cols[None, :] <= rows[:, None])
            if MASK_KIND == 1:
                valid = valid & load_mask_tile(M, b, h, rows, cols, smb, smh, smm, smn, NQ, NK, MASK_KIND)
        if EXP:
            lw = log2_weight(s, qn, kn, c0, KERNEL, NORMALIZE, False)
            if MASK_KIND == 2:
                lw = lw + load_mask_tile(M, b, h, rows, cols, smb, smh, smm, smn, NQ, NK, MASK_KIND) * LOG2E
            if (CHECK_N or CAUSAL_TILE) or (MASK_KIND == 1):
                lw = tl.where(valid, lw, float("-inf"))
            if NORMALIZE:
                m_new = tl.maximum(m_i, tl.max(lw, 1))
                if (CHECK_N or CAUSAL_TILE) or (MASK_KIND != 0):  # rows may have seen no key yet
                    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
                else:
                    m_safe = m_new
                alpha = tl.exp2(m_i - m_safe)
                p = tl.exp2(lw - m_safe[:, None])
                l_i = l_i * alpha + tl.sum(p, 1)
                acc = acc * alpha[:, None]
                m_i = m_new
            else:
                p = tl.exp2(lw)
        else:
            p = weight(s, qn, kn, c0, c1, KERNEL, DEGREE, APPROX)
            if MASK_KIND == 2:
                p = p * tl.exp2(load_mask_tile(M, b, h, rows, cols, smb, smh, smm, smn, NQ, NK, MASK_KIND) * LOG2E)
            if (CHECK_N or CAUSAL_TILE) or (MASK_KIND == 1):
                p = tl.where(valid, p, 0.0)
            if NORMALIZE:
                l_i = l_i + tl.sum(p, 1)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=PRECISION)
    return acc, l_i, m_i


@triton.jit(do_not_specialize=["TUNE_N"])
def _fwd_kernel(
    Q, K, V, M, O, L, QN, KN,
    sqb, sqh, sqm, skb, skh, skn, svb, svh, svn, sob, soh, som, smb, smh, smm, smn,
    H, HK, GROUP, NQ, NK, D, DV, c0, c1, TUNE_N,
    KERNEL: tl.constexpr, DEGREE: tl.constexpr, EXP: tl.constexpr, NORMS: tl.constexpr,
    NORMALIZE: tl.constexpr, CAUSAL: tl.constexpr, MASK_KIND: tl.constexpr, PRECISION: tl.constexpr,
    EVEN_N: tl.constexpr, EVEN_D: tl.constexpr, COORD_CHUNK: tl.constexpr, APPROX: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    hk = h // GROUP
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)

    q = tl.load(
        Q + b * sqb + h * sqh + rows[:, None].to(tl.int64) * sqm + offs_d[None, :],
        mask=(rows[:, None] < NQ) & (offs_d[None, :] < D), other=0.0,
    )
    if NORMS:  # row norms (squared; inverse for cosine) are precomputed once per row in float32
        qn = tl.load(QN + pid_bh.to(tl.int64) * NQ + rows, mask=rows < NQ, other=0.0)
    else:
        qn = tl.zeros([BLOCK_M], dtype=tl.float32)
    q_base = Q + b * sqb + h * sqh
    k_base = K + b * skb + hk * skh
    v_base = V + b * svb + hk * svh
    kn_base = KN + (b * HK + hk) * NK

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)

    # Two stages over the key blocks, as in the Triton fused-attention tutorial: [0, split) holds whole blocks
    # that every row of this program sees, so they skip the bounds check and the causal select; [split, end)
    # holds what is left: the blocks the causal diagonal crosses, or the last partial block of the sequence.
    if CAUSAL:  # top-left aligned: key j is visible to query i when j <= i
        end = tl.minimum(NK, (pid_m + 1) * BLOCK_M)
        split = tl.minimum(((pid_m * BLOCK_M) // BLOCK_N) * BLOCK_N, (NK // BLOCK_N) * BLOCK_N)
    elif EVEN_N:
        end = NK
        split = NK
    else:
        end = NK
        split = (NK // BLOCK_N) * BLOCK_N
    acc, l_i, m_i = _fwd_inner(
        acc, l_i, m_i, q, qn, q_base, sqm, k_base, v_base, kn_base, M, b, h, rows, 0, split,
        skn, svn, smb, smh, smm, smn, NQ, NK, D, DV, c0, c1,
        KERNEL, DEGREE, EXP, NORMS, NORMALIZE, MASK_KIND, PRECISION, COORD_CHUNK, False, False, EVEN_D, APPROX,
        BLOCK_M, BLOCK_N, BLOCK_D, BLOCK_DV,
    )
    if CAUSAL or not EVEN_N:  # compile the checked stage only where it can run
        acc, l_i, m_i = _fwd_inner(
            acc, l_i, m_i, q, qn, q_base, sqm, k_base, v_base, kn_base, M, b, h, rows, split, end,
            skn, svn, smb, smh, smm, smn, NQ, NK, D, DV, c0, c1,
            KERNEL, DEGREE, EXP, NORMS, NORMALIZE, MASK_KIND, PRECISION, COORD_CHUNK, True, CAUSAL, EVEN_D, APPROX,
            BLOCK_M, BLOCK_N, BLOCK_D, BLOCK_DV,
        )

    if NORMALIZE:
        nonzero = l_i != 0.0
        acc = acc / tl.where(nonzero, l_i, 1.0)[:, None]
        if EXP:
            lse = (m_i + tl.log2(tl.where(nonzero, l_i, 1.0))) * LN2 + row_constant(qn, c0, KERNEL, NORMALIZE)
        else:
            lse = tl.log(tl.where(nonzero, l_i, 1.0))
        lse = tl.where(nonzero, lse, float("-inf"))
        tl.store(L + pid_bh.to(tl.int64) * NQ + rows, lse, mask=rows < NQ)
    tl.store(
        O + b * sob + h * soh + rows[:, None].to(tl.int64) * som + offs_dv[None, :],
        acc.to(O.dtype.element_ty),
        mask=(rows[:, None] < NQ) & (offs_dv[None, :] < DV),
    )
