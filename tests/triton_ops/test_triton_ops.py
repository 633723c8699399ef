"""triton_ops against its float64 reference (Triton's interpreter on the CPU; native on a GPU).

Every kernel x mode x causal x mask kind is run forward and backward at tiny awkward shapes (sequence lengths
that are not multiples of the 16-wide blocks, head dims 40 and 24, grouped-query heads, cross attention,
a single key). Tolerances per dtype live in ``TOL``.
"""

import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import DEVICE, assert_close, check_fused, fused, fused_inputs, fused_reference, rel_err

import triton_ops
from rkbs.kernels import get_kernel, list_kernels
from triton_ops import Epilogue, KernelSpec

pytest.importorskip("triton")

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


MASK_KINDS = ["none", "bool", "padding", "bias"]


def _reference_cases():
    """Every kernel x mode x causal x mask kind; two (causal, mask) pairs per kernel and mode stay in the quick
    loop (every mask kind is still met by each causal setting across the kernels), the rest are marked slow."""
    for i, (name, params, normalize) in enumerate(CASES):
        for causal in (False, True):
            for j, mask_kind in enumerate(MASK_KINDS):
                quick = j == (i + 2 * causal) % len(MASK_KINDS)
                yield pytest.param(name, params, normalize, causal, mask_kind,
                                   id=f"{name}-{params}-norm{normalize}-{causal}-{mask_kind}",
                                   marks=[] if quick else [pytest.mark.slow])


@pytest.mark.parametrize("name,params,normalize,causal,mask_kind", list(_reference_cases()))
def test_matches_reference(name, params, normalize, causal, mask_kind):
    index = [c[0] for c in CASES].index(name) + 2 * causal + MASK_KINDS.index(mask_kind)
    check_fused(name, params, normalize, causal, mask_kind, SHAPES[index % len(SHAPES)], seed=index)


@pytest.mark.slow  # 12 interpreted forward+backward runs at 33 x 33
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "name,params,normalize",
    [("edp", {}, True), ("rbf", {}, True), ("polynomial", {"degree": 3}, False), ("cosine", {}, False),
     ("sigmoid", {"coef0": -0.5}, True), ("tanh", {"coef0": 0.2}, False)],
)
def test_half_precision(name, params, normalize, dtype):
    """16-bit inputs: sigmoid and tanh take the tanh-based form (tanh.approx.f32 on a GPU)."""
    check_fused(name, params, normalize, True, "bool", (1, 2, 1, 33, 33, 40, 40), dtype=dtype)


@pytest.mark.slow  # the (rows x keys x dim) coordinate tiles are the interpreter's slowest case
@pytest.mark.parametrize("normalize,causal,mask_kind,d", [(True, True, "bias", 80), (False, False, "bool", 96)])
def test_exp_intersection_chunked_coordinates(normalize, causal, mask_kind, d):
    """Head dims above 64 take the coordinate-chunked path (score and gradients over 16-wide chunks)."""
    check_fused("exp_intersection", {}, normalize, causal, mask_kind, (1, 2, 1, 20, 33, d, 24))


@pytest.mark.slow
def test_exp_intersection_chunked_path_small_head_dim(monkeypatch):
    from triton_ops import _launch

    monkeypatch.setattr(_launch, "_COORD_TILE_MAX_D", 0)
    check_fused("exp_intersection", {}, True, False, "padding", (2, 2, 2, 17, 21, 40, 16))


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
    out = fused(q, k, v, precision="ieee", **kw)
    ref = fused_reference(q, k, v, **kw)
    g = torch.randn(out.shape, generator=gen).to(DEVICE)
    actual = (out,) + torch.autograd.grad(out, (q, k, v), g)
    expected = (ref,) + torch.autograd.grad(ref, (q, k, v), g.double())
    for what, a, e in zip(("out", "dq", "dk", "dv"), actual, expected):
        assert torch.isfinite(a).all(), what
        assert rel_err(a, e) <= 5e-3, f"{what}: {rel_err(a, e):.1e}"


def test_cosine_with_zero_rows():
    """Zero query/key rows have cosine weight 0 (inverse norms are 0 there), and finite gradients."""
    gen = torch.Generator().manual_seed(11)
    q = torch.randn(1, 2, 19, 40, generator=gen)
    k = torch.randn(1, 2, 23, 40, generator=gen)
    q[:, :, 3] = 0.0
    k[:, :, [0, 7]] = 0.0
    v = torch.randn(1, 2, 23, 16, generator=gen)
    q, k, v = (t.to(DEVICE).requires_grad_() for t in (q, k, v))
    out = fused(q, k, v, kernel="cosine", normalize=False, precision="ieee")
    ref = fused_reference(q, k, v, kernel="cosine", normalize=False)
    assert torch.all(out[:, :, 3] == 0)
    g = torch.randn(out.shape, generator=gen).to(DEVICE)
    actual = (out,) + torch.autograd.grad(out, (q, k, v), g)
    expected = (ref,) + torch.autograd.grad(ref, (q, k, v), g.double())
    for what, a, e in zip(("out", "dq", "dk", "dv"), actual, expected):
        assert_close(a, e, torch.float32, what)


@pytest.mark.parametrize("degree", [0, 1, 4])
def test_polynomial_degrees(degree):
    check_fused("polynomial", {"degree": degree, "coef0": 0.3}, False, False, "none", SHAPES[0])
    if degree % 2 == 0:
        check_fused("polynomial", {"degree": degree, "coef0": 0.3}, True, True, "bias", SHAPES[1])


def test_edp_equals_sdpa():
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 2, n, 40, generator=gen).to(DEVICE) for n in (19, 35, 35))
    mask = torch.randn(19, 35, generator=gen).to(DEVICE)
    out = fused(q, k, v, kernel="edp", mask=mask, scale=0.3, precision="ieee")
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3)
    assert_close(out, expected, torch.float32, "edp vs SDPA")


def test_solver_shape_small_head_dim_ieee():
    """One head whose values are coefficients, D < 16 (padded internally), float32 without tf32."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(1, 1, 50, 3, generator=gen).to(DEVICE)
    c = torch.randn(1, 1, 70, 3, generator=gen).to(DEVICE)
    beta = torch.randn(1, 1, 70, 1, generator=gen).to(DEVICE)
    for name, norm in (("rbf", False), ("laplacian", True), ("polynomial", False)):
        out = fused(x, c, beta, kernel=name, normalize=norm, precision="ieee")
        assert_close(out, fused_reference(x, c, beta, kernel=name, normalize=norm), torch.float32, name)


@pytest.mark.parametrize("name", ["edp", "sigmoid", "exp_intersection"])
def test_fully_masked_rows_give_zeros(name):
    gen = torch.Generator().manual_seed(5)
    q, k, v = fused_inputs((1, 1, 1, 17, 20, 16, 16), torch.float32, gen, positive=True)
    mask = torch.ones(17, 20, dtype=torch.bool)
    mask[3] = False
    mask[11] = False
    out, lse = fused(q, k, v, kernel=name, mask=mask.to(DEVICE), return_lse=True)
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
    out = fused(q, k, v, kernel="rbf", precision="ieee")
    assert_close(out, fused_reference(q, k, v, kernel="rbf"), torch.float32, "out")


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
    out = fused(q, k, v, kernel=name, causal=causal, precision="ieee")
    assert_close(out, fused_reference(q, k, v, kernel=name, causal=causal), torch.float32, name)


def test_double_backward_is_an_error():
    q, k, v = (t.requires_grad_() for t in (torch.randn(1, 1, 5, 16).to(DEVICE) for _ in range(3)))
    out = fused(q, k, v, kernel="edp")
    (g,) = torch.autograd.grad(out.sum(), q, create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()


def test_catalogue_owns_the_fused_kernels():
    """Every fused epilogue has exactly one catalogue kernel, and only catalogue kernels have a fused form."""
    specs = {name: get_kernel(name).fused_spec(64) for name in list_kernels()}
    fused_names = [name for name, spec in specs.items() if spec is not None]
    assert sorted(specs[n].kernel_id for n in fused_names) == list(Epilogue)
    assert {c[0] for c in KERNELS} == set(fused_names)
    assert specs["edp"].c0 == pytest.approx(1 / 8) and specs["rbf"].c0 == pytest.approx(1 / 16)


def test_subclass_keeps_the_chunked_path():
    from rkbs.kernels import RBF

    class Sharper(RBF):
        def evaluate(self, x, y):
            return super().evaluate(x, y) ** 2

    assert Sharper().fused_spec(16) is None

    class OptIn(RBF):  # a subclass that defines _fused_spec itself takes the fused path
        def _fused_spec(self, d):
            return RBF._fused_spec(self, d)

    assert OptIn().fused_spec(16) == RBF().fused_spec(16)


# ----------------------------------------------------------------------------------------------- bad input
def _qkv(dtype=torch.float32, nk=5):
    return torch.randn(1, 2, 4, 16, dtype=dtype), torch.randn(1, 2, nk, 16, dtype=dtype), torch.randn(1, 2, nk, 8, dtype=dtype)


EDP_SPEC = get_kernel("edp").fused_spec(16)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(spec="rbf"), TypeError, "`spec` must be a triton_ops.KernelSpec"),
        (dict(spec=EDP_SPEC, is_causal="yes"), TypeError, "`is_causal` must be a bool"),
        (dict(spec=EDP_SPEC, enable_gqa=1), TypeError, "`enable_gqa` must be a bool"),
        (dict(spec=EDP_SPEC, normalize=1), TypeError, "normalize must be a bool"),
        (dict(spec=get_kernel("linear").fused_spec(16)), ValueError, "normalize=True needs a non-negative kernel"),
        (dict(spec=get_kernel("cosine").fused_spec(16)), ValueError, "epilogue COSINE can be negative"),
        (dict(spec=get_kernel("polynomial", degree=3).fused_spec(16)), ValueError, r"POLYNOMIAL \(degree 3\)"),
        (dict(spec=EDP_SPEC, normalize=False, return_lse=True), ValueError, "`return_lse"),
        (dict(spec=EDP_SPEC, precision="fast"), ValueError, "`precision`"),
        (dict(spec=EDP_SPEC, attn_mask=torch.ones(3, 5, dtype=torch.bool)), ValueError, "`attn_mask`"),
        (dict(spec=EDP_SPEC, attn_mask=torch.ones(4, 5, dtype=torch.int32)), TypeError, "`attn_mask`"),
        (dict(spec=EDP_SPEC, attn_mask=[[1.0]]), TypeError, "`attn_mask`"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    q, k, v = _qkv()
    with pytest.raises(exc, match=match):
        triton_ops.kernel_attention(q, k, v, **kwargs)


def test_sdpa_names_only():
    q, k, v = _qkv()
    with pytest.raises(TypeError, match="causal"):
        triton_ops.kernel_attention(q, k, v, spec=EDP_SPEC, causal=True)
    with pytest.raises(TypeError, match="kernel"):
        triton_ops.kernel_attention(q, k, v, kernel="edp")


@pytest.mark.parametrize(
    "fields,exc,match",
    [
        (dict(kernel_id=42), ValueError, "kernel_id"),
        (dict(c0=float("nan")), ValueError, "c0"),
        (dict(c1="1"), TypeError, "c1"),
        (dict(degree=-1), TypeError, "degree"),
        (dict(degree=1.5), TypeError, "degree"),
        (dict(nonnegative=1), TypeError, "nonnegative"),
    ],
)
def test_bad_spec(fields, exc, match):
    good = dict(kernel_id=Epilogue.EDP, c0=1.0, c1=0.0, degree=0, nonnegative=True)
    with pytest.raises(exc, match=match):
        KernelSpec(**{**good, **fields})


def test_bad_tensors():
    q, k, v = _qkv()
    s = EDP_SPEC
    with pytest.raises(TypeError, match="float16, bfloat16 and float32"):
        triton_ops.kernel_attention(*_qkv(torch.float64), spec=s)
    with pytest.raises(TypeError, match="share one dtype"):
        triton_ops.kernel_attention(q, k.half(), v, spec=s)
    with pytest.raises(ValueError, match="`query` and `key` head dims"):
        triton_ops.kernel_attention(q, k[..., :8], v, spec=s)
    with pytest.raises(ValueError, match="sequence length"):
        triton_ops.kernel_attention(q, k, v[:, :, :3], spec=s)
    with pytest.raises(ValueError, match="enable_gqa=True"):
        triton_ops.kernel_attention(torch.randn(1, 4, 4, 16), k, v, spec=s)
    with pytest.raises(ValueError, match="multiple of"):
        triton_ops.kernel_attention(torch.randn(1, 3, 4, 16), k, v, spec=s, enable_gqa=True)
    with pytest.raises(ValueError, match="batch"):
        triton_ops.kernel_attention(torch.randn(2, 2, 4, 16), k, v, spec=s)
    with pytest.raises(ValueError, match=r"shape \(batch, heads, seq, dim\)"):
        triton_ops.kernel_attention(q[0], k, v, spec=s)
    with pytest.raises(ValueError, match="empty"):
        triton_ops.kernel_attention(q[:, :, :0], k, v, spec=s)
    with pytest.raises(ValueError, match="head dims up to 256"):
        triton_ops.kernel_attention(torch.randn(1, 1, 2, 300), torch.randn(1, 1, 2, 300), v[:, :1, :2], spec=s)
    with pytest.raises(ValueError, match="one device"):
        triton_ops.kernel_attention(q, k.to("meta"), v, spec=s)


def test_cpu_without_interpreter_names_the_fallback(monkeypatch):
    q, k, v = _qkv()
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match=r'backend="torch".*TRITON_INTERPRET=1'):
        fused(q, k, v, kernel="edp")


def test_import_without_triton():
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch, triton_ops\n"
        "assert not triton_ops.is_available()\n"
        "q = torch.randn(1, 1, 2, 16)\n"
        "spec = triton_ops.KernelSpec(triton_ops.Epilogue.EDP, 0.25, 0.0, 0, True)\n"
        "try:\n    triton_ops.kernel_attention(q, q, q, spec=spec)\n"
        "except RuntimeError as e:\n    assert 'backend=\"torch\"' in str(e), e\n"
        "else:\n    raise SystemExit('no error')\n"
    )
    env = dict(os.environ, TRITON_INTERPRET="1")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root)
