"""The model features of the fused kernels against the float64 reference (Triton's interpreter on the CPU).

Soft cap, ALiBi, sinks, sliding windows, packed variable-length batches and the split-KV decoding forward,
forward and every gradient (query, key, value, ALiBi slopes, sinks, and the log-sum-exp's own gradient), at
small awkward shapes: lengths that are not multiples of the 16-wide blocks, head dims 40 and 80, batch 1,
grouped-query heads, one key.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import DEVICE, TOL, rel_err

import triton_ops
from rkbs.kernels import get_kernel, list_kernels
from triton_ops import _launch
from triton_ops.reference import reference_attention

pytest.importorskip("triton")
if not triton_ops.is_available():
    pytest.skip("needs CUDA or Triton's interpreter", allow_module_level=True)


def _close(actual, expected, what, dtype=torch.float32):
    assert actual.shape == expected.shape, what
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    err = rel_err(actual, expected)
    assert err <= TOL[dtype], f"{what}: relative error {err:.2e}"


def _tensors(gen, *shapes, positive=False, dtype=torch.float32):
    ts = [torch.randn(s, generator=gen) for s in shapes]
    if positive:
        ts = [t.abs() for t in ts]
    return [t.to(DEVICE, dtype).requires_grad_() for t in ts]


def _grads_match(out, ref, lse, ref_lse, inputs, gen, dtype=torch.float32):
    """Compare out (and lse) and the gradients of one random loss that also weighs the finite lse entries."""
    _close(out, ref, "out", dtype)
    go = torch.randn(out.shape, generator=gen).to(DEVICE, out.dtype)
    loss, ref_loss = (out * go).sum(), (ref * go.double()).sum()
    if lse is not None:
        finite = torch.isfinite(ref_lse)
        assert torch.equal(torch.isfinite(lse), finite)
        _close(lse[finite], ref_lse[finite], "lse", dtype)
        gl = torch.randn(lse.shape, generator=gen).to(DEVICE)
        loss = loss + (lse * gl)[finite].sum()
        ref_loss = ref_loss + (ref_lse * gl.double())[finite].sum()
    grads = torch.autograd.grad(loss, inputs)
    ref_grads = torch.autograd.grad(ref_loss, inputs, allow_unused=True)
    for i, (g, rg) in enumerate(zip(grads, ref_grads)):
        _close(g, torch.zeros_like(g, dtype=torch.float64) if rg is None else rg, f"gradient of input {i}", dtype)


def check(kernel, params, normalize, causal, shape, *, window=None, alibi=None, sinks=False, softcap=None,
          splits=None, seed=0, dtype=torch.float32):
    """Fused against reference; ``alibi``: None, "heads" ((H,) slopes) or "batch" ((B, H) slopes)."""
    b, hq, hk, nq, nk, d, dv = shape
    gen = torch.Generator().manual_seed(seed)
    q, k, v = _tensors(gen, (b, hq, nq, d), (b, hk, nk, d), (b, hk, nk, dv), positive=kernel == "exp_intersection",
                       dtype=dtype)
    extra = {}
    if alibi is not None:
        extra["alibi_slopes"] = (0.3 * torch.rand((hq,) if alibi == "heads" else (b, hq), generator=gen)).to(
            DEVICE).requires_grad_()
    if sinks:
        extra["sinks"] = torch.randn(hq, generator=gen).to(DEVICE).requires_grad_()
    spec = get_kernel(kernel, **params).fused_spec(d)
    kw = dict(spec=spec, is_causal=causal, enable_gqa=hq != hk, normalize=normalize, window=window,
              softcap=softcap, return_lse=normalize, **extra)
    previous, _launch.SPLIT_KV = _launch.SPLIT_KV, splits
    try:
        res = triton_ops.kernel_attention(q, k, v, precision="ieee", **kw)
    finally:
        _launch.SPLIT_KV = previous
    ref = reference_attention(q, k, v, **kw)
    (out, lse), (ref_out, ref_lse) = (res, ref) if normalize else ((res, None), (ref, None))
    _grads_match(out, ref_out, lse, ref_lse, [q, k, v, *extra.values()], gen, dtype)


# (kernel, params, normalize, causal, (B, Hq, Hkv, Nq, Nk, D, Dv), features)
CASES = [
    ("edp", {"scale": 1.0}, True, False, (1, 2, 1, 17, 33, 40, 24), dict(softcap=2.0)),  # Gemma 2's form
    ("rbf", {}, True, True, (1, 2, 2, 20, 20, 40, 16), dict(softcap=1.5, sinks=True)),
    ("laplacian", {"gamma": 0.3}, False, False, (2, 1, 1, 9, 17, 16, 16), dict(softcap=0.7)),
    ("edp", {}, True, False, (2, 2, 1, 17, 20, 16, 24), dict(alibi="batch")),
    ("sigmoid", {"coef0": -0.5}, True, True, (1, 2, 1, 17, 33, 40, 24), dict(alibi="heads", sinks=True)),
    ("polynomial", {"degree": 3, "coef0": 0.5}, False, False, (1, 2, 1, 17, 33, 40, 24),
     dict(window=(-1, 2), alibi="heads")),
    ("edp", {}, True, False, (1, 2, 1, 17, 33, 40, 24), dict(window=(5, 3))),
    ("edp", {}, True, True, (1, 4, 2, 33, 33, 40, 16), dict(window=(4, 0), sinks=True)),
    ("cosine", {}, False, False, (1, 1, 1, 20, 18, 40, 16), dict(window=(2, 2))),
    ("edp", {}, True, False, (1, 2, 2, 1, 1, 16, 40), dict(sinks=True, alibi="heads")),  # one key
    ("edp", {}, True, True, (1, 2, 1, 33, 40, 80, 24),
     dict(window=(9, -1), alibi="heads", sinks=True, softcap=5.0)),
    ("exp_intersection", {}, True, False, (1, 2, 1, 9, 17, 80, 16), dict(alibi="heads", window=(3, 3))),
]


@pytest.mark.parametrize("kernel,params,normalize,causal,shape,features", CASES,
                         ids=[f"{c[0]}-{'-'.join(c[5])}" for c in CASES])
def test_features_match_reference(kernel, params, normalize, causal, shape, features):
    check(kernel, params, normalize, causal, shape, **features)


@pytest.mark.slow
@pytest.mark.parametrize("kernel,params,normalize", [
    ("laplacian", {"gamma": 0.3}, True), ("tanh", {"coef0": 0.2}, False), ("exp_intersection", {}, False),
    ("polynomial", {}, True),
])
def test_every_feature_on_more_kernels(kernel, params, normalize):
    features = dict(window=(6, 2), alibi="batch")
    if normalize:
        features["sinks"] = True
    features["softcap"] = 3.0
    check(kernel, params, normalize, True, (2, 2, 1, 20, 37, 40, 24), **features)


# Soft cap on every dot-family kernel, both modes where defined: the exponent of edp, rbf and laplacian, the
# outer function's argument (c0 q.k; cosine q.k / (|q| |k|)) of the others. The cap (0.8) bites: |u| ~ 1.
_SOFTCAP_PARAMS = {"laplacian": {"gamma": 0.3}, "polynomial": {"degree": 3, "coef0": 0.5},
                   "sigmoid": {"coef0": -0.5}, "tanh": {"coef0": 0.1}}
SOFTCAP_CASES = [(name, _SOFTCAP_PARAMS.get(name, {}), normalize) for name in list_kernels("dot")
                 for normalize in ((True, False) if get_kernel(name, **_SOFTCAP_PARAMS.get(name, {})).positive_valued
                                   else (False,))]
SOFTCAP_CASES.append(("polynomial", {"degree": 2}, True))  # the even, normalizable polynomial


@pytest.mark.parametrize("kernel,params,normalize", SOFTCAP_CASES,
                         ids=[f"{c[0]}{c[1].get('degree', '')}-{'norm' if c[2] else 'raw'}" for c in SOFTCAP_CASES])
def test_softcap_on_every_dot_kernel(kernel, params, normalize):
    check(kernel, params, normalize, normalize, (1, 2, 1, 17, 19, 40, 16), softcap=0.8)


def test_window_never_reads_blocks_outside_it():
    """Block skipping, observed: NaN keys/values far behind the window (and NaN queries far ahead of a key block)
    would reach the results through the matmuls if their blocks were visited and only masked. The rows and keys
    checked are at least 128 positions (the largest block) away from the NaN ones."""
    gen = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, 1, 400, 16, generator=gen).to(DEVICE) for _ in range(3))
    k[..., :8, :], v[..., :8, :] = float("nan"), float("nan")
    q[..., 392:, :] = float("nan")
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    out = triton_ops.kernel_attention(q, k, v, spec=get_kernel("edp").fused_spec(16), window=(4, 0))
    assert torch.isfinite(out[..., 256:384, :]).all()
    dq, dk, dv = torch.autograd.grad(out[..., 256:384, :].sum(), (q, k, v))
    assert torch.isfinite(dq[..., 256:384, :]).all()
    assert torch.isfinite(dk[..., 128:256, :]).all() and torch.isfinite(dv[..., 128:256, :]).all()


# ------------------------------------------------------------------------------------------------ split-KV decoding
@pytest.mark.parametrize("kernel,params,normalize,shape,features,splits", [
    ("edp", {}, True, (1, 2, 1, 3, 70, 40, 24), dict(sinks=True), 3),
    ("rbf", {}, True, (2, 2, 2, 1, 70, 16, 16), dict(window=(30, 0)), 4),
    ("sigmoid", {"coef0": -0.5}, False, (1, 2, 1, 16, 50, 80, 16), dict(alibi="heads"), 5),
    ("edp", {}, True, (1, 1, 1, 1, 9, 16, 16), dict(window=(2, 0)), 9),  # splits that see no key give lse -inf
])
def test_split_kv_decoding_matches_reference(kernel, params, normalize, shape, features, splits):
    check(kernel, params, normalize, False, shape, splits=splits, **features)


@pytest.mark.parametrize("kernel,normalize,causal,shape,features,splits", [
    ("edp", True, False, (2, 8, 2, 1, 45, 40, 24), dict(alibi="batch", sinks=True, window=(20, 0)), None),
    ("edp", True, False, (2, 8, 2, 1, 45, 40, 24), dict(alibi="batch", sinks=True, window=(20, 0)), 3),
    ("sigmoid", False, False, (1, 4, 1, 5, 37, 80, 16), dict(alibi="heads", window=(-1, 0)), 2),
    ("rbf", True, True, (1, 6, 2, 7, 30, 16, 16), dict(softcap=2.0), None),  # 21 rows: a partial second block
])
def test_grouped_heads_packed_into_decoding_blocks(kernel, normalize, causal, shape, features, splits):
    """A few queries with grouped-query heads: the heads of a group share the program (and its key reads)."""
    params = {"coef0": -0.5} if kernel == "sigmoid" else {}
    check(kernel, params, normalize, causal, shape, splits=splits, **features)


@pytest.mark.parametrize("per_head", [False, True])
def test_grouped_decoding_with_a_mask(per_head):
    """Key-padding masks shared by the heads take the packed path; per-head masks the one-head-per-program one."""
    gen = torch.Generator().manual_seed(6)
    q, k, v = (t.detach() for t in _tensors(gen, (2, 4, 2, 16), (2, 1, 29, 16), (2, 1, 29, 16)))
    mask = torch.rand(2, 4 if per_head else 1, 1, 29, generator=gen).to(DEVICE) < 0.7
    kw = dict(spec=get_kernel("edp").fused_spec(16), enable_gqa=True, return_lse=True)
    out, lse = triton_ops.kernel_attention(q, k, v, mask, precision="ieee", **kw)
    ref, ref_lse = reference_attention(q, k, v, mask, **kw)
    _close(out, ref, "out")
    _close(lse, ref_lse, "lse")


def test_decoding_is_bottom_right_aligned():
    """One query against a cache with window (-1, 0) sees every key (FlashAttention's KV-cache alignment)."""
    gen = torch.Generator().manual_seed(3)
    q, k, v = (t.detach() for t in _tensors(gen, (1, 2, 1, 16), (1, 2, 40, 16), (1, 2, 40, 16)))
    spec = get_kernel("edp").fused_spec(16)
    full = triton_ops.kernel_attention(q, k, v, spec=spec)
    cached = triton_ops.kernel_attention(q, k, v, spec=spec, window=(-1, 0))
    torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-6)


def test_lse_merges_partial_results():
    """Attention over two disjoint key sets merged through their lse equals attention over all keys."""
    gen = torch.Generator().manual_seed(4)
    q, k, v = (t.detach() for t in _tensors(gen, (1, 2, 5, 16), (1, 2, 37, 16), (1, 2, 37, 16)))
    sinks = torch.randn(2, generator=gen)
    spec = get_kernel("rbf").fused_spec(16)
    full = triton_ops.kernel_attention(q, k, v, spec=spec, sinks=sinks)
    o1, l1 = triton_ops.kernel_attention(q, k[..., :20, :], v[..., :20, :], spec=spec, return_lse=True)
    o2, l2 = triton_ops.kernel_attention(q, k[..., 20:, :], v[..., 20:, :], spec=spec, return_lse=True)
    lse = torch.logsumexp(torch.stack([l1, l2, sinks.view(1, 2, 1).expand_as(l1)]), 0)
    merged = torch.exp(l1 - lse).unsqueeze(-1) * o1 + torch.exp(l2 - lse).unsqueeze(-1) * o2
    torch.testing.assert_close(merged, full, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("kernel,params,normalize,features", [
    ("edp", {}, True, dict(window=(200, 0), alibi="heads", sinks=True, softcap=30.0)),
    ("rbf", {}, True, dict(window=(-1, 64), sinks=True)),
    ("sigmoid", {"coef0": -2.0}, False, dict(alibi="batch", window=(300, 300))),
])
def test_features_on_a_gpu(kernel, params, normalize, features, dtype):
    check(kernel, params, normalize, True, (2, 8, 2, 700, 1000, 128, 128), dtype=dtype, **features)


@pytest.mark.gpu
@pytest.mark.parametrize("nq", [1, 16])
def test_decoding_on_a_gpu_splits_the_keys(nq):
    """The launch's own split-KV choice (not pinned) for a few queries against 20k keys."""
    check("edp", {}, True, False, (2, 8, 2, nq, 20000, 128, 128), window=(-1, 0), sinks=True,
          dtype=torch.bfloat16)


# ------------------------------------------------------------------------------------------------------ packed batches
def check_varlen(kernel, params, normalize, causal, lens_q, lens_k, *, hq=2, hk=1, d=40, dv=24, window=None,
                 alibi=False, sinks=False, softcap=None, seed=1):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = _tensors(gen, (sum(lens_q), hq, d), (sum(lens_k), hk, d), (sum(lens_k), hk, dv),
                       positive=kernel == "exp_intersection")
    extra = {}
    if alibi:
        extra["alibi_slopes"] = (0.3 * torch.rand(hq, generator=gen)).to(DEVICE).requires_grad_()
    if sinks:
        extra["sinks"] = torch.randn(hq, generator=gen).to(DEVICE).requires_grad_()
    cu_q, cu_k = (torch.tensor([0, *torch.tensor(n).cumsum(0).tolist()], dtype=torch.int32, device=DEVICE)
                  for n in (lens_q, lens_k))
    kw = dict(spec=get_kernel(kernel, **params).fused_spec(d), is_causal=causal, enable_gqa=hq != hk,
              normalize=normalize, window=window, softcap=softcap, return_lse=normalize, **extra)
    res = triton_ops.kernel_attention(q, k, v, precision="ieee", cu_seqlens_q=cu_q, cu_seqlens_k=cu_k,
                                      max_seqlen_q=max(lens_q), max_seqlen_k=max(lens_k), **kw)
    outs, lses = [], []
    for i in range(len(lens_q)):
        qs, ks, vs = (t[c[i]:c[i + 1]].transpose(0, 1).unsqueeze(0) for t, c in ((q, cu_q), (k, cu_k), (v, cu_k)))
        r = reference_attention(qs, ks, vs, **kw)
        r_out, r_lse = r if normalize else (r, None)
        outs.append(r_out[0].transpose(0, 1))
        lses.append(r_lse[0] if normalize else None)
    ref_out = torch.cat(outs, 0)
    ref_lse = torch.cat(lses, -1) if normalize else None
    out, lse = res if normalize else (res, None)
    _grads_match(out, ref_out, lse, ref_lse, [q, k, v, *extra.values()], gen)


@pytest.mark.parametrize("kernel,params,normalize,causal,lens_q,lens_k,features", [
    ("edp", {}, True, False, [5, 0, 19, 1], [7, 3, 19, 1], {}),  # an empty query sequence, one key
    ("edp", {}, True, True, [5, 17, 1], [7, 20, 33], dict(alibi=True, sinks=True)),
    ("rbf", {}, True, False, [5, 17, 1], [7, 20, 33], dict(window=(6, 0), softcap=2.0)),
    ("sigmoid", {"coef0": -0.5}, False, False, [5, 17], [7, 20], {}),
    ("exp_intersection", {}, True, False, [5, 17], [7, 20], dict(window=(3, 3), d=80)),
])
def test_varlen_matches_reference_per_sequence(kernel, params, normalize, causal, lens_q, lens_k, features):
    check_varlen(kernel, params, normalize, causal, lens_q, lens_k, **features)


# -------------------------------------------------------------------------------------------------------- properties
@settings(max_examples=8)
@given(nq=st.integers(1, 40), nk=st.integers(1, 40), left=st.integers(-1, 20), right=st.integers(-1, 20),
       causal=st.booleans(), seed=st.integers(0, 2**16))
def test_window_forward_property(nq, nk, left, right, causal, seed):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(s, generator=gen).to(DEVICE) for s in ((1, 1, nq, 16), (1, 1, nk, 16), (1, 1, nk, 16)))
    kw = dict(spec=get_kernel("edp").fused_spec(16), is_causal=causal, window=(left, right), return_lse=True)
    out, lse = triton_ops.kernel_attention(q, k, v, precision="ieee", **kw)
    ref, ref_lse = reference_attention(q, k, v, **kw)
    _close(out, ref, "out")
    assert torch.equal(torch.isfinite(lse), torch.isfinite(ref_lse))


# ------------------------------------------------------------------------------------------------------------ errors
def _small():
    return (torch.randn(1, 2, 5, 16, device=DEVICE),) * 3


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(softcap=-1.0), ValueError, "`softcap` must be a finite positive number"),
    (dict(softcap=float("nan")), ValueError, "`softcap` must be a finite positive number"),
    (dict(kernel="polynomial", normalize=False, sinks=torch.zeros(2)), ValueError, "`sinks` join the row sum"),
    (dict(sinks=torch.zeros(3)), ValueError, r"`sinks` must have shape \(2,\)"),
    (dict(sinks=torch.zeros(2, dtype=torch.int64)), TypeError, "`sinks` must be a floating tensor"),
    (dict(alibi_slopes=torch.zeros(2, 2)), ValueError, "`alibi_slopes` must have shape"),
    (dict(alibi_slopes=[0.5, 0.5]), TypeError, "`alibi_slopes` must be a torch.Tensor"),
    (dict(window=(3,)), ValueError, "`window` must be None or a pair"),
    (dict(window=(-2, 0)), ValueError, "`window` must be None or a pair"),
    (dict(max_seqlen_q=5), ValueError, "`max_seqlen_q`/`max_seqlen_k` need `cu_seqlens_q`"),
    (dict(cu_seqlens_q=torch.tensor([0, 5], dtype=torch.int32)), ValueError, "must be a packed"),
])
def test_feature_errors_name_the_argument(kwargs, exc, match):
    q, k, v = _small()
    kernel = kwargs.pop("kernel", "edp")
    normalize = kwargs.pop("normalize", True)
    spec = get_kernel(kernel).fused_spec(16)
    with pytest.raises(exc, match=match):
        triton_ops.kernel_attention(q, k, v, spec=spec, normalize=normalize, **kwargs)


@pytest.mark.parametrize("kwargs,match", [
    (dict(cu_seqlens_q=torch.tensor([0, 5])), "`cu_seqlens_q` and `cu_seqlens_k` must be given together"),
    (dict(cu_seqlens_q=torch.tensor([0, 2, 5]), cu_seqlens_k=torch.tensor([0, 5])), "2 sequences but"),
    (dict(cu_seqlens_q=torch.tensor([0, 4]), cu_seqlens_k=torch.tensor([0, 5])), "end at the packed length 5"),
    (dict(cu_seqlens_q=torch.tensor([0.0, 5.0]), cu_seqlens_k=torch.tensor([0, 5])), "1-D int32/int64"),
    (dict(cu_seqlens_q=torch.tensor([0, 5]), cu_seqlens_k=torch.tensor([0, 5]), max_seqlen_k=3),
     r"`max_seqlen_k` must be an int >= the longest sequence \(5\)"),
    (dict(cu_seqlens_q=torch.tensor([0, 5]), cu_seqlens_k=torch.tensor([0, 5]),
          attn_mask=torch.ones(5, 5, dtype=torch.bool)), "`attn_mask` is not supported with `cu_seqlens_q`"),
])
def test_varlen_errors_name_the_argument(kwargs, match):
    q = torch.randn(5, 2, 16, device=DEVICE)
    kwargs = {k: (v.to(DEVICE) if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}
    with pytest.raises(ValueError, match=match):
        triton_ops.kernel_attention(q, q, q, spec=get_kernel("edp").fused_spec(16), **kwargs)
