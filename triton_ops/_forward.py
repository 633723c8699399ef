"""Fused forward kernel: out = norm(phi(s Q K^T, |Q|^2, |K|^2) [mask]) V, one pass over key blocks.

One program computes BLOCK_M query rows of one (batch, query head) and, with SPLIT, one slice of the keys
(split-KV decoding: partial outputs and log-sum-exps merged afterwards). Key/value heads are shared by GROUP
consecutive query heads (grouped-query attention). Exponential kernels in normalized mode keep a running
maximum (FlashAttention's online softmax, base 2); the other kernels accumulate weights and their row sum
directly. Head dims are padded to a power of two with masked loads.

The model features are compile-time switches: SOFTCAP (``cap * tanh(u / cap)`` on the natural log-kernel of
the exponential kernels, on the outer function's argument ``u = c0 q.k`` (cosine: ``q.k / (|q| |k|)``) of the
others),
ALIBI (``-slope |i + nk - nq - j|`` added to the log-weight), WINDOW (keys ``i + nk - nq - WL <= j <=
i + nk - nq + WR``, bottom-right aligned; key blocks outside it are never visited), SINK (``exp(sink)`` joins
the row sum) and VARLEN (a packed batch: the sequence of a program and its offsets come from ``CUQ``/``CUK``).
"""

import triton
import triton.language as tl

from ._coordinate import coordinate_score_chunked
from ._epilogue import LN2, LOG2E, _tanh, capped_weight, log2_weight, raw_score, row_constant, weight


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
def band_keep(rows, cols, nk, shift, WL, WR, CAUSAL: tl.constexpr, WINDOW: tl.constexpr):
    """Keys inside the sequence, the causal triangle (top-left) and the window (bottom-right aligned)."""
    keep = cols[None, :] < nk
    if CAUSAL:
        keep = keep & (cols[None, :] <= rows[:, None])
    if WINDOW:
        pos = rows[:, None] + shift
        keep = keep & (cols[None, :] >= pos - WL) & (cols[None, :] <= pos + WR)
    return keep


@triton.jit
def alibi_bias(slope, rows, cols, shift):
    """Natural-log ALiBi bias -slope |i + shift - j| of a tile (queries aligned bottom-right)."""
    return -slope * tl.abs((rows[:, None] + shift - cols[None, :]).to(tl.float32))


@triton.jit
def softcapped(lw, cap, APPROX: tl.constexpr):
    """(capped base-2 log-weight, d capped / d uncapped): cap * tanh(x / cap) on the natural log x."""
    t = _tanh(lw * (LN2 / cap), APPROX)
    return t * (cap * LOG2E), 1.0 - t * t


@triton.jit
def sequence_bounds(CUQ, CUK, pid_bh, HEADS, NQ, NK, VARLEN: tl.constexpr):
    """(batch index, query and key lengths, query and key row offsets) of program row ``pid_bh`` over ``HEADS``
    heads: a packed sequence has batch stride 0 and rows offset by its start in ``cu_seqlens``."""
    if VARLEN:
        seq = pid_bh // HEADS
        b = 0
        q0 = tl.load(CUQ + seq)
        k0 = tl.load(CUK + seq)
        nq = tl.load(CUQ + seq + 1) - q0
        nk = tl.load(CUK + seq + 1) - k0
        q_off = q0.to(tl.int64)
        k_off = k0.to(tl.int64)
    else:
        b = (pid_bh // HEADS).to(tl.int64)
        nq = NQ
        nk = NK
        q_off = 0
        k_off = 0
    return b, nq, nk, q_off, k_off


@triton.jit
def key_range(r0, r1, nq, nk, shift, WL, WR, CAUSAL: tl.constexpr, WINDOW: tl.constexpr, VARLEN: tl.constexpr,
              BLOCK_N: tl.constexpr):
    """Key bounds of query rows [r0, r1): [lo, a) and [b, hi) need the band check, [a, b) holds
    whole blocks every row sees (lo, a, b multiples of BLOCK_N). VARLEN: empty past the sequence end."""
    zero = r0 * 0  # a tensor even where nk was specialized to the constant 1
    hi = zero + nk
    full = zero + nk
    if CAUSAL:  # key j is visible to query i when j <= i
        hi = tl.minimum(hi, r1)
        full = tl.minimum(full, r0 + 1)
    lo = zero
    a = zero
    if WINDOW:
        hi = tl.minimum(hi, r1 + shift + WR)
        full = tl.minimum(full, r0 + shift + WR + 1)
        lo = (tl.maximum(r0 + shift - WL, 0) // BLOCK_N) * BLOCK_N
        a = ((tl.maximum(r1 - 1 + shift - WL, 0) + BLOCK_N - 1) // BLOCK_N) * BLOCK_N
    if VARLEN:  # a query block past its sequence's end
        hi = tl.where(r0 < nq, hi, 0)
    b = (tl.maximum(full, 0) // BLOCK_N) * BLOCK_N
    lo = tl.minimum(lo, hi)
    a = tl.minimum(tl.maximum(a, lo), hi)
    b = tl.minimum(tl.maximum(b, a), hi)
    return lo, a, b, hi


@triton.jit
def _fwd_inner(
    acc, l_i, m_i, q, qn, q_base, sqm, k_base, v_base, kn_base, M, b, h, rows, lo, hi,
    skn, svn, smb, smh, smm, smn, nq, nk, shift, WL, WR, slope, cap, D, DV, c0, c1,
    KERNEL: tl.constexpr, DEGREE: tl.constexpr, EXP: tl.constexpr, NORMS: tl.constexpr,
    NORMALIZE: tl.constexpr, DROP_ROW: tl.constexpr, MASK_KIND: tl.constexpr, PRECISION: tl.constexpr,
    COORD_CHUNK: tl.constexpr, CHECK: tl.constexpr, CAUSAL_TILE: tl.constexpr, WINDOW_TILE: tl.constexpr,
    SOFTCAP: tl.constexpr, ALIBI: tl.constexpr, EVEN_D: tl.constexpr, APPROX: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
):
    """Accumulate key blocks [lo, hi). CHECK: the sequence end, the causal diagonal (CAUSAL_TILE), the window
    edges (WINDOW_TILE) or a boolean mask may cut the blocks; interior blocks skip the per-element select."""
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        k_ptrs = k_base + cols[:, None].to(tl.int64) * skn + offs_d[None, :]
        v_ptrs = v_base + cols[:, None].to(tl.int64) * svn + offs_dv[None, :]
        if CHECK or not EVEN_D:
            k = tl.load(k_ptrs, mask=(cols[:, None] < nk) & (offs_d[None, :] < D), other=0.0)
            v = tl.load(v_ptrs, mask=(cols[:, None] < nk) & (offs_dv[None, :] < DV), other=0.0)
        else:
            k = tl.load(k_ptrs)
            v = tl.load(v_ptrs)
        if NORMS:
            kn = tl.load(kn_base + cols, mask=cols < nk, other=0.0)
        else:
            kn = tl.zeros([BLOCK_N], dtype=tl.float32)
        if COORD_CHUNK:
            s = coordinate_score_chunked(q_base, sqm, k_base, skn, rows, cols, nq, nk, D, BLOCK_M, BLOCK_N, 16)
        else:
            s = raw_score(q, k, KERNEL, PRECISION)
        if CHECK:
            valid = band_keep(rows, cols, nk, shift, WL, WR, CAUSAL_TILE, WINDOW_TILE)
            if MASK_KIND == 1:
                valid = valid & load_mask_tile(M, b, h, rows, cols, smb, smh, smm, smn, nq, nk, MASK_KIND)
        if EXP:
            lw = log2_weight(s, qn, kn, c0, KERNEL, DROP_ROW, False)
            if SOFTCAP:
                lw, _ = softcapped(lw, cap, APPROX)
            if MASK_KIND == 2:
                lw = lw + load_mask_tile(M, b, h, rows, cols, smb, smh, smm, smn, nq, nk, MASK_KIND) * LOG2E
            if ALIBI:
                lw = lw + alibi_bias(slope, rows, cols, shift) * LOG2E
            if CHECK:
                lw = tl.where(valid, lw, float("-inf"))
            if NORMALIZE:
                m_new = tl.maximum(m_i, tl.max(lw, 1))
                if CHECK or (MASK_KIND != 0):  # rows may have seen no key yet
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
            if SOFTCAP:
                p, _, _, _ = capped_weight(s, qn, kn, c0, c1, cap, KERNEL, DEGREE, APPROX)
            else:
                p = weight(s, qn, kn, c0, c1, KERNEL, DEGREE, APPROX)
            if MASK_KIND == 2:
                p = p * tl.exp2(load_mask_tile(M, b, h, rows, cols, smb, smh, smm, smn, nq, nk, MASK_KIND) * LOG2E)
            if ALIBI:
                p = p * tl.exp2(alibi_bias(slope, rows, cols, shift) * LOG2E)
            if CHECK:
                p = tl.where(valid, p, 0.0)
            if NORMALIZE:
                l_i = l_i + tl.sum(p, 1)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=PRECISION)
    return acc, l_i, m_i


@triton.jit(do_not_specialize=["TUNE_N"])
def _fwd_kernel(
    Q, K, V, M, O, L, QN, KN, SLOPES, SINKS, CUQ, CUK,
    sqb, sqh, sqm, skb, skh, skn, svb, svh, svn, sob, soh, som, smb, smh, smm, smn, sos, sls, ssb,
    H, HK, GROUP, NQ, NK, D, DV, c0, c1, cap, WL, WR, SPLIT_N, TUNE_N,
    KERNEL: tl.constexpr, DEGREE: tl.constexpr, EXP: tl.constexpr, NORMS: tl.constexpr,
    NORMALIZE: tl.constexpr, DROP_ROW: tl.constexpr, CAUSAL: tl.constexpr, MASK_KIND: tl.constexpr,
    PRECISION: tl.constexpr, EVEN_N: tl.constexpr, EVEN_D: tl.constexpr, COORD_CHUNK: tl.constexpr,
    APPROX: tl.constexpr, SOFTCAP: tl.constexpr, ALIBI: tl.constexpr, WINDOW: tl.constexpr, SINK: tl.constexpr,
    VARLEN: tl.constexpr, SPLIT: tl.constexpr, PACK_GQA: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    if PACK_GQA:  # decoding: one program per (batch, kv head); block row r is query r % NQ of head r // NQ
        hk = (pid_bh % HK).to(tl.int64)
        b = (pid_bh // HK).to(tl.int64)
        r = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = r < NQ * GROUP
        h = hk * GROUP + tl.minimum(r // NQ, GROUP - 1).to(tl.int64)  # padding rows repeat a head, never stored
        h_mask = hk * GROUP  # masks are shared by the heads here (head stride 0)
        rows = r % NQ
        nq = NQ
        nk = NK
        q_off = 0
        k_off = 0
    else:
        h = (pid_bh % H).to(tl.int64)
        hk = h // GROUP
        h_mask = h
        b, nq, nk, q_off, k_off = sequence_bounds(CUQ, CUK, pid_bh, H, NQ, NK, VARLEN)
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < nq
    shift = nk - nq  # bottom-right alignment of the window and ALiBi
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    q_base = Q + b * sqb + h * sqh + q_off * sqm  # one row pointer per block row with PACK_GQA
    rvec = (b * H + h) * NQ + q_off  # (B, H, NQ) row vectors: norms, lse

    if PACK_GQA:
        q = tl.load((q_base + rows.to(tl.int64) * sqm)[:, None] + offs_d[None, :],
                    mask=row_ok[:, None] & (offs_d[None, :] < D), other=0.0)
    else:
        q = tl.load(
            q_base + rows[:, None].to(tl.int64) * sqm + offs_d[None, :],
            mask=(rows[:, None] < nq) & (offs_d[None, :] < D), other=0.0,
        )
    if NORMS:  # row norms (squared; inverse for cosine) are precomputed once per row in float32
        qn = tl.load(QN + rvec + rows, mask=row_ok, other=0.0)
    else:
        qn = tl.zeros([BLOCK_M], dtype=tl.float32)
    k_base = K + b * skb + hk * skh + k_off * skn
    v_base = V + b * svb + hk * svh + k_off * svn
    kn_base = KN + (b * HK + hk) * NK + k_off
    slope = 0.0
    if ALIBI:
        if PACK_GQA:
            slope = tl.load(SLOPES + b * ssb + h)[:, None]  # one slope per block row
        else:
            slope = tl.load(SLOPES + b * ssb + h)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)

    # Stages over the key blocks, as in the Triton fused-attention tutorial: [a, b) holds whole blocks that
    # every row of this program sees, so they skip the bounds check and the band select; [lo, a) and [b, hi)
    # hold what is left: the blocks the window's left edge, the causal diagonal or the window's right edge
    # cross, or the last partial block. Blocks outside [lo, hi) are never visited: O(N window) work.
    if ((CAUSAL or WINDOW) or (VARLEN or SPLIT)):
        if PACK_GQA:  # the block's rows are all NQ queries (of several heads)
            r0 = pid_m * 0
            r1 = r0 + NQ
        else:
            r0 = pid_m * BLOCK_M
            r1 = r0 + BLOCK_M
        lo, a, bnd, hi = key_range(r0, r1, nq, nk, shift, WL, WR, CAUSAL, WINDOW, VARLEN, BLOCK_N)
    else:  # every key: plain bounds keep the register allocation of the feature-free kernel
        lo = 0
        a = 0
        hi = NK
        if EVEN_N:
            bnd = NK
        else:
            bnd = (NK // BLOCK_N) * BLOCK_N
    if SPLIT:  # this program's slice of the keys: [ks, ke), block-aligned, the last one open-ended
        pid_s = tl.program_id(2)
        ks = ((pid_s * SPLIT_N) // BLOCK_N) * BLOCK_N
        ke = tl.where(pid_s == tl.num_programs(2) - 1, hi, (((pid_s + 1) * SPLIT_N) // BLOCK_N) * BLOCK_N)
        hi = tl.minimum(hi, ke)
        lo = tl.minimum(tl.maximum(lo, ks), hi)
        a = tl.minimum(tl.maximum(a, lo), hi)
        bnd = tl.minimum(tl.maximum(bnd, a), hi)
    if not (WINDOW or SPLIT):  # a constant start lets the compiler see the interior loop's first block
        a = 0
    if WINDOW:
        acc, l_i, m_i = _fwd_inner(
            acc, l_i, m_i, q, qn, q_base, sqm, k_base, v_base, kn_base, M, b, h_mask, rows, lo, a,
            skn, svn, smb, smh, smm, smn, nq, nk, shift, WL, WR, slope, cap, D, DV, c0, c1,
            KERNEL, DEGREE, EXP, NORMS, NORMALIZE, DROP_ROW, MASK_KIND, PRECISION, COORD_CHUNK, True, CAUSAL,
            True, SOFTCAP, ALIBI, EVEN_D, APPROX, BLOCK_M, BLOCK_N, BLOCK_D, BLOCK_DV,
        )
    acc, l_i, m_i = _fwd_inner(
        acc, l_i, m_i, q, qn, q_base, sqm, k_base, v_base, kn_base, M, b, h_mask, rows, a, bnd,
        skn, svn, smb, smh, smm, smn, nq, nk, shift, WL, WR, slope, cap, D, DV, c0, c1,
        KERNEL, DEGREE, EXP, NORMS, NORMALIZE, DROP_ROW, MASK_KIND, PRECISION, COORD_CHUNK, MASK_KIND == 1, False,
        False, SOFTCAP, ALIBI, EVEN_D, APPROX, BLOCK_M, BLOCK_N, BLOCK_D, BLOCK_DV,
    )
    if ((CAUSAL or WINDOW) or (VARLEN or SPLIT)) or (not EVEN_N):  # compile the checked stage only where it can run
        acc, l_i, m_i = _fwd_inner(
            acc, l_i, m_i, q, qn, q_base, sqm, k_base, v_base, kn_base, M, b, h_mask, rows, bnd, hi,
            skn, svn, smb, smh, smm, smn, nq, nk, shift, WL, WR, slope, cap, D, DV, c0, c1,
            KERNEL, DEGREE, EXP, NORMS, NORMALIZE, DROP_ROW, MASK_KIND, PRECISION, COORD_CHUNK, True, CAUSAL,
            WINDOW, SOFTCAP, ALIBI, EVEN_D, APPROX, BLOCK_M, BLOCK_N, BLOCK_D, BLOCK_DV,
        )

    if SINK:  # normalized only (never with SPLIT: the merge adds it): exp(sink) joins the row sum
        if EXP:
            s2 = tl.zeros([BLOCK_M], dtype=tl.float32) + tl.load(SINKS + h) * LOG2E
            m_all = tl.maximum(m_i, s2)
            alpha = tl.exp2(m_i - m_all)
            l_i = l_i * alpha + tl.exp2(s2 - m_all)
            acc = acc * alpha[:, None]
            m_i = m_all
        else:
            l_i = l_i + tl.exp(tl.load(SINKS + h))
    o_base = O + b * sob + h * soh + q_off * som
    l_base = L + rvec
    if SPLIT:
        o_base += tl.program_id(2).to(tl.int64) * sos
        l_base += tl.program_id(2).to(tl.int64) * sls
    if NORMALIZE:
        nonzero = l_i != 0.0
        acc = acc / tl.where(nonzero, l_i, 1.0)[:, None]
        if EXP:
            lse = (m_i + tl.log2(tl.where(nonzero, l_i, 1.0))) * LN2 + row_constant(qn, c0, KERNEL, DROP_ROW)
        else:
            lse = tl.log(tl.where(nonzero, l_i, 1.0))
        lse = tl.where(nonzero, lse, float("-inf"))
        tl.store(l_base + rows, lse, mask=row_ok)
    if PACK_GQA:
        o_ptrs = (o_base + rows.to(tl.int64) * som)[:, None] + offs_dv[None, :]
    else:
        o_ptrs = o_base + rows[:, None].to(tl.int64) * som + offs_dv[None, :]
    tl.store(o_ptrs, acc.to(O.dtype.element_ty), mask=row_ok[:, None] & (offs_dv[None, :] < DV))
