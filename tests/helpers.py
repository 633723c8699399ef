"""Shared test helpers (the one module test files import helpers from).

- the attention float64 reference (``reference_weights`` / ``reference_attention``) and the catalogue's test cases;
- ``fused`` / ``fused_reference``: ``triton_ops`` called by kernel name, through the catalogue's ``fused_spec``;
- ``FORMULAS``: every catalogue kernel written again from the formulas in ``docs/rkbs.md``, in plain float64
  torch, without calling the catalogue (the independent reference of ``tests/rkbs/test_kernels_backends.py``).
"""

from __future__ import annotations

import math

import torch

import triton_ops
from rkbs.kernels import AttentionKernel, get_kernel, resolve_kernel
from triton_ops.reference import reference_attention as _spec_reference

# Every catalogue kernel, with parameters that make it deterministic; odd polynomial / Taylor degrees are the
# sign-changing variants. Names are pytest ids.
KERNEL_CASES = {
    "edp": ("edp", {}),
    "rbf": ("rbf", {}),
    "laplacian": ("laplacian", {"gamma": 0.3}),
    "polynomial2": ("polynomial", {"degree": 2}),
    "polynomial3": ("polynomial", {"degree": 3, "coef0": 0.5}),
    "linear": ("linear", {}),
    "cosine": ("cosine", {}),
    "sigmoid": ("sigmoid", {"coef0": -1.0}),
    "tanh": ("tanh", {"coef0": 0.1}),
    "exp_intersection": ("exp_intersection", {}),
    "elu": ("elu", {}),
    "relu": ("relu", {}),
    "taylor_edp": ("taylor_edp", {"degree": 2}),
    "taylor_edp3": ("taylor_edp", {"degree": 3}),
    "positive_random_features": ("positive_random_features", {"n_features": 16, "random_state": 0}),
    "random_fourier_features": ("random_fourier_features", {"n_features": 16, "random_state": 0}),
}


def make_kernel(case: str):
    name, params = KERNEL_CASES[case]
    return get_kernel(name, **params)


def attention_kernel(d: int, seed: int = 0) -> AttentionKernel:
    """An asymmetric two-sided EDP kernel on inputs of dimension d."""
    g = torch.Generator().manual_seed(seed)
    wq = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    wk = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    return AttentionKernel(get_kernel("edp"), query_map=wq, key_map=wk)


def reference_weights(q, k, kernel, normalize=True, is_causal=False, attn_mask=None):
    q, k = q.double(), k.double()
    w = kernel.evaluate(q, k)
    nq, nk = q.shape[-2], k.shape[-2]
    keep = torch.ones(nq, nk, dtype=torch.bool)
    if is_causal:
        keep = torch.ones(nq, nk, dtype=torch.bool).tril()
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            keep = keep & attn_mask
        else:
            w = w * torch.exp(attn_mask.double())
    w = w.masked_fill(~keep, 0.0)
    if normalize:
        total = w.sum(-1, keepdim=True)
        w = w / torch.where(total != 0, total, torch.ones_like(total))
    return w


def reference_attention(q, k, v, kernel, normalize=True, is_causal=False, attn_mask=None):
    return reference_weights(q, k, kernel, normalize, is_causal, attn_mask) @ v.double()


def reference_features(q, k, v, kernel, normalize=True, is_causal=False, attn_mask=None, window=None,
                       alibi_slopes=None, sinks=None, softcap=None):
    """``(out, lse)`` with the feature arguments, straight from their definitions (float64, explicit weights).

    window (left, right) is aligned bottom-right (-1 unbounded); ALiBi multiplies by exp(-slope |i + S - L - j|);
    sinks add exp(sink) to the row sum; softcap maps u to c tanh(u / c), u the exponent of the exponential
    kernels or the argument of the other dot kernels' outer function (``softcapped_kernel``).
    """
    q, k, v = q.double(), k.double(), v.double()
    nq, nk = q.shape[-2], k.shape[-2]
    w = kernel.evaluate(q, k) if softcap is None else softcapped_kernel(q, k, kernel, softcap)
    i = torch.arange(nq).unsqueeze(-1) + (nk - nq)  # query positions, bottom-right
    j = torch.arange(nk).unsqueeze(0)
    keep = torch.ones(nq, nk, dtype=torch.bool)
    if is_causal:
        keep &= torch.ones(nq, nk, dtype=torch.bool).tril()
    if window is not None:
        left, right = window
        if left != -1:
            keep &= j >= i - left
        if right != -1:
            keep &= j <= i + right
    if alibi_slopes is not None:
        slopes = alibi_slopes.double().reshape(*alibi_slopes.shape, 1, 1)
        w = w * torch.exp(-slopes * (i - j).abs())
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            keep = keep & attn_mask
        else:
            w = w * torch.exp(attn_mask.double())
    w = w.masked_fill(~keep, 0.0)
    total = w.sum(-1)
    if sinks is not None:
        total = total + torch.exp(sinks.double()).unsqueeze(-1)
    if normalize:
        w = w / torch.where(total != 0, total, torch.ones_like(total)).unsqueeze(-1)
    return w @ v, torch.log(total)


def softcapped_kernel(q, k, kernel, c):
    """The soft-capped kernel written out per kernel (float64), without the catalogue's ``softcap_evaluate``."""
    cap = lambda u: c * torch.tanh(u / c)  # noqa: E731
    p = kernel.resolved_params(q.shape[-1])
    dot = q @ k.transpose(-1, -2)
    if kernel.name in ("edp", "rbf", "laplacian", "exp_intersection"):  # the exponent
        return torch.exp(cap(kernel.log_evaluate(q, k)))
    if kernel.name == "cosine":
        nq, nk = q.norm(dim=-1, keepdim=True), k.norm(dim=-1).unsqueeze(-2)
        return cap(dot / (nq * nk))
    u = cap(p["scale"] * dot)  # the scaled dot product
    if kernel.name == "polynomial":
        return (u + p["coef0"]) ** p["degree"]
    if kernel.name == "linear":
        return u
    if kernel.name == "sigmoid":
        return 1.0 / (1.0 + torch.exp(-(u + p["coef0"])))
    if kernel.name == "tanh":
        return torch.tanh(u + p["coef0"])
    raise ValueError(f"softcap is not defined for kernel {kernel.name!r}")


def randn(*shape, seed=0, dtype=torch.float64, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(requires_grad)


# ------------------------------------------------------------------------------------------- triton_ops by name
def kernel_spec(kernel: str, d: int, scale: float | None = None, **params) -> triton_ops.KernelSpec:
    """The catalogue's fused form of ``kernel`` (asserting it has one)."""
    spec = resolve_kernel(kernel, scale, **params).fused_spec(d)
    assert spec is not None, f"{kernel} has no fused form"
    return spec


def _spec_call(fn, q, k, v, kernel, normalize, causal, mask, scale, params, **extra):
    spec = kernel_spec(kernel, q.shape[-1], scale, **params)
    return fn(q, k, v, mask, spec=spec, is_causal=causal, enable_gqa=q.shape[1] != k.shape[1],
              normalize=normalize, **extra)


def fused(q, k, v, *, kernel, normalize=True, causal=False, mask=None, scale=None, return_lse=False,
          precision="default", **params):
    """``triton_ops.kernel_attention`` for a catalogue kernel given by name and parameters."""
    return _spec_call(triton_ops.kernel_attention, q, k, v, kernel, normalize, causal, mask, scale, params,
                      return_lse=return_lse, precision=precision)


def fused_reference(q, k, v, *, kernel, normalize=True, causal=False, mask=None, scale=None, return_lse=False,
                    compute_dtype=torch.float64, **params):
    """``triton_ops.reference.reference_attention`` for a catalogue kernel given by name and parameters."""
    return _spec_call(_spec_reference, q, k, v, kernel, normalize, causal, mask, scale, params,
                      return_lse=return_lse, compute_dtype=compute_dtype)


# ---------------------------------------------------------------------------- fused kernel against its reference
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# max |actual - expected| / max(|expected|, 0.1) over a tensor, per input dtype (fp32 = ieee matmuls).
TOL = {torch.float32: 2e-4, torch.float16: 4e-3, torch.bfloat16: 3e-2}


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    expected = expected.double()
    return ((actual.double() - expected).abs().max() / expected.abs().max().clamp_min(0.1)).item()


def assert_close(actual, expected, dtype, what):
    assert actual.shape == expected.shape, what
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    err = rel_err(actual, expected)
    assert err <= TOL[dtype], f"{what}: relative error {err:.2e} > {TOL[dtype]:.0e}"


def make_mask(kind, b, hq, nq, nk, gen):
    if kind == "none":
        return None
    if kind == "bool":  # (B, 1, Nq, Nk): broadcast over heads
        return torch.rand(b, 1, nq, nk, generator=gen) < 0.7
    if kind == "padding":  # additive key padding (B, 1, 1, Nk) with -inf, not learnable
        m = torch.zeros(b, 1, 1, nk)
        m[..., nk // 2 + 1 :] = float("-inf")
        return m
    # learnable (Nq, Nk) bias
    return (0.5 * torch.randn(nq, nk, generator=gen)).requires_grad_()


def fused_inputs(shape, dtype, gen, positive=False):
    b, hq, hkv, nq, nk, d, dv = shape
    q = torch.randn(b, hq, nq, d, generator=gen)
    k = torch.randn(b, hkv, nk, d, generator=gen)
    v = torch.randn(b, hkv, nk, dv, generator=gen)
    if positive:
        q, k = q.abs(), k.abs()
    return [t.to(DEVICE, dtype).requires_grad_() for t in (q, k, v)]


def check_fused(name, params, normalize, causal, mask_kind, shape, dtype=torch.float32, seed=0):
    """Forward, lse and every gradient of the fused kernel against the float64 reference."""
    gen = torch.Generator().manual_seed(seed)
    q, k, v = fused_inputs(shape, dtype, gen, positive=name == "exp_intersection")
    mask = make_mask(mask_kind, shape[0], shape[1], shape[3], shape[4], gen)
    if mask is not None:
        mask = mask.detach().to(DEVICE).requires_grad_(mask.requires_grad)
    kw = dict(kernel=name, normalize=normalize, causal=causal, mask=mask, **params)
    out = fused(q, k, v, return_lse=normalize, precision="ieee", **kw)
    ref = fused_reference(q, k, v, return_lse=normalize, **kw)
    if normalize:
        (out, lse), (ref, ref_lse) = out, ref
        finite = torch.isfinite(ref_lse)
        assert torch.equal(torch.isfinite(lse), finite)
        assert_close(lse[finite], ref_lse[finite], dtype, "lse")
    assert_close(out, ref, dtype, "out")
    inputs = [q, k, v] + ([mask] if mask is not None and mask.requires_grad else [])
    grad_out = torch.randn(out.shape, generator=gen).to(DEVICE)
    grads = torch.autograd.grad(out, inputs, grad_out.to(dtype))
    ref_grads = torch.autograd.grad(ref, inputs, grad_out.double(), allow_unused=True)
    ref_grads = [torch.zeros_like(x, dtype=torch.float64) if g is None else g for x, g in zip(inputs, ref_grads)]
    for what, g, rg in zip(("dq", "dk", "dv", "dmask"), grads, ref_grads):
        assert_close(g, rg, dtype, what)


# ------------------------------------------------------------------ the catalogue's formulas, written independently
# Each entry is the kernel's row of docs/theory.md ("The catalogue") in plain float64 torch. Defaults are written
# here again (s = 1/sqrt(d), gamma = 1/(2 sqrt(d))) and parameters are read from the kernel's get_params(); the
# catalogue's code is never called, except for the random draws of the random-feature kernels (data, not formula).
def _param(kernel, name, default):
    value = kernel.get_params(deep=False).get(name)
    return default if value is None else value


def _s(kernel, d):
    return _param(kernel, "scale", 1.0 / math.sqrt(d))


def _gamma(kernel, d):
    return _param(kernel, "gamma", 1.0 / (2.0 * math.sqrt(d)))


def _sqdist(q, k):
    return ((q[..., :, None, :] - k[..., None, :, :]) ** 2).sum(-1)


def _poly(q, k, kern):
    d = q.shape[-1]
    return (_s(kern, d) * q @ k.T + _param(kern, "coef0", 1.0)) ** _param(kern, "degree", 2)


def _taylor(q, k, kern):
    z = _s(kern, q.shape[-1]) * q @ k.T
    return sum(z**t / math.factorial(t) for t in range(_param(kern, "degree", 2) + 1))


def _prf(q, k, kern):
    d, m = q.shape[-1], kern.n_features
    (w,) = kern._params(d, torch.float64, q.device)  # the kernel's random draw

    def phi(x):
        x = math.sqrt(_s(kern, d)) * x
        return torch.exp(x @ w - (x * x).sum(-1, keepdim=True) / 2)

    return phi(q) @ phi(k).T / m


def _rff(q, k, kern):
    d, m = q.shape[-1], kern.n_features
    z, b = kern._params(d, torch.float64, q.device)  # the kernel's random draw (standard normal, uniform phase)
    w = math.sqrt(2.0 * _gamma(kern, d)) * z  # E[cos(w.q + b) cos(w.k + b)] * 2 = exp(-gamma |q - k|^2)
    return 2.0 / m * torch.cos(q @ w + b) @ torch.cos(k @ w + b).T


def _norms(x):
    return x.norm(dim=-1, keepdim=True)


FORMULAS = {
    "edp": lambda q, k, kern: torch.exp(_s(kern, q.shape[-1]) * q @ k.T),
    "rbf": lambda q, k, kern: torch.exp(-_gamma(kern, q.shape[-1]) * _sqdist(q, k)),
    "laplacian": lambda q, k, kern: torch.exp(-_gamma(kern, q.shape[-1]) * _sqdist(q, k).sqrt()),
    "polynomial": _poly,
    "linear": lambda q, k, kern: _s(kern, q.shape[-1]) * q @ k.T,
    "cosine": lambda q, k, kern: (q @ k.T) / (_norms(q) * _norms(k).T),
    "sigmoid": lambda q, k, kern: 1.0 / (1.0 + torch.exp(-(_s(kern, q.shape[-1]) * q @ k.T
                                                           + _param(kern, "coef0", 0.0)))),
    "tanh": lambda q, k, kern: torch.tanh(_s(kern, q.shape[-1]) * q @ k.T + _param(kern, "coef0", 0.0)),
    "exp_intersection": lambda q, k, kern: torch.exp(
        _s(kern, q.shape[-1]) * torch.minimum(q[:, None, :], k[None, :, :]).sum(-1)
    ),
    "elu": lambda q, k, kern: (torch.nn.functional.elu(q) + 1) @ (torch.nn.functional.elu(k) + 1).T,
    "relu": lambda q, k, kern: q.clamp_min(0) @ k.clamp_min(0).T,
    "taylor_edp": _taylor,
    "positive_random_features": _prf,
    "random_fourier_features": _rff,
}
