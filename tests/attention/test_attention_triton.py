"""The fused back end of ``kernel_attention`` against its chunked torch back end.

On a CUDA device at realistic shapes; without one, at tiny shapes in Triton's interpreter (the conftest sets
TRITON_INTERPRET=1), which checks the glue: kernel parameters, masks, causal alignment, grouped-query heads and
gradients passed between ``attention_kernels`` and ``triton_ops``.
"""

import pytest
import torch

from attention_kernels import kernel_attention
from attention_kernels._options import Extras
from attention_kernels.functional import _choose_backend, _prepare, resolve_kernel

pytest.importorskip("triton")
import triton_ops  # noqa: E402

if not triton_ops.is_available():
    pytest.skip("needs CUDA or Triton's interpreter", allow_module_level=True)

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
# (batch, q heads, kv heads, Nq, Nk, head dim): awkward sizes, smaller in the interpreter
SHAPE = (2, 4, 2, 300, 333, 80) if CUDA else (2, 2, 1, 9, 13, 24)

CASES = [
    ("edp", True, {}),
    ("rbf", True, {}),
    ("laplacian", True, {"gamma": 0.3}),
    ("sigmoid", True, {"coef0": -2.0}),
    ("polynomial", True, {"degree": 2}),
    ("polynomial", False, {"degree": 3}),
    ("linear", False, {}),
    ("cosine", False, {}),
    ("tanh", False, {}),
    ("exp_intersection", True, {}),
]


def _inputs(dtype, shape=SHAPE, requires_grad=False):
    b, hq, hkv, nq, nk, d = shape
    g = torch.Generator(device=DEVICE).manual_seed(0)
    q = torch.randn(b, hq, nq, d, device=DEVICE, dtype=dtype, generator=g)
    k = torch.randn(b, hkv, nk, d, device=DEVICE, dtype=dtype, generator=g)
    v = torch.randn(b, hkv, nk, d, device=DEVICE, dtype=dtype, generator=g)
    return tuple(t.requires_grad_(requires_grad) for t in (q, k, v))


@pytest.mark.parametrize("kernel,normalize,params", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
@pytest.mark.parametrize("causal", [False, True])
def test_triton_backend_matches_torch_backend(kernel, normalize, params, causal):
    q, k, v = _inputs(torch.float32, requires_grad=True)
    nk = k.shape[-2]
    pad = torch.ones(q.shape[0], 1, 1, nk, dtype=torch.bool, device=DEVICE)
    pad[1, ..., (3 * nk) // 4 :] = False
    outs, grads = [], []
    for backend in ("triton", "torch"):
        out = kernel_attention(q, k, v, attn_mask=pad, is_causal=causal, enable_gqa=True, kernel=kernel,
                               normalize=normalize, backend=backend, **params)
        grads.append(torch.autograd.grad(out.square().sum(), (q, k, v)))
        outs.append(out)
    assert ((outs[0] - outs[1]).abs().max() / outs[1].abs().max().clamp_min(1e-3)) < 1e-4
    for a, b in zip(grads[0], grads[1]):
        assert ((a - b).abs().max() / b.abs().max().clamp_min(1e-3)) < 1e-3


def test_additive_bias_means_the_same_in_both_back_ends():
    q, k, v = _inputs(torch.float32)
    bias = torch.randn(q.shape[-2], k.shape[-2], device=DEVICE)
    bias[:, -2:] = float("-inf")
    fused = kernel_attention(q, k, v, attn_mask=bias, enable_gqa=True, kernel="rbf", backend="triton")
    ref = kernel_attention(q, k, v, attn_mask=bias, enable_gqa=True, kernel="rbf", backend="torch")
    torch.testing.assert_close(fused, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_auto_picks_triton_on_cuda_and_agrees_in_half_precision(dtype):
    q, k, v = _inputs(dtype, shape=(2, 4, 4, 300, 333, 80))
    kern = resolve_kernel("rbf")
    _, _, mask = _prepare(q, k, v, None, False, 0.0, True, "auto", False, kern)
    assert _choose_backend("auto", q, k, mask, 0.0, kern, Extras(), True) == "triton"
    fused = kernel_attention(q, k, v, kernel="rbf")
    ref = kernel_attention(q.double(), k.double(), v.double(), kernel="rbf", backend="torch")
    assert fused.dtype == dtype
    assert ((fused.double() - ref).abs().max() / ref.abs().max()) < 3e-2


@pytest.mark.gpu
def test_edp_triton_equals_sdpa_in_bf16():
    q, k, v = _inputs(torch.bfloat16, shape=(2, 4, 4, 1000, 1000, 128))
    ours = kernel_attention(q, k, v, is_causal=True, backend="triton")
    sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    ref = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=True)
    # our error is of the order of SDPA's own bf16 error
    assert (ours.double() - ref).abs().max() <= 2 * (sdpa.double() - ref).abs().max() + 1e-3


# ------------------------------------------------------------------- model features: triton against the torch back end
FEATURE_CASES = [
    ("edp", True, {}, dict(softcap=3.0, sinks=True, alibi=True, window=(4, 2))),
    ("rbf", True, {}, dict(sinks=True, window=(-1, 0))),
    ("sigmoid", True, {"coef0": -2.0}, dict(alibi=True, sinks=True, window=(3, -1), softcap=0.8)),
    ("exp_intersection", True, {}, dict(softcap=2.0, alibi=True)),
    ("polynomial", False, {"degree": 3}, dict(alibi=True, window=(5, 5), softcap=0.7)),
    ("cosine", False, {}, dict(softcap=0.4)),
]


def _compare(runs, inputs):
    """runs: one callable per back end returning (out, lse or None); compares outputs and every gradient."""
    results = []
    for run in runs:
        out, lse = run()
        loss = out.square().sum() + (0.0 if lse is None else lse[torch.isfinite(lse)].sum())
        results.append((out, lse, torch.autograd.grad(loss, inputs)))
    (out, lse, grads), (ref, ref_lse, ref_grads) = results
    assert ((out - ref).abs().max() / ref.abs().max().clamp_min(1e-3)) < 1e-4
    if ref_lse is not None:
        torch.testing.assert_close(lse, ref_lse, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, ref_grads):
        assert ((a - b).abs().max() / b.abs().max().clamp_min(1e-3)) < 1e-3


@pytest.mark.parametrize("kernel,normalize,params,features", FEATURE_CASES, ids=[c[0] for c in FEATURE_CASES])
def test_triton_features_match_torch_backend(kernel, normalize, params, features):
    q, k, v = _inputs(torch.float32, requires_grad=True)
    if kernel == "exp_intersection":
        q, k = (t.detach().abs().requires_grad_() for t in (q, k))
    heads = q.shape[1]
    extra = {"window": features.get("window")}
    if features.get("alibi"):
        extra["alibi_slopes"] = torch.linspace(0.05, 0.4, heads, device=DEVICE).requires_grad_()
    if features.get("sinks"):
        extra["sinks"] = torch.linspace(-1.0, 1.0, heads, device=DEVICE).requires_grad_()
    if "softcap" in features:
        extra["softcap"] = features["softcap"]
    inputs = [q, k, v] + [t for t in (extra.get("alibi_slopes"), extra.get("sinks")) if t is not None]

    def run(backend):
        res = kernel_attention(q, k, v, is_causal=True, enable_gqa=True, kernel=kernel, normalize=normalize,
                               backend=backend, return_lse=normalize, **extra, **params)
        return res if normalize else (res, None)

    _compare([lambda: run("triton"), lambda: run("torch")], inputs)


@pytest.mark.parametrize("kernel,features", [("edp", dict(window=(3, 0))), ("rbf", dict(sinks=True))])
def test_triton_packed_batch_matches_torch_backend(kernel, features):
    g = torch.Generator(device=DEVICE).manual_seed(1)
    lens_q, lens_k = [4, 1, 11], [6, 9, 11]
    q = torch.randn(sum(lens_q), 2, 24, device=DEVICE, generator=g).requires_grad_()
    k, v = (torch.randn(sum(lens_k), 1, 24, device=DEVICE, generator=g).requires_grad_() for _ in range(2))
    cu_q, cu_k = (torch.tensor([0, *torch.tensor(n).cumsum(0).tolist()], device=DEVICE) for n in (lens_q, lens_k))
    extra = dict(features)
    if extra.pop("sinks", False):
        extra["sinks"] = torch.tensor([0.5, -1.0], device=DEVICE).requires_grad_()
    inputs = [q, k, v] + ([extra["sinks"]] if "sinks" in extra else [])

    def run(backend):
        return kernel_attention(q, k, v, kernel=kernel, is_causal=True, enable_gqa=True, backend=backend,
                                cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, max_seqlen_q=11, max_seqlen_k=11,
                                return_lse=True, **extra)

    _compare([lambda: run("triton"), lambda: run("torch")], inputs)


def test_triton_decoding_against_a_cache_matches_torch_backend():
    """A few queries against a longer cache, bottom-right causal (window=(-1, 0)), with the lse to merge."""
    g = torch.Generator(device=DEVICE).manual_seed(2)
    q = torch.randn(1, 2, 3, 16, device=DEVICE, generator=g).requires_grad_()
    k, v = (torch.randn(1, 2, 150, 16, device=DEVICE, generator=g).requires_grad_() for _ in range(2))

    def run(backend):
        return kernel_attention(q, k, v, kernel="edp", window=(-1, 0), backend=backend, return_lse=True)

    _compare([lambda: run("triton"), lambda: run("torch")], [q, k, v])


@pytest.mark.gpu
def test_auto_takes_triton_with_feature_arguments_on_cuda():
    q, k, v = _inputs(torch.bfloat16, shape=(1, 2, 2, 64, 64, 64))
    kern = resolve_kernel("edp")
    _, _, mask = _prepare(q, k, v, None, False, 0.0, True, "auto", False, kern)
    extras = Extras(window=(8, 0), sinks=torch.zeros(2, device=DEVICE), return_lse=True)
    assert _choose_backend("auto", q, k, mask, 0.0, kern, extras, True) == "triton"
    assert _choose_backend("auto", q, k, mask, 0.0, resolve_kernel("sigmoid"), Extras(softcap=2.0), True) == "triton"
