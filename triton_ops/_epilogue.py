"""Per-kernel epilogues shared by the forward and backward Triton kernels.

A tile of raw scores ``s`` (``q.k`` from a tensor-core matmul, or ``sum_l min(q_l, k_l)`` for the coordinate
kernel) plus the squared row norms ``qn = |q|^2`` and ``kn = |k|^2`` is turned into weights here. Exponential
kernels are handled as base-2 log-weights (``exp2`` is the fast instruction); the others as weights.
The derivative helpers give d(log-weight)/d(input) (exponential kernels) or d(weight)/d(input) (the others)
with respect to ``s``, ``qn`` and ``kn``; the callers multiply them by the upstream gradient.
"""

import triton
import triton.language as tl

from ._coordinate import coordinate_score
from ._interpreter import interpreting
from ._spec import COSINE, EDP, EXP_INTERSECTION, LAPLACIAN, LINEAR, POLYNOMIAL, RBF, SIGMOID, TANH

LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)

_EDP = tl.constexpr(EDP)
_RBF = tl.constexpr(RBF)
_LAPLACIAN = tl.constexpr(LAPLACIAN)
_POLYNOMIAL = tl.constexpr(POLYNOMIAL)
_LINEAR = tl.constexpr(LINEAR)
_COSINE = tl.constexpr(COSINE)
_SIGMOID = tl.constexpr(SIGMOID)
_TANH = tl.constexpr(TANH)
_EXP_INTERSECTION = tl.constexpr(EXP_INTERSECTION)
# Read when the kernels are defined, as triton itself does: the interpreter has no inline PTX.
_INTERPRET = tl.constexpr(interpreting())


@triton.jit
def raw_score(q, k, KERNEL: tl.constexpr, PRECISION: tl.constexpr):
    """(BLOCK_M, BLOCK_N) tile of q.k, or of sum_l min(q_l, k_l) for exp_intersection."""
    if KERNEL == _EXP_INTERSECTION:
        s = coordinate_score(q, k)
    else:
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
    return s


@triton.jit
def _sq_dist(s, qn, kn):
    return tl.maximum(qn[:, None] + kn[None, :] - 2.0 * s, 0.0)


@triton.jit
def _dist(s, qn, kn):
    """(|q - k|, 1 / |q - k|), both 0 at distance 0 (the subgradient at q = k), from one reciprocal square
    root."""
    d2 = _sq_dist(s, qn, kn)
    inv = tl.where(d2 > 1e-30, tl.math.rsqrt(tl.maximum(d2, 1e-30)), 0.0)
    return d2 * inv, inv


@triton.jit
def log2_weight(s, qn, kn, c0, KERNEL: tl.constexpr, DROP_ROW: tl.constexpr, SHARE_RSQRT: tl.constexpr):
    """Base-2 log-weight of an exponential kernel.

    SHARE_RSQRT (backward pass): laplacian's distance is taken as d^2 / d from the reciprocal square root that
    its derivative needs anyway (one special-function instruction instead of two); the forward pass keeps the
    cheaper plain square root.

    With DROP_ROW (rbf, normalized mode) the row constant -gamma |q|^2 is left out: it cancels in the
    normalization and the caller adds it back to the log-sum-exp (see ``row_constant``).
    """
    if KERNEL == _RBF:
        if DROP_ROW:
            lw = s * (2.0 * c0 * LOG2E) - (kn * (c0 * LOG2E))[None, :]
        else:
            lw = _sq_dist(s, qn, kn) * (-c0 * LOG2E)
    elif KERNEL == _LAPLACIAN:
        if SHARE_RSQRT:
            r, _ = _dist(s, qn, kn)
        else:
            r = tl.sqrt(_sq_dist(s, qn, kn))
        lw = r * (-c0 * LOG2E)
    else:  # edp, exp_intersection
        lw = s * (c0 * LOG2E)
    return lw


@triton.jit
def row_constant(qn, c0, KERNEL: tl.constexpr, DROP_ROW: tl.constexpr):
    """Natural-log row constant left out by ``log2_weight`` (non-zero only for rbf with DROP_ROW)."""
    r = qn * 0.0
    if KERNEL == _RBF:
        if DROP_ROW:
            r = -c0 * qn
    return r


@triton.jit
def _tanh(x, APPROX: tl.constexpr):
    """tanh; APPROX: the special-function unit's tanh.approx.f32 (one instruction, relative error 2^-11)."""
    if APPROX and not _INTERPRET:
        t = tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=f,f", [x], dtype=tl.float32, is_pure=True,
                                      pack=1)
    else:  # 1 - 2 / (exp(2x) + 1) saturates to +-1 without inf/inf
        t = 1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)
    return t


@triton.jit
def _sigmoid(x, APPROX: tl.constexpr):
    if APPROX:  # one special-function instruction instead of an exp and a division
        y = 0.5 + 0.5 * _tanh(0.5 * x, APPROX)
    else:
        y = 1.0 / (1.0 + tl.exp(-x))
    return y


@triton.jit
def weight(s, qn, kn, c0, c1, KERNEL: tl.constexpr, DEGREE: tl.constexpr, APPROX: tl.constexpr):
    """Weight of a non-exponential kernel (``qn``, ``kn``: inverse norms for cosine).

    APPROX (16-bit inputs) evaluates sigmoid and tanh with tanh.approx.f32, whose error is below the
    rounding of the fp16/bf16 weights fed to the second matmul.
    """
    if KERNEL == _POLYNOMIAL:
        x = s * c0 + c1
        w = x * 0.0 + 1.0
        for _ in tl.static_range(DEGREE):
            w = w * x
    elif KERNEL == _LINEAR:
        w = s * c0
    elif KERNEL == _COSINE:
        w = s * qn[:, None] * kn[None, :]
    elif KERNEL == _SIGMOID:
        w = _sigmoid(s * c0 + c1, APPROX)
    else:  # tanh
        w = _tanh(s * c0 + c1, APPROX)
    return w


@triton.jit
def weight_derivatives(s, qn, kn, c0, c1, KERNEL: tl.constexpr, DEGREE: tl.constexpr, APPROX: tl.constexpr):
    """(d/ds, d/dqn, d/dkn) of the natural log-weight (exponential kernels) or of the weight (others).

    Kernels that do not depend on the norms return zeros for the last two (the callers skip them at compile
    time through their NORMS flag).
    """
    zero = s * 0.0
    if KERNEL == _RBF:
        ds = zero + 2.0 * c0
        dqn = zero - c0
        dkn = zero - c0
    elif KERNEL == _LAPLACIAN:
        _, inv_r = _dist(s, qn, kn)
        ds = c0 * inv_r
        dqn = -0.5 * c0 * inv_r
        dkn = dqn
    elif KERNEL == _POLYNOMIAL:
        x = s * c0 + c1
        p = zero + 1.0
        for _ in tl.static_range(DEGREE - 1):
            p = p * x
        ds = p * (c0 * DEGREE)
        dqn = zero
        dkn = zero
    elif KERNEL == _COSINE:  # qn, kn hold a = 1/|q|, b = 1/|k|; d a / d|q|^2 = -a^3 / 2
        a = qn[:, None]
        b = kn[None, :]
        ab = a * b
        kappa = s * ab
        ds = zero + ab
        dqn = -0.5 * kappa * a * a
        dkn = -0.5 * kappa * b * b
    elif KERNEL == _SIGMOID:
        sig = _sigmoid(s * c0 + c1, APPROX)
        ds = sig * (1.0 - sig) * c0
        dqn = zero
        dkn = zero
    elif KERNEL == _TANH:
        t = _tanh(s * c0 + c1, APPROX)
        ds = (1.0 - t * t) * c0
        dqn = zero
        dkn = zero
    else:  # edp, linear, exp_intersection: linear in the score
        ds = zero + c0
        dqn = zero
        dkn = zero
    return ds, dqn, dkn


@triton.jit
def capped_weight(s, qn, kn, c0, c1, cap, KERNEL: tl.constexpr, DEGREE: tl.constexpr, APPROX: tl.constexpr):
    """Weight of a non-exponential kernel whose argument is soft-capped, and its (d/ds, d/dqn, d/dkn).

    The argument is ``u = c0 s`` (cosine: ``s / (|q| |k|)``, with ``qn``, ``kn`` the inverse norms); the outer
    function sees ``cap tanh(u / cap)``, whose derivative is ``1 - tanh^2``. The forward pass uses the weight
    only (the derivatives are dead code there).
    """
    zero = s * 0.0
    if KERNEL == _COSINE:
        a = qn[:, None]
        b = kn[None, :]
        u = s * (a * b)
        du_ds = a * b
        du_dqn = -0.5 * u * a * a
        du_dkn = -0.5 * u * b * b
    else:
        u = s * c0
        du_ds = zero + c0
        du_dqn = zero
        du_dkn = zero
    t = _tanh(u * (1.0 / cap), APPROX)
    x = t * cap
    if KERNEL == _POLYNOMIAL:
        y = x + c1
        w = zero + 1.0
        for _ in tl.static_range(DEGREE):
            w = w * y
        p = zero + 1.0
        for _ in tl.static_range(DEGREE - 1):
            p = p * y
        dw_dx = p * DEGREE
    elif KERNEL == _SIGMOID:
        w = _sigmoid(x + c1, APPROX)
        dw_dx = w * (1.0 - w)
    elif KERNEL == _TANH:
        w = _tanh(x + c1, APPROX)
        dw_dx = 1.0 - w * w
    else:  # linear, cosine: the capped argument itself
        w = x
        dw_dx = zero + 1.0
    dw_du = dw_dx * (1.0 - t * t)
    return w, dw_du * du_ds, dw_du * du_dqn, dw_du * du_dkn
