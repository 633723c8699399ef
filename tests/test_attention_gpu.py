"""On a CUDA device: the fused back end of ``kernel_attention`` against its chunked torch back end.

CPU-only runs skip this module (the interpreter tests of triton_ops cover the kernels themselves).
"""

import pytest
import torch

from attention_kernels import kernel_attention
from attention_kernels.functional import _choose_backend, _prepare, resolve_kernel

pytestmark = pytest.mark.gpu

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


def _inputs(dtype, b=2, hq=4, hkv=2, nq=300, nk=333, d=80):
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(b, hq, nq, d, device="cuda", dtype=dtype, generator=g)
    k = torch.randn(b, hkv, nk, d, device="cuda", dtype=dtype, generator=g)
    v = torch.randn(b, hkv, nk, d, device="cuda", dtype=dtype, generator=g)
    return q, k, v


@pytest.mark.parametrize("kernel,normalize,params", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
@pytest.mark.parametrize("causal", [False, True])
def test_triton_backend_matches_torch_backend(kernel, normalize, params, causal):
    q, k, v = _inputs(torch.float32)
    pad = torch.ones(2, 1, 1, 333, dtype=torch.bool, device="cuda")
    pad[1, ..., 250:] = False
    for t in (q, k, v):
        t.requires_grad_(True)
    outs, grads = [], []
    for backend in ("triton", "torch"):
        out = kernel_attention(q, k, v, attn_mask=pad, is_causal=causal, enable_gqa=True, kernel=kernel,
                               normalize=normalize, backend=backend, **params)
        (gq, gk, gv) = torch.autograd.grad(out.square().sum(), (q, k, v))
        outs.append(out)
        grads.append((gq, gk, gv))
    scale = outs[1].abs().max().clamp_min(1e-3)
    assert ((outs[0] - outs[1]).abs().max() / scale) < 1e-4
    for a, b in zip(grads[0], grads[1]):
        assert ((a - b).abs().max() / b.abs().max().clamp_min(1e-3)) < 1e-3


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_auto_picks_triton_on_cuda_and_agrees_in_half_precision(dtype):
    q, k, v = _inputs(dtype, hkv=4)
    kern = resolve_kernel("rbf")
    _, _, mask = _prepare(q, k, v, None, False, 0.0, True, "auto", False, kern)
    assert _choose_backend("auto", q, k, mask, 0.0, kern) == "triton"
    fused = kernel_attention(q, k, v, kernel="rbf")
    ref = kernel_attention(q.double(), k.double(), v.double(), kernel="rbf", backend="torch")
    assert fused.dtype == dtype
    assert ((fused.double() - ref).abs().max() / ref.abs().max()) < 3e-2


def test_edp_triton_equals_sdpa():
    q, k, v = _inputs(torch.bfloat16, hkv=4, nq=1000, nk=1000, d=128)
    ours = kernel_attention(q, k, v, is_causal=True, backend="triton")
    sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    ref = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=True)
    # our error is of the order of SDPA's own bf16 error
    assert (ours.double() - ref).abs().max() <= 2 * (sdpa.double() - ref).abs().max() + 1e-3
