"""triton_ops on a CUDA device at realistic shapes (skipped without one).

Forward and every gradient against the float64 reference, N = 1000..4096, head dims 64/128 (and 80),
bf16/fp16/fp32; and the kernel-machine shape (one head, D < 16, many keys) in float32 with ieee matmuls.
Errors are max |actual - expected| / max(|expected|, 0.1), bounded per dtype by ``GPU_TOL`` or, for half
precision, by 1.5x the error of eager PyTorch computing the same thing in the same dtype (the yardstick a
user would otherwise get), whichever is larger.
"""

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

triton_ops = pytest.importorskip("triton_ops")
from helpers import fused, fused_reference  # noqa: E402

# long rows accumulate more rounding than the interpreter tests' tiny shapes
GPU_TOL = {torch.float32: 1e-3, torch.float16: 1e-2, torch.bfloat16: 4e-2}

CASES = [
    ("edp", {}, True), ("edp", {}, False), ("rbf", {}, True), ("rbf", {}, False),
    ("laplacian", {}, True), ("polynomial", {}, True), ("polynomial", {"degree": 3}, False),
    ("linear", {}, False), ("cosine", {}, False), ("sigmoid", {}, True), ("tanh", {}, False),
    ("exp_intersection", {}, True),
]


def _err(actual, expected):
    expected = expected.double()
    return ((actual.double() - expected).abs().max() / expected.abs().max().clamp_min(0.1)).item()


def _run(name, params, normalize, shape, dtype, causal, mask=None, precision="default"):
    b, hq, hkv, nq, nk, d, dv = shape
    gen = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(b, hq, nq, d, device="cuda", generator=gen)
    k = torch.randn(b, hkv, nk, d, device="cuda", generator=gen)
    v = torch.randn(b, hkv, nk, dv, device="cuda", generator=gen)
    if name == "exp_intersection":
        q, k = q.abs(), k.abs()
    if name in ("edp", "polynomial", "linear", "sigmoid", "tanh"):
        q, k = q * 0.5, k * 0.5  # keep un-normalized exponentials / high powers in range for fp16
    q, k, v = (t.to(dtype).requires_grad_() for t in (q, k, v))
    kw = dict(kernel=name, normalize=normalize, causal=causal, mask=mask, **params)
    out = fused(q, k, v, precision=precision, **kw)
    ref = fused_reference(q, k, v, **kw)
    do = torch.randn(out.shape, device="cuda", generator=gen)
    grads = torch.autograd.grad(out, (q, k, v), do.to(dtype))
    ref_grads = torch.autograd.grad(ref, (q, k, v), do.double())
    expected = (ref,) + ref_grads
    tols = [GPU_TOL[dtype]] * 4
    if dtype != torch.float32:
        eager = fused_reference(q, k, v, compute_dtype=dtype, **kw)
        eager_all = (eager,) + torch.autograd.grad(eager, (q, k, v), do.to(dtype))
        tols = [max(t, 1.5 * _err(a, e)) for t, a, e in zip(tols, eager_all, expected)]
    for what, a, e, tol in zip(("out", "dq", "dk", "dv"), (out,) + grads, expected, tols):
        assert torch.isfinite(a).all(), what
        assert _err(a, e) <= tol, f"{name} {what}: {_err(a, e):.2e} > {tol:.2e}"


@pytest.mark.parametrize("name,params,normalize", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_bf16_realistic(name, params, normalize):
    n = 1000 if name == "exp_intersection" else 2048
    _run(name, params, normalize, (1, 4, 2, n, n + 37, 64, 64), torch.bfloat16, causal=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("d", [80, 128])
def test_dtypes_and_head_dims(dtype, d):
    for name, params, normalize in (("edp", {}, True), ("rbf", {}, True), ("polynomial", {"degree": 3}, False)):
        _run(name, params, normalize, (2, 2, 2, 1500, 1024, d, d), dtype, causal=False)


@pytest.mark.parametrize("name,params,normalize", [("sigmoid", {"coef0": -0.5}, True), ("tanh", {}, False),
                                                    ("cosine", {}, False)])
def test_fp16_special_function_epilogues(name, params, normalize):
    """16-bit sigmoid/tanh use tanh.approx.f32; cosine reads precomputed inverse norms."""
    _run(name, params, normalize, (2, 4, 4, 2048, 2048, 128, 128), torch.float16, causal=False)


@pytest.mark.parametrize("autotune", ["0", "1"])
def test_table_and_autotuned_blocks_agree(monkeypatch, autotune):
    """The measured default blocks and whatever the autotuner picks compute the same thing."""
    monkeypatch.setenv("TRITON_OPS_AUTOTUNE", autotune)
    _run("rbf", {}, True, (1, 4, 4, 3000, 3000, 128, 128), torch.bfloat16, causal=True)


def test_key_padding_and_learnable_bias_at_scale():
    b, h, n, d = 2, 4, 4096, 64
    pad = torch.zeros(b, 1, 1, n, device="cuda")
    pad[0, ..., 3000:] = float("-inf")
    _run("rbf", {}, True, (b, h, h, n, n, d, d), torch.bfloat16, causal=False, mask=pad)
    bias = (0.3 * torch.randn(1024, 1024, device="cuda")).requires_grad_()
    q, k, v = (torch.randn(1, 2, 1024, 64, device="cuda", requires_grad=True) for _ in range(3))
    out = fused(q, k, v, kernel="sigmoid", mask=bias, precision="ieee")
    ref = fused_reference(q, k, v, kernel="sigmoid", mask=bias)
    g, = torch.autograd.grad(out.sum(), bias)
    rg, = torch.autograd.grad(ref.sum(), bias)
    assert _err(out, ref) < 1e-4 and _err(g, rg) < 1e-4


def test_edp_matches_sdpa_bf16():
    q, k, v = (torch.randn(2, 16, 4096, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    out = fused(q, k, v, kernel="edp", causal=True)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert (out.float() - expected.float()).abs().max().item() < 2e-2


def test_solver_shape_fp32_ieee():
    """Kernel-machine prediction: one head, D = 10, 30000 centers, 3 coefficient columns, full fp32."""
    gen = torch.Generator(device="cuda").manual_seed(1)
    x = torch.randn(1, 1, 20000, 10, device="cuda", generator=gen)
    c = torch.randn(1, 1, 30000, 10, device="cuda", generator=gen)
    beta = torch.randn(1, 1, 30000, 3, device="cuda", generator=gen)
    for name, normalize in (("rbf", False), ("laplacian", True), ("polynomial", False)):
        out = fused(x, c, beta, kernel=name, normalize=normalize, precision="ieee")
        ref = fused_reference(x, c, beta, kernel=name, normalize=normalize)
        assert _err(out, ref) < 1e-5, name


@pytest.mark.parametrize(
    "d,dtype", [(16, torch.bfloat16), (40, torch.float32), (256, torch.bfloat16), (256, torch.float32)]
)
def test_head_dim_extremes(d, dtype):
    """Smallest, odd and largest head dims compile (shared memory) and match, sequence lengths off the blocks."""
    for name, params, normalize in (("edp", {}, True), ("rbf", {}, False)):
        _run(name, params, normalize, (1, 2, 1, 600, 700, d, d), dtype, causal=True)
    _run("exp_intersection", {}, True, (1, 2, 2, 300, 257, d, d), dtype, causal=False)
