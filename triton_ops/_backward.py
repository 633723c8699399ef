"""Backward kernels by recomputation (FlashAttention-2 style).

Notation for one tile: w_ij = kappa_ij * exp(bias_ij) (0 where masked), P_ij = w_ij / L_i in normalized mode
(L_i the row sum, stored as its log) and P_ij = w_ij otherwise; dP = dO V^T; Delta_i = dO_i . O_i.
The gradient with respect to w is G = (dP - Delta) / L (normalized) or dP (un-normalized), so

    dV = P^T dO,    d bias = G * w   (= P (dP - Delta) when normalized),
    d score = G * dw/dscore,  d|q|^2 = G * dw/d|q|^2,  d|k|^2 = G * dw/d|k|^2,

with dw/dx = w * dlog(w)/dx for exponential kernels. Then dQ = dscore K + 2 q rowsum(d|q|^2) and
dK = dscore^T Q + 2 k colsum(d|k|^2) (dot kernels), or the min-rule for the coordinate kernel.
``_dkdv_kernel`` owns one key block and loops over the queries of every head of its group (no atomics);
``_dq_kernel`` owns one query block and loops over the keys. Both visit only the blocks of the causal/window
band. ALiBi enters as one more additive bias (its slope gradient, ``sum_ij t_ij (-|i + shift - j|)``, is summed
per key block into ``DSLOPE``); a soft cap multiplies the log-weight derivatives (exponential kernels) or the
outer function's derivative (the others, ``capped_weight``) by ``1 - tanh^2``; sinks only
change ``lse`` (their gradient is a row reduction done by the caller).
"""

import triton
import triton.language as tl

from ._coordinate import coordinate_grads, coordinate_grads_chunked, coordinate_score_chunked
from ._epilogue import (
    _EXP_INTERSECTION, LOG2E, capped_weight, log2_weight, raw_score, row_constant, weight, weight_derivatives,
)
from ._forward import alibi_bias, band_keep, key_range, load_mask_tile, sequence_bounds, softcapped


@triton.jit
def _tile_grads(
    q, k, v, do, qn, kn, lse, delta, M, b, h, rows, cols, smb, smh, smm, smn, NQ, NK, c0, c1,
    q_base, sqm, k_base, skn, D, shift, WL, WR, slope, cap,
    KERNEL: tl.constexpr, DEGREE: tl.constexpr, EXP: tl.constexpr, NORMALIZE: tl.constexpr,
    DROP_ROW: tl.constexpr, CAUSAL: tl.constexpr, MASK_KIND: tl.constexpr, PRECISION: tl.constexpr,
    COORD_CHUNK: tl.constexpr, APPROX: tl.constexpr, SOFTCAP: tl.constexpr, ALIBI: tl.constexpr,
    WINDOW: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Recompute one (BLOCK_M, BLOCK_N) tile; return P, d score, d|q|^2, d|k|^2 and the bias gradient."""
    if COORD_CHUNK:
        s = coordinate_score_chunked(q_base, sqm, k_base, skn, rows, cols, NQ, NK, D, BLOCK_M, BLOCK_N, 16)
    else:
        s = raw_score(q, k, KERNEL, PRECISION)
    valid = (rows[:, None] < NQ) & band_keep(rows, cols, NK, shift, WL, WR, CAUSAL, WINDOW)
    if MASK_KIND == 1:
        valid = valid & load_mask_tile(M, b, h, rows, cols, smb, smh, smm, smn, NQ, NK, MASK_KIND)
    if MASK_KIND == 2:
        bias = load_mask_tile(M, b, h, rows, cols, smb, smh, smm, smn, NQ, NK, MASK_KIND)
        if ALIBI:
            bias = bias + alibi_bias(slope, rows, cols, shift)
    elif ALIBI:
        bias = alibi_bias(slope, rows, cols, shift)
    dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
    if NORMALIZE:
        dp = dp - delta[:, None]
    if EXP or not SOFTCAP:
        ds, dqn, dkn = weight_derivatives(s, qn, kn, c0, c1, KERNEL, DEGREE, APPROX)
    if EXP:
        lw = log2_weight(s, qn, kn, c0, KERNEL, DROP_ROW, True)
        if SOFTCAP:
            lw, dcap = softcapped(lw, cap, APPROX)
            ds = ds * dcap
            dqn = dqn * dcap
            dkn = dkn * dcap
        if (MASK_KIND == 2) or ALIBI:
            lw = lw + bias * LOG2E
        lw = tl.where(valid, lw, float("-inf"))
        if NORMALIZE:
            # lse (natural log) includes rbf's row constant, which log2_weight leaves out: remove it, go to base 2.
            # Fully masked rows have lse = -inf: make P = 0 there instead of exp(-inf + inf).
            lse2 = (lse - row_constant(qn, c0, KERNEL, DROP_ROW)) * LOG2E
            lse2 = tl.where(lse == float("-inf"), float("inf"), lse2)
            p = tl.exp2(lw - lse2[:, None])
        else:
            p = tl.exp2(lw)
        t = p * dp  # dLoss/dlog(w) = G * w, which is also the bias gradient
        u = t  # the derivatives of exponential kernels are of log(w), so they multiply G * w
    else:
        if SOFTCAP:  # the cap sits inside the outer function: its chain factor comes with the derivatives
            w, ds, dqn, dkn = capped_weight(s, qn, kn, c0, c1, cap, KERNEL, DEGREE, APPROX)
        else:
            w = weight(s, qn, kn, c0, c1, KERNEL, DEGREE, APPROX)
        if (MASK_KIND == 2) or ALIBI:
            e = tl.exp2(bias * LOG2E)
            w = w * e
        w = tl.where(valid, w, 0.0)
        if NORMALIZE:
            inv_l = tl.where(lse == float("-inf"), 0.0, tl.exp(-lse))
            p = w * inv_l[:, None]
            g = dp * inv_l[:, None]
        else:
            p = w
            g = dp
        t = g * w
        u = tl.where(valid, g, 0.0)  # dLoss/dkappa = G * exp(bias)
        if (MASK_KIND == 2) or ALIBI:
            u = u * e
    return p, u * ds, u * dqn, u * dkn, t


@triton.jit(do_not_specialize=["TUNE_N"])
def _dkdv_kernel(
    Q, K, V, M, DO, LSE, DELTA, DK, DV, DB, QN, KN, DKACC, SLOPES, DSLOPE, CUQ, CUK,
    sqb, sqh, sqm, skb, skh, skn, svb, svh, svn, sdob, sdoh, sdom, smb, smh, smm, smn,
    sdkb, sdkh, sdkn, sdvb, sdvh, sdvn, ssb,
    H, HK, GROUP, NQ, NK, D, DVD, c0, c1, cap, WL, WR, TUNE_N,
    KERNEL: tl.constexpr, DEGREE: tl.constexpr, EXP: tl.constexpr, NORMS: tl.constexpr,
    NORMALIZE: tl.constexpr, DROP_ROW: tl.constexpr, CAUSAL: tl.constexpr, MASK_KIND: tl.constexpr,
    PRECISION: tl.constexpr, BIAS_GRAD: tl.constexpr, COORD_CHUNK: tl.constexpr, APPROX: tl.constexpr,
    SOFTCAP: tl.constexpr, ALIBI: tl.constexpr, SLOPE_GRAD: tl.constexpr, WINDOW: tl.constexpr,
    VARLEN: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    hk = (pid_bh % HK).to(tl.int64)
    b, nq, nk, q_off, k_off = sequence_bounds(CUQ, CUK, pid_bh, HK, NQ, NK, VARLEN)
    shift = nk - nq
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    kmask = (cols[:, None] < nk) & (offs_d[None, :] < D)
    vmask = (cols[:, None] < nk) & (offs_dv[None, :] < DVD)
    k_base = K + b * skb + hk * skh + k_off * skn
    kvec = (b * HK + hk) * NK + k_off
    k = tl.load(k_base + cols[:, None].to(tl.int64) * skn + offs_d[None, :], mask=kmask, other=0.0)
    v = tl.load(V + b * svb + hk * svh + k_off * svn + cols[:, None].to(tl.int64) * svn + offs_dv[None, :],
                mask=vmask, other=0.0)
    if NORMS:
        kn = tl.load(KN + kvec + cols, mask=cols < nk, other=0.0)
    else:
        kn = tl.zeros([BLOCK_N], dtype=tl.float32)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], dtype=tl.float32)
    rk = tl.zeros([BLOCK_N], dtype=tl.float32)
    # the queries that see this key block: i >= j (causal), i + shift - WL <= j <= i + shift + WR (window)
    c_first = pid_n * BLOCK_N
    lo = 0
    hi = nq
    if CAUSAL:
        lo = (c_first // BLOCK_M) * BLOCK_M
    if WINDOW:
        lo = (tl.maximum(tl.maximum(lo, c_first - shift - WR), 0) // BLOCK_M) * BLOCK_M
        hi = tl.minimum(hi, c_first + BLOCK_N - shift + WL)
    if VARLEN:  # a key block past its sequence's end
        hi = tl.where(c_first < nk, hi, 0)
    for g in range(GROUP):
        h = hk * GROUP + g
        bh = b * H + h
        slope = 0.0
        if ALIBI:
            slope = tl.load(SLOPES + b * ssb + h)
        if SLOPE_GRAD:
            dsl = tl.zeros([1], dtype=tl.float32)
        for start_m in range(lo, hi, BLOCK_M):
            rows = start_m + offs_m
            rmask = rows < nq
            # the per-head bases are formed inside the loop, as the loads need them: kept live across it they
            # cost the dK/dV kernel (at its register limit) spills
            rvec = bh * NQ + q_off
            q_base = Q + b * sqb + h * sqh + q_off * sqm
            q = tl.load(
                q_base + rows[:, None].to(tl.int64) * sqm + offs_d[None, :],
                mask=rmask[:, None] & (offs_d[None, :] < D), other=0.0,
            )
            do = tl.load(
                DO + b * sdob + h * sdoh + q_off * sdom + rows[:, None].to(tl.int64) * sdom + offs_dv[None, :],
                mask=rmask[:, None] & (offs_dv[None, :] < DVD), other=0.0,
            )
            if NORMS:
                qn = tl.load(QN + rvec + rows, mask=rmask, other=0.0)
            else:
                qn = tl.zeros([BLOCK_M], dtype=tl.float32)
            if NORMALIZE:
                lse = tl.load(LSE + rvec + rows, mask=rmask, other=0.0)
                delta = tl.load(DELTA + rvec + rows, mask=rmask, other=0.0)
            else:  # un-normalized weights need neither; any (BLOCK_M,) float32 tensor fills the unused arguments
                lse = tl.zeros([BLOCK_M], dtype=tl.float32)
                delta = lse
            p, dsc, dqn, dkn, t = _tile_grads(
                q, k, v, do, qn, kn, lse, delta, M, b, h, rows, cols, smb, smh, smm, smn, nq, nk, c0, c1,
                q_base, sqm, k_base, skn, D, shift, WL, WR, slope, cap,
                KERNEL, DEGREE, EXP, NORMALIZE, DROP_ROW, CAUSAL, MASK_KIND, PRECISION, COORD_CHUNK, APPROX,
                SOFTCAP, ALIBI, WINDOW, BLOCK_M, BLOCK_N,
            )
            dv = tl.dot(tl.trans(p.to(do.dtype)), do, dv, input_precision=PRECISION)
            if COORD_CHUNK:
                coordinate_grads_chunked(
                    q_base, sqm, k_base, skn, rows, cols, dsc, nq, nk, D, DKACC + kvec * D, False, 16,
                )
            elif KERNEL == _EXP_INTERSECTION:  # min-rule instead of a matmul
                _, dkc = coordinate_grads(q, k, dsc)
                dk = dk + dkc
            else:
                dk = tl.dot(tl.trans(dsc.to(q.dtype)), q, dk, input_precision=PRECISION)
            if NORMS:
                rk = rk + tl.sum(dkn, 0)
            if SLOPE_GRAD:
                dsl += tl.sum(tl.sum(t * alibi_bias(1.0, rows, cols, shift), 1), 0)
            if BIAS_GRAD:
                tl.store(
                    DB + bh * NQ * NK + rows[:, None].to(tl.int64) * NK + cols[None, :], t,
                    mask=rmask[:, None] & (cols[None, :] < nk),
                )
        if SLOPE_GRAD:  # one partial sum per (key block, batch * head); the caller adds the key blocks up
            tl.store(DSLOPE + pid_n.to(tl.int64) * (tl.num_programs(1) * GROUP) + pid_bh * GROUP + g
                     + tl.arange(0, 1), dsl)
    if NORMS:
        dk = dk + 2.0 * k.to(tl.float32) * rk[:, None]
    if not COORD_CHUNK:  # otherwise dK was accumulated in DKACC
        tl.store(DK + b * sdkb + hk * sdkh + k_off * sdkn + cols[:, None].to(tl.int64) * sdkn + offs_d[None, :],
                 dk.to(DK.dtype.element_ty), mask=kmask)
    tl.store(DV + b * sdvb + hk * sdvh + k_off * sdvn + cols[:, None].to(tl.int64) * sdvn + offs_dv[None, :],
             dv.to(DV.dtype.element_ty), mask=vmask)


@triton.jit(do_not_specialize=["TUNE_N"])
def _dq_kernel(
    Q, K, V, M, DO, LSE, DELTA, DQ, QN, KN, DQACC, SLOPES, CUQ, CUK,
    sqb, sqh, sqm, skb, skh, skn, svb, svh, svn, sdob, sdoh, sdom, smb, smh, smm, smn,
    sdqb, sdqh, sdqm, ssb,
    H, HK, GROUP, NQ, NK, D, DVD, c0, c1, cap, WL, WR, TUNE_N,
    KERNEL: tl.constexpr, DEGREE: tl.constexpr, EXP: tl.constexpr, NORMS: tl.constexpr,
    NORMALIZE: tl.constexpr, DROP_ROW: tl.constexpr, CAUSAL: tl.constexpr, MASK_KIND: tl.constexpr,
    PRECISION: tl.constexpr, COORD_CHUNK: tl.constexpr, APPROX: tl.constexpr, SOFTCAP: tl.constexpr,
    ALIBI: tl.constexpr, WINDOW: tl.constexpr, VARLEN: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    h = (pid_bh % H).to(tl.int64)
    hk = h // GROUP
    b, nq, nk, q_off, k_off = sequence_bounds(CUQ, CUK, pid_bh, H, NQ, NK, VARLEN)
    shift = nk - nq
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < nq
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    qmask = rmask[:, None] & (offs_d[None, :] < D)
    q_base = Q + b * sqb + h * sqh + q_off * sqm
    k_base = K + b * skb + hk * skh + k_off * skn
    v_base = V + b * svb + hk * svh + k_off * svn
    rvec = (b * H + h) * NQ + q_off
    kvec = (b * HK + hk) * NK + k_off
    q = tl.load(q_base + rows[:, None].to(tl.int64) * sqm + offs_d[None, :], mask=qmask, other=0.0)
    do = tl.load(
        DO + b * sdob + h * sdoh + q_off * sdom + rows[:, None].to(tl.int64) * sdom + offs_dv[None, :],
        mask=rmask[:, None] & (offs_dv[None, :] < DVD), other=0.0,
    )
    if NORMS:
        qn = tl.load(QN + rvec + rows, mask=rmask, other=0.0)
    else:
        qn = tl.zeros([BLOCK_M], dtype=tl.float32)
    if NORMALIZE:
        lse = tl.load(LSE + rvec + rows, mask=rmask, other=0.0)
        delta = tl.load(DELTA + rvec + rows, mask=rmask, other=0.0)
    else:  # un-normalized weights need neither; any (BLOCK_M,) float32 tensor fills the unused arguments
        lse = tl.zeros([BLOCK_M], dtype=tl.float32)
        delta = lse
    slope = 0.0
    if ALIBI:
        slope = tl.load(SLOPES + b * ssb + h)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    rq = tl.zeros([BLOCK_M], dtype=tl.float32)
    r0 = pid_m * BLOCK_M
    lo, _, _, hi = key_range(r0, r0 + BLOCK_M, nq, nk, shift, WL, WR, CAUSAL, WINDOW, VARLEN, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        k = tl.load(
            k_base + cols[:, None].to(tl.int64) * skn + offs_d[None, :],
            mask=(cols[:, None] < nk) & (offs_d[None, :] < D), other=0.0,
        )
        v = tl.load(
            v_base + cols[:, None].to(tl.int64) * svn + offs_dv[None, :],
            mask=(cols[:, None] < nk) & (offs_dv[None, :] < DVD), other=0.0,
        )
        if NORMS:
            kn = tl.load(KN + kvec + cols, mask=cols < nk, other=0.0)
        else:
            kn = tl.zeros([BLOCK_N], dtype=tl.float32)
        p, dsc, dqn, dkn, t = _tile_grads(
            q, k, v, do, qn, kn, lse, delta, M, b, h, rows, cols, smb, smh, smm, smn, nq, nk, c0, c1,
            q_base, sqm, k_base, skn, D, shift, WL, WR, slope, cap,
            KERNEL, DEGREE, EXP, NORMALIZE, DROP_ROW, CAUSAL, MASK_KIND, PRECISION, COORD_CHUNK, APPROX,
            SOFTCAP, ALIBI, WINDOW, BLOCK_M, BLOCK_N,
        )
        if COORD_CHUNK:
            coordinate_grads_chunked(
                q_base, sqm, k_base, skn, rows, cols, dsc, nq, nk, D, DQACC + rvec * D, True, 16,
            )
        elif KERNEL == _EXP_INTERSECTION:
            dqc, _ = coordinate_grads(q, k, dsc)
            dq = dq + dqc
        else:
            dq = tl.dot(dsc.to(k.dtype), k, dq, input_precision=PRECISION)
        if NORMS:
            rq = rq + tl.sum(dqn, 1)
    if NORMS:
        dq = dq + 2.0 * q.to(tl.float32) * rq[:, None]
    if not COORD_CHUNK:  # otherwise dQ was accumulated in DQACC
        tl.store(DQ + b * sdqb + h * sdqh + q_off * sdqm + rows[:, None].to(tl.int64) * sdqm + offs_d[None, :],
                 dq.to(DQ.dtype.element_ty), mask=qmask)
