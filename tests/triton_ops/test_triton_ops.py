"""triton_ops against its float64 reference (Triton's interpreter on the CPU; native on a GPU).

Every kernel x mode x causal x mask kind is run forward and backward at tiny awkward shapes (sequence lengths
that are not multiples of the 16-wide blocks, head dims 40 and 24, grouped-query heads, cross attention,
a single key). Tolerances per dtype live in ``TOL``.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported anywhere

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import triton_ops
from triton_ops.reference import reference_attention

pytest.importorskip("triton")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# max |actual - expected| / max(|expected|, 0.1) over a tensor, per input dtype (fp32 = ieee matmuls).
TOL = {torch.float32: 2e-4, torch.float16: 4e-3, torch.bfloat16: 3e-2}

KERNELS = [
    # (kernel, params, modes allowed)
    ("edp", {}, (True, False)),
    ("rbf", {}, (True, False)),
    ("laplacian", {"gamma": 0.3}, (True, False)),
    ("polynomial", {}, (True, False)),  # degree 2
    ("polynomial", {"degree": 3, "coef0": 0.5}, (False,)),
    ("linear", {}, (False,)),
    ("cosine", {}, (False,)),
    ("sigmoid", {"coef0": -0.5}, (True, False)),
    ("tanh", {"coef0": 0.2}, (False,)),
    ("exp_intersection", {}, (True, False)),
]
CASES = [(name, params, norm) for name, params, modes in KERNELS for norm in modes]

# (B, Hq, Hkv, Nq, Nk, D, Dv): single key, cross attention, grouped-query heads, head dim 40
SHAPES = [
    (1, 2, 1, 17, 33, 40, 24),
    (2, 1, 1, 33, 17, 16, 16),
    (1, 2, 2, 1, 1, 16, 40),
    (1, 4, 2, 20, 20, 40, 16),
]


def _rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    expected = expected.double()
    return ((actual.double() - expected).abs().max() / expected.abs().max().clamp_min(0.1)).item()


def _assert_close(actual, expected, dtype, what):
    assert actual.shape == expected.shape, what
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    err = _rel_err(actual, expected)
    assert err <= TOL[dtype], f"{what}: relative error {err:.2e} > {TOL[dtype]:.0e}"


def _make_mask(kind, b, hq, nq, nk, gen):
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


def _inputs(shape, dtype, gen, positive=False):
    b, hq, hkv, nq, nk, d, dv = shape
    q = torch.randn(b, hq, nq, d, generator=gen)
    k = torch.randn(b, hkv, nk, d, generator=gen)
    v = torch.randn(b, hkv, nk, dv, generator=gen)
    if positive:
        q, k = q.abs(), k.abs()
    return [t.to(DEVICE, dtype).requires_grad_() for t in (q, k, v)]


def _check(name, params, normalize, causal, mask_kind, shape, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = _inputs(shape, dtype, gen, positive=name == "exp_intersection")
    mask = _make_mask(mask_kind, shape[0], shape[1], shape[3], shape[4], gen)
    if mask is not None:
        mask = mask.detach().to(DEVICE).requires_grad_(mask.requires_grad)
    kw = dict(kernel=name, normalize=normalize, causal=causal, mask=mask, **params)
    out = triton_ops.kernel_attention(q, k, v, return_lse=normalize, precision="ieee", **kw)
    ref = reference_attention(q, k, v, return_lse=normalize, **kw)
    if normalize:
        (out, lse), (ref, ref_lse) = out, ref
        finite = torch.isfinite(ref_lse)
        assert torch.equal(torch.isfinite(lse), finite)
        _assert_close(lse[finite], ref_lse[finite], dtype, "lse")
    _assert_close(out, ref, dtype, "out")
    inputs = [q, k, v] + ([mask] if mask is not None and mask.requires_grad else [])
    grad_out = torch.randn(out.shape, generator=gen).to(DEVICE)
    grads = torch.autograd.grad(out, inputs, grad_out.to(dtype))
    ref_grads = torch.autograd.grad(ref, inputs, grad_out.double(), allow_unused=True)
    ref_grads = [torch.zeros_like(x, dtype=torch.float64) if g is None else g for x, g in zip(inputs, ref_grads)]
    for what, g, rg in zip(("dq", "dk", "dv", "dmask"), grads, ref_grads):
        _assert_close(g, rg, dtype, what)


@pytest.mark.parametrize("mask_kind", ["none", "bool", "padding", "bias"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name,params,normalize", CASES, ids=[f"{c[0]}-{c[1]}-norm{c[2]}" for c in CASES])
def test_matches_reference(name, params, normalize, causal, mask_kind):
    index = [c[0] for c in CASES].index(name) + 2 * causal + ["none", "bool", "padding", "bias"].index(mask_kind)
    _check(name, params, normalize, causal, mask_kind, SHAPES[index % len(SHAPES)], seed=index)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "name,params,normalize",
    [("edp", {}, True), ("rbf", {}, True), ("polynomial", {"degree": 3}, False), ("cosine", {}, False),
     ("sigmoid", {"coef0": -0.5}, True), ("tanh", {"coef0": 0.2}, False)],
)
def test_half_precision(name, params, normalize, dtype):
    """16-bit inputs: sigmoid and tanh take the tanh-based form (tanh.approx.f32 on a GPU)."""
    _check(name, params, normalize, True, "bool", (1, 2, 1, 33, 33, 40, 40), dtype=dtype)


@pytest.mark.parametrize("normalize,causal,mask_kind,d", [(True, True, "bias", 80), (False, False, "bool", 96)])
def test_exp_intersection_chunked_coordinates(normalize, causal, mask_kind, d):
    """Head dims above 64 take the coordinate-chunked path (score and gradients over 16-wide chunks)."""
    _check("exp_intersection", {}, normalize, causal, mask_kind, (1, 2, 1, 20, 33, d, 24))


def test_exp_intersection_chunked_path_small_head_dim(monkeypatch):
    from triton_ops import _launch

    monkeypatch.setattr(_launch, "_COORD_TILE_MAX_D", 0)
    _check("exp_intersection", {}, True, False, "padding", (2, 2, 2, 17, 21, 40, 16))


@pytest.mark.parametrize("normalize", [True, False])
def test_laplacian_at_zero_distance(normalize):
    """Keys equal to queries: the distance's subgradient 0 is used (finite gradients equal to the reference).

    The tolerance is sqrt(float32 eps)-sized: |q|^2 + |k|^2 - 2 q.k cancels at q = k, so the distance is only
    known to about sqrt(eps) |q| there (the price of the tensor-core expansion, as for rbf), and the gradient's
    direction (q - k) / |q - k| divides by that distance."""
    gen = torch.Generator().manual_seed(7)
    q = torch.randn(1, 2, 20, 40, generator=gen)
    k = torch.cat([q[:, :, :9], torch.randn(1, 2, 11, 40, generator=gen)], dim=2)
    v = torch.randn(1, 2, 20, 24, generator=gen)
    q, k, v = (t.to(DEVICE).requires_grad_() for t in (q, k, v))
    kw = dict(kernel="laplacian", gamma=0.4, normalize=normalize, causal=True)
    out = triton_ops.kernel_attention(q, k, v, precision="ieee", **kw)
    ref = reference_attention(q, k, v, **kw)
    g = torch.randn(out.shape, generator=gen).to(DEVICE)
    actual = (out,) + torch.autograd.grad(out, (q, k, v), g)
    expected = (ref,) + torch.autograd.grad(ref, (q, k, v), g.double())
    for what, a, e in zip(("out", "dq", "dk", "dv"), actual, expected):
        assert torch.isfinite(a).all(), what
        assert _rel_err(a, e) <= 5e-3, f"{what}: {_rel_err(a, e):.1e}"


def test_cosine_with_zero_rows():
    """Zero query/key rows have cosine weight 0 (inverse norms are 0 there), and finite gradients."""
    gen = torch.Generator().manual_seed(11)
    q = torch.randn(1, 2, 19, 40, generator=gen)
    k = torch.randn(1, 2, 23, 40, generator=gen)
    q[:, :, 3] = 0.0
    k[:, :, [0, 7]] = 0.0
    v = torch.randn(1, 2, 23, 16, generator=gen)
    q, k, v = (t.to(DEVICE).requires_grad_() for t in (q, k, v))
    out = triton_ops.kernel_attention(q, k, v, kernel="cosine", normalize=False, precision="ieee")
    ref = reference_attention(q, k, v, kernel="cosine", normalize=False)
    assert torch.all(out[:, :, 3] == 0)
    g = torch.randn(out.shape, generator=gen).to(DEVICE)
    actual = (out,) + torch.autograd.grad(out, (q, k, v), g)
    expected = (ref,) + torch.autograd.grad(ref, (q, k, v), g.double())
    for what, a, e in zip(("out", "dq", "dk", "dv"), actual, expected):
        _assert_close(a, e, torch.float32, what)


@pytest.mark.parametrize("degree", [0, 1, 4])
def test_polynomial_degrees(degree):
    _check("polynomial", {"degree": degree, "coef0": 0.3}, False, False, "none", SHAPES[0])
    if degree % 2 == 0:
        _check("polynomial", {"degree": degree, "coef0": 0.3}, True, True, "bias", SHAPES[1])


def test_edp_equals_sdpa():
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 2, n, 40, generator=gen).to(DEVICE) for n in (19, 35, 35))
    mask = torch.randn(19, 35, generator=gen).to(DEVICE)
    out = triton_ops.kernel_attention(q, k, v, kernel="edp", mask=mask, scale=0.3, precision="ieee")
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3)
    _assert_close(out, expected, torch.float32, "edp vs SDPA")


def test_solver_shape_small_head_dim_ieee():
    """One head whose values are coefficients, D < 16 (padded internally), float32 without tf32."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(1, 1, 50, 3, generator=gen).to(DEVICE)
    c = torch.randn(1, 1, 70, 3, generator=gen).to(DEVICE)
    beta = torch.randn(1, 1, 70, 1, generator=gen).to(DEVICE)
    for name, norm in (("rbf", False), ("laplacian", True), ("polynomial", False)):
        out = triton_ops.kernel_attention(x, c, beta, kernel=name, normalize=norm, precision="ieee")
        _assert_close(out, reference_attention(x, c, beta, kernel=name, normalize=norm), torch.float32, name)


@pytest.mark.parametrize("name", ["edp", "sigmoid", "exp_intersection"])
def test_fully_masked_rows_give_zeros(name):
    gen = torch.Generator().manual_seed(5)
    q, k, v = _inputs((1, 1, 1, 17, 20, 16, 16), torch.float32, gen, positive=True)
    mask = torch.ones(17, 20, dtype=torch.bool)
    mask[3] = False
    mask[11] = False
    out, lse = triton_ops.kernel_attention(q, k, v, kernel=name, mask=mask.to(DEVICE), return_lse=True)
    assert torch.all(out[0, 0, [3, 11]] == 0) and torch.all(lse[0, 0, [3, 11]] == float("-inf"))
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    assert all(torch.isfinite(g).all() for g in grads)
    assert torch.all(grads[0][0, 0, [3, 11]] == 0)


def test_non_contiguous_inputs():
    gen = torch.Generator().manual_seed(6)
    base = torch.randn(1, 17, 2, 48, generator=gen).to(DEVICE)
    q = base[..., :40].transpose(1, 2)  # (B, H, N, D) view with row stride 2 * 48
    k = torch.randn(1, 2, 40, 17, generator=gen).to(DEVICE).transpose(-1, -2)  # last dim not contiguous
    v = torch.randn(1, 2, 17, 16, generator=gen).to(DEVICE)
    out = triton_ops.kernel_attention(q, k, v, kernel="rbf", precision="ieee")
    _assert_close(out, reference_attention(q, k, v, kernel="rbf"), torch.float32, "out")


@settings(max_examples=12, deadline=None)
@given(
    name=st.sampled_from(["edp", "rbf", "polynomial", "sigmoid", "exp_intersection"]),
    nq=st.integers(1, 40), nk=st.integers(1, 40), d=st.integers(1, 48), dv=st.integers(1, 20),
    group=st.sampled_from([1, 2]), causal=st.booleans(), seed=st.integers(0, 2**16),
)
def test_forward_property_random_shapes(name, nq, nk, d, dv, group, causal, seed):
    """Any sequence lengths and head dims (padded internally) match the reference."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(1, group, nq, d, generator=gen).to(DEVICE)
    k = torch.randn(1, 1, nk, d, generator=gen).to(DEVICE)
    v = torch.randn(1, 1, nk, dv, generator=gen).to(DEVICE)
    if name == "exp_intersection":
        q, k = q.abs(), k.abs()
    out = triton_ops.kernel_attention(q, k, v, kernel=name, causal=causal, precision="ieee")
    _assert_close(out, reference_attention(q, k, v, kernel=name, causal=causal), torch.float32, name)


def test_double_backward_is_an_error():
    q, k, v = (t.requires_grad_() for t in (torch.randn(1, 1, 5, 16).to(DEVICE) for _ in range(3)))
    out = triton_ops.kernel_attention(q, k, v, kernel="edp")
    (g,) = torch.autograd.grad(out.sum(), q, create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()


def test_defaults_match_catalogue_constants():
    from triton_ops._spec import resolve_kernel

    assert resolve_kernel("edp", 64, None, {}).c0 == pytest.approx(1 / 8)
    assert resolve_kernel("rbf", 64, None, {}).c0 == pytest.approx(1 / 16)
    poly = resolve_kernel("polynomial", 16, 0.5, {})
    assert (poly.degree, poly.c0, poly.c1) == (2, 0.5, 1.0)
    assert resolve_kernel("sigmoid", 16, None, {}).c1 == 0.0
    assert set(triton_ops.FUSED_KERNELS) == {c[0] for c in KERNELS}


# ----------------------------------------------------------------------------------------------- bad input
def _qkv(dtype=torch.float32, nk=5):
    return torch.randn(1, 2, 4, 16, dtype=dtype), torch.randn(1, 2, nk, 16, dtype=dtype), torch.randn(1, 2, nk, 8, dtype=dtype)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(kernel="softmaxx"), ValueError, 'backend="torch"'),
        (dict(kernel="elu"), ValueError, 'backend="linear"'),
        (dict(kernel=3), TypeError, "`kernel`"),
        (dict(kernel="rbf", scale=0.5), TypeError, "`scale`"),
        (dict(kernel="cosine", scale=0.5), TypeError, "`scale`"),
        (dict(kernel="edp", gamma=0.5), TypeError, "'gamma'"),
        (dict(kernel="rbf", gamma=-1.0), ValueError, "`gamma`"),
        (dict(kernel="edp", scale=float("nan")), ValueError, "`scale`"),
        (dict(kernel="polynomial", degree=1.5), TypeError, "`degree`"),
        (dict(kernel="polynomial", degree=-2), ValueError, "`degree`"),
        (dict(kernel="linear"), ValueError, "normalize=False"),
        (dict(kernel="cosine"), ValueError, "`normalize=True`"),
        (dict(kernel="tanh"), ValueError, "normalize=False"),
        (dict(kernel="polynomial", degree=3), ValueError, "normalize=False"),
        (dict(kernel="edp", normalize=False, return_lse=True), ValueError, "`return_lse"),
        (dict(kernel="edp", precision="fast"), ValueError, "`precision`"),
        (dict(kernel="edp", mask=torch.ones(3, 5, dtype=torch.bool)), ValueError, "`mask`"),
        (dict(kernel="edp", mask=torch.ones(4, 5, dtype=torch.int32)), TypeError, "`mask`"),
        (dict(kernel="edp", mask=[[1.0]]), TypeError, "`mask`"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    q, k, v = _qkv()
    with pytest.raises(exc, match=match):
        triton_ops.kernel_attention(q, k, v, **kwargs)


def test_bad_tensors():
    q, k, v = _qkv()
    with pytest.raises(TypeError, match="float16, bfloat16 and float32"):
        triton_ops.kernel_attention(*_qkv(torch.float64), kernel="edp")
    with pytest.raises(TypeError, match="share one dtype"):
        triton_ops.kernel_attention(q, k.half(), v, kernel="edp")
    with pytest.raises(ValueError, match="`q` and `k` head dims"):
        triton_ops.kernel_attention(q, k[..., :8], v, kernel="edp")
    with pytest.raises(ValueError, match="sequence length"):
        triton_ops.kernel_attention(q, k, v[:, :, :3], kernel="edp")
    with pytest.raises(ValueError, match="multiple of"):
        triton_ops.kernel_attention(torch.randn(1, 3, 4, 16), k, v, kernel="edp")
    with pytest.raises(ValueError, match="batch"):
        triton_ops.kernel_attention(torch.randn(2, 2, 4, 16), k, v, kernel="edp")
    with pytest.raises(ValueError, match=r"shape \(batch, heads, seq, dim\)"):
        triton_ops.kernel_attention(q[0], k, v, kernel="edp")
    with pytest.raises(ValueError, match="empty"):
        triton_ops.kernel_attention(q[:, :, :0], k, v, kernel="edp")
    with pytest.raises(ValueError, match="head dims up to 256"):
        triton_ops.kernel_attention(torch.randn(1, 1, 2, 300), torch.randn(1, 1, 2, 300), v[:, :1, :2], kernel="edp")
    with pytest.raises(ValueError, match="one device"):
        triton_ops.kernel_attention(q, k.to("meta"), v, kernel="edp")


def test_cpu_without_interpreter_names_the_fallback(monkeypatch):
    q, k, v = _qkv()
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match=r'backend="torch".*TRITON_INTERPRET=1'):
        triton_ops.kernel_attention(q, k, v, kernel="edp")


def test_import_without_triton():
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch, triton_ops\n"
        "assert not triton_ops.is_available()\n"
        "q = torch.randn(1, 1, 2, 16)\n"
        "try:\n    triton_ops.kernel_attention(q, q, q, kernel='edp')\n"
        "except RuntimeError as e:\n    assert 'backend=\"torch\"' in str(e), e\n"
        "else:\n    raise SystemExit('no error')\n"
    )
    env = dict(os.environ, TRITON_INTERPRET="1")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root)
