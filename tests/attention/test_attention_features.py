"""kernel_attention's model features (window, ALiBi, sinks, softcap, packed batches, decoding, return_lse)
against the float64 reference, for every kernel and both modes, forward and gradients."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import KERNEL_CASES, make_kernel, randn, reference_features

import attention_kernels._chunked as chunked
from attention_kernels.functional import kernel_attention
from rkbs.kernels import AttentionKernel, get_kernel, list_kernels

# softcap is defined for the dot family (the exponent of edp/rbf/laplacian, the outer function's argument of the
# others) and for exp_intersection (its exponent); the feature-map kernels refuse it
SOFTCAP_KERNELS = set(list_kernels("dot")) | {"exp_intersection"}


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(chunked, "DEFAULT_CHUNK", 4)


def _modes(kernel):
    return (True, False) if kernel.positive_valued else (False,)


FEATURES = {
    "window": {"window": (3, 2)},
    "window_left_causal": {"window": (4, -1), "is_causal": True},
    "kv_cache_causal": {"window": (-1, 0)},
    "alibi": {"alibi_slopes": "heads"},
    "alibi_batch_causal": {"alibi_slopes": "batch_heads", "is_causal": True},
    "sinks": {"sinks": True},
    "softcap": {"softcap": 2.0},
    "everything": {"window": (5, 1), "alibi_slopes": "heads", "sinks": True, "softcap": 3.0},
}


def _assert_gradients_match(out, expected, qkv, kw, seed):
    """The gradients of a random projection of ``out`` and of the float64 reference ``expected``, with respect to
    q, k, v and every tensor argument (ALiBi slopes, sinks), are finite and agree."""
    inputs = [*qkv, *(t for t in kw.values() if isinstance(t, torch.Tensor))]
    g = randn(*out.shape, seed=seed)
    for a, w in zip(torch.autograd.grad((out * g).sum(), inputs), torch.autograd.grad((expected * g).sum(), inputs)):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, w, rtol=1e-8, atol=1e-9)


def _feature_kwargs(name, case, normalize, b, h):
    kw = dict(FEATURES[name])
    if kw.get("alibi_slopes") == "heads":
        kw["alibi_slopes"] = torch.linspace(0.1, 0.6, h, dtype=torch.float64)
    elif kw.get("alibi_slopes") == "batch_heads":
        kw["alibi_slopes"] = torch.linspace(0.05, 0.5, b * h, dtype=torch.float64).reshape(b, h)
    if kw.get("sinks"):
        if not normalize:
            return None
        kw["sinks"] = torch.linspace(-1.0, 1.5, h, dtype=torch.float64)
    if "softcap" in kw and KERNEL_CASES[case][0] not in SOFTCAP_KERNELS:
        return None
    return kw


@pytest.mark.parametrize("case", list(KERNEL_CASES))
@pytest.mark.parametrize("feature", list(FEATURES))
def test_feature_forward_matches_reference(case, feature, small_chunks):
    kernel = make_kernel(case)
    b, h = 2, 2
    for normalize in _modes(kernel):
        kw = _feature_kwargs(feature, case, normalize, b, h)
        if kw is None:
            continue
        for nq, nk in ((11, 11), (6, 13)):  # square, and fewer queries than keys (bottom-right alignment)
            q, k, v = randn(b, h, nq, 8, seed=1), randn(b, h, nk, 8, seed=2), randn(b, h, nk, 5, seed=3)
            out = kernel_attention(q, k, v, kernel=kernel, normalize=normalize, backend="torch", **kw)
            expected, _ = reference_features(q, k, v, kernel, normalize, **kw)
            torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", ["edp", "rbf", "laplacian", "polynomial2", "polynomial3", "linear", "cosine",
                                  "sigmoid", "tanh", "exp_intersection", "elu"])
def test_feature_gradients_match_reference(case, small_chunks):
    """Gradients of q, k, v, the sinks and the ALiBi slopes with every feature at once (and each mode)."""
    kernel = make_kernel(case)
    for normalize in _modes(kernel):
        kw = _feature_kwargs("everything", case, normalize, 1, 2) or _feature_kwargs("alibi", case, normalize, 1, 2)
        kw = {k: (v.clone().requires_grad_(True) if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
        if KERNEL_CASES[case][0] not in SOFTCAP_KERNELS:
            kw.pop("softcap", None)
        q, k, v = (randn(1, 2, n, 40, seed=s, requires_grad=True) for n, s in ((9, 4), (14, 5), (14, 6)))
        out = kernel_attention(q, k, v, kernel=kernel, normalize=normalize, backend="torch", **kw)
        expected, _ = reference_features(q, k, v, kernel, normalize, **kw)
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
        _assert_gradients_match(out, expected, [q, k, v], kw, seed=7)


@pytest.mark.parametrize("case", ["edp", "sigmoid", "cosine"])
def test_feature_gradcheck(case, small_chunks):
    kernel = make_kernel(case)
    q, k, v = randn(1, 2, 5, 3, seed=8, requires_grad=True), randn(1, 2, 7, 3, seed=9, requires_grad=True), \
        randn(1, 2, 7, 2, seed=10, requires_grad=True)
    sinks = torch.tensor([0.3, -0.5], dtype=torch.float64, requires_grad=True)
    slopes = torch.tensor([0.2, 0.7], dtype=torch.float64, requires_grad=True)
    softcap = 0.6 if case == "cosine" else 1.5
    normalize = kernel.positive_valued
    sinks = sinks if normalize else None

    def fn(q, k, v, sinks, slopes):
        res = kernel_attention(q, k, v, kernel=kernel, normalize=normalize, window=(3, 1), sinks=sinks,
                               alibi_slopes=slopes, softcap=softcap, return_lse=normalize, backend="torch")
        return res

    assert torch.autograd.gradcheck(fn, (q, k, v, sinks, slopes))


# -------------------------------------------------------------------------------------- the soft cap's one rule
_CAP_FORMULAS = {  # (kernel, params, normalize): the weights with u = s q.k capped, written out by hand
    "polynomial": ({"degree": 2, "coef0": 0.5}, True, lambda u: (u + 0.5) ** 2),
    "sigmoid": ({"coef0": -1.0}, True, lambda u: torch.sigmoid(u - 1.0)),
    "tanh": ({"coef0": 0.1}, False, lambda u: torch.tanh(u + 0.1)),
    "linear": ({}, False, lambda u: u),
}


@pytest.mark.parametrize("name", list(_CAP_FORMULAS))
def test_softcap_caps_the_scaled_dot_product(name, small_chunks):
    params, normalize, outer = _CAP_FORMULAS[name]
    q, k, v = randn(1, 2, 7, 40, seed=20), randn(1, 2, 10, 40, seed=21), randn(1, 2, 10, 3, seed=22)
    c, s = 0.5, 40**-0.5
    w = outer(c * torch.tanh(s * (q @ k.transpose(-1, -2)) / c))
    if normalize:
        w = w / w.sum(-1, keepdim=True)
    out = kernel_attention(q, k, v, kernel=name, normalize=normalize, softcap=c, backend="torch", **params)
    torch.testing.assert_close(out, w @ v, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(out, kernel_attention(q, k, v, kernel=name, normalize=normalize, **params))


def test_softcap_caps_the_normalised_dot_product_of_cosine(small_chunks):
    q, k, v = randn(1, 1, 6, 40, seed=23), randn(1, 1, 9, 40, seed=24), randn(1, 1, 9, 2, seed=25)
    cos = (q @ k.transpose(-1, -2)) / (q.norm(dim=-1, keepdim=True) * k.norm(dim=-1).unsqueeze(-2))
    out = kernel_attention(q, k, v, kernel="cosine", normalize=False, softcap=0.3, backend="torch")
    torch.testing.assert_close(out, (0.3 * torch.tanh(cos / 0.3)) @ v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("base", ["tanh", "edp"])
def test_softcap_of_a_two_sided_kernel_is_its_base_on_the_mapped_inputs(base, small_chunks):
    wq, wk = randn(40, 40, seed=27) / 40**0.5, randn(40, 40, seed=28) / 40**0.5
    kernel = AttentionKernel(get_kernel(base), query_map=wq, key_map=wk)
    q, k, v = randn(1, 2, 7, 40, seed=29), randn(1, 2, 10, 40, seed=30), randn(1, 2, 10, 3, seed=31)
    normalize = base == "edp"
    out = kernel_attention(q, k, v, kernel=kernel, normalize=normalize, softcap=0.5, backend="torch")
    mapped = kernel_attention(q @ wq, k @ wk, v, kernel=base, normalize=normalize, softcap=0.5, backend="torch")
    torch.testing.assert_close(out, mapped, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ["elu", "relu", "taylor_edp", "positive_random_features", "random_fourier_features"])
def test_softcap_outside_the_dot_family_names_softcap_and_kernel(case):
    kernel = make_kernel(case)
    q = randn(1, 1, 4, 8, seed=26)
    message = rf"softcap caps the exponent .* kernel '{kernel.name}' \(feature_map family\)"
    with pytest.raises(ValueError, match=message):
        kernel_attention(q, q, q, kernel=kernel, normalize=False, softcap=2.0, backend="torch")


# ------------------------------------------------------------------------------ the models' eager formulas
def test_softcap_equals_gemma2_eager():
    """Gemma 2: logits = q k^T * scaling; logits = tanh(logits / c) * c; + causal mask; softmax; @ v."""
    q, k, v = randn(2, 4, 9, 16, seed=11), randn(2, 4, 9, 16, seed=12), randn(2, 4, 9, 16, seed=13)
    scaling, c = 16**-0.5, 5.0
    logits = (q @ k.transpose(-1, -2)) * scaling * 20  # large logits, so the cap bites
    logits = torch.tanh(logits / c) * c
    logits = logits + torch.full((9, 9), -math.inf, dtype=torch.float64).triu(1)
    expected = torch.softmax(logits, dim=-1) @ v
    out = kernel_attention(q, k, v, is_causal=True, scale=scaling * 20, softcap=c)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_sinks_equal_gpt_oss_eager():
    """GPT-OSS: softmax over [logits, sink] with the row max subtracted, sink column dropped."""
    b, h, n, d = 2, 4, 10, 8
    q, k, v = randn(b, h, n, d, seed=14), randn(b, h, n, d, seed=15), randn(b, h, n, d, seed=16)
    sinks = randn(h, seed=17)
    mask = torch.full((n, n), -math.inf, dtype=torch.float64).triu(1)
    logits = q @ k.transpose(2, 3) * d**-0.5 + mask
    sink_col = sinks.reshape(1, -1, 1, 1).expand(b, -1, n, -1)
    combined = torch.cat([logits, sink_col], dim=-1)
    combined = combined - combined.max(dim=-1, keepdim=True).values
    probs = torch.softmax(combined, dim=-1)[..., :-1]
    expected = probs @ v
    torch.testing.assert_close(kernel_attention(q, k, v, is_causal=True, sinks=sinks), expected,
                               rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------ decoding, lse merge
def test_decoding_against_a_cache_is_bottom_right_causal():
    kernel = make_kernel("rbf")
    for nq in (1, 3, 16):
        q, k, v = randn(1, 2, nq, 8, seed=18), randn(1, 2, 300, 8, seed=19), randn(1, 2, 300, 4, seed=20)
        out = kernel_attention(q, k, v, kernel=kernel, window=(-1, 0))
        expected, _ = reference_features(q, k, v, kernel, window=(-1, 0))
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    # the last query of a prefill equals a one-query decode step
    q = randn(1, 2, 300, 8, seed=21)
    full = kernel_attention(q, k, v, kernel=kernel, is_causal=True)
    step = kernel_attention(q[..., -1:, :], k, v, kernel=kernel, window=(-1, 0))
    torch.testing.assert_close(full[..., -1:, :], step, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", ["edp", "laplacian", "sigmoid", "elu"])
def test_return_lse_merges_partial_results(case, small_chunks):
    """Attention over two disjoint key sets, merged through the lse, equals attention over all keys."""
    kernel = make_kernel(case)
    q, k, v = randn(1, 2, 7, 8, seed=22), randn(1, 2, 19, 8, seed=23), randn(1, 2, 19, 3, seed=24)
    sinks = torch.tensor([0.5, -1.0], dtype=torch.float64)
    out, lse = kernel_attention(q, k, v, kernel=kernel, return_lse=True, sinks=sinks, backend="torch")
    ref_out, ref_lse = reference_features(q, k, v, kernel, sinks=sinks)
    torch.testing.assert_close(lse, ref_lse, rtol=1e-10, atol=1e-10)
    parts = [kernel_attention(q, k[..., s, :], v[..., s, :], kernel=kernel, return_lse=True, backend="torch")
             for s in (slice(0, 8), slice(8, 19))]
    lses = torch.stack([p[1] for p in parts])
    total = torch.logsumexp(torch.cat([lses, sinks.reshape(1, 1, 2, 1).expand(1, 1, 2, 7)]), 0)
    merged = sum(torch.exp(p[1] - total).unsqueeze(-1) * p[0] for p in parts)
    torch.testing.assert_close(merged, ref_out, rtol=1e-10, atol=1e-10)


def test_return_lse_of_empty_rows_is_minus_inf():
    q, k, v = randn(1, 4, 8, seed=25), randn(1, 6, 8, seed=26), randn(1, 6, 3, seed=27)
    keep = torch.ones(4, 6, dtype=torch.bool)
    keep[2] = False
    out, lse = kernel_attention(q, k, v, attn_mask=keep, return_lse=True)
    assert (out[:, 2] == 0).all() and lse[0, 2] == -math.inf and torch.isfinite(lse[0, [0, 1, 3]]).all()


# ------------------------------------------------------------------------------------------- packed batches
@pytest.mark.parametrize("backend", ["torch", "linear"])
@pytest.mark.parametrize("case", ["edp", "rbf", "elu"])
def test_packed_varlen_matches_each_sequence(case, backend):
    kernel = make_kernel(case)
    if backend == "linear" and not kernel.has_features:
        pytest.skip("the linear back end needs a feature map")
    # sequence lengths: queries 5, 1, 9 and keys 7, 1, 9
    cu_q = torch.tensor([0, 5, 6, 15], dtype=torch.int32)
    cu_k = torch.tensor([0, 7, 8, 17], dtype=torch.int64)
    q = randn(15, 4, 8, seed=28, requires_grad=True)
    k, v = randn(17, 2, 8, seed=29, requires_grad=True), randn(17, 2, 3, seed=30, requires_grad=True)
    out, lse = kernel_attention(q, k, v, kernel=kernel, is_causal=True, enable_gqa=True, cu_seqlens_q=cu_q,
                                cu_seqlens_k=cu_k, max_seqlen_q=9, max_seqlen_k=9, return_lse=True,
                                backend=backend)
    assert out.shape == (15, 4, 3) and lse.shape == (4, 15)
    refs, ref_lses = [], []
    for (q0, q1), (k0, k1) in zip(zip([0, 5, 6], [5, 6, 15]), zip([0, 7, 8], [7, 8, 17])):
        qs = q[q0:q1].transpose(0, 1)
        ks = k[k0:k1].transpose(0, 1).repeat_interleave(2, 0)
        vs = v[k0:k1].transpose(0, 1).repeat_interleave(2, 0)
        o, l = reference_features(qs, ks, vs, kernel, is_causal=True)
        refs.append(o.transpose(0, 1))
        ref_lses.append(l)
    expected = torch.cat(refs)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(lse, torch.cat(ref_lses, -1), rtol=1e-10, atol=1e-10)
    g = randn(*out.shape, seed=31)
    for a, w in zip(torch.autograd.grad((out * g).sum(), (q, k, v)),
                    torch.autograd.grad((expected * g).sum(), (q, k, v))):
        torch.testing.assert_close(a, w, rtol=1e-9, atol=1e-9)


def test_window_skips_tiles(monkeypatch):
    """Cost O(N * window): the number of tiles formed grows with the window, not with N^2."""
    monkeypatch.setattr(chunked, "DEFAULT_CHUNK", 16)
    seen = []
    original = chunked._kernel_part
    monkeypatch.setattr(chunked, "_kernel_part", lambda plan, q, k, inplace: seen.append(q.shape[-2] * k.shape[-2])
                        or original(plan, q, k, inplace))
    q = randn(1, 1, 256, 4, seed=32)
    kernel_attention(q, q, q, kernel="laplacian", window=(16, 0))
    windowed = sum(seen)
    seen.clear()
    kernel_attention(q, q, q, kernel="laplacian")
    assert windowed <= 3 * 16 * 256 < sum(seen) / 4


@pytest.mark.parametrize("case", ["edp", "sigmoid", "tanh"])
def test_one_tile_training_path_matches_reference(case):
    """Default tiles: a small problem is one tile, differentiated by plain autograd instead of the tiled backward."""
    kernel = make_kernel(case)
    for normalize in _modes(kernel):
        kw = _feature_kwargs("everything", case, normalize, 1, 2) or _feature_kwargs("alibi", case, normalize, 1, 2)
        kw = {k: (v.clone().requires_grad_(True) if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
        if KERNEL_CASES[case][0] not in SOFTCAP_KERNELS:
            kw.pop("softcap", None)
        q, k, v = (randn(1, 2, n, 8, seed=s, requires_grad=True) for n, s in ((9, 33), (14, 34), (14, 35)))
        mask = randn(9, 14, seed=36)
        mask[3] = -math.inf
        out = kernel_attention(q, k, v, attn_mask=mask, kernel=kernel, normalize=normalize, backend="torch", **kw)
        expected, _ = reference_features(q, k, v, kernel, normalize, attn_mask=mask, **kw)
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
        _assert_gradients_match(out, expected, [q, k, v], kw, seed=37)


@pytest.mark.parametrize("case", ["edp", "laplacian", "sigmoid", "tanh", "cosine", "linear"])
@pytest.mark.parametrize("budget", [1 << 30, 0], ids=["one_piece", "tiled"])
def test_one_piece_and_tiled_paths_match_reference(case, budget, monkeypatch):
    """Default tile sizing on a multi-tile problem (awkward lengths, d = 40): within ONE_PIECE_BYTES training runs in
    one piece through plain autograd (matmul-tile kernels), otherwise through the tiles; both match the reference, masks, ALiBi,
    sinks, softcap, fully masked rows and return_lse included."""
    monkeypatch.setattr(chunked, "TILE_ELEMENTS", 16)  # 64 x 64 tiles: 2 x 3 of them here
    monkeypatch.setattr(chunked, "ONE_PIECE_BYTES", budget)
    calls = []
    one_tile = chunked._one_tile
    monkeypatch.setattr(chunked, "_one_tile", lambda *a: calls.append(1) or one_tile(*a))
    kernel = make_kernel(case)
    for normalize in _modes(kernel):
        kw = _feature_kwargs("alibi", case, normalize, 1, 2)
        if normalize:
            kw["sinks"] = torch.linspace(-1.0, 1.5, 2, dtype=torch.float64)
        if KERNEL_CASES[case][0] in SOFTCAP_KERNELS:
            kw["softcap"] = 3.0
        kw = {k: (v.clone().requires_grad_(True) if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
        q, k, v = (randn(1, 2, n, 40, seed=s, requires_grad=True) for n, s in ((70, 38), (130, 39), (130, 40)))
        mask = randn(70, 130, seed=41)
        mask[5] = -math.inf
        calls.clear()
        out, lse = kernel_attention(q, k, v, attn_mask=mask, kernel=kernel, normalize=normalize, backend="torch",
                                    return_lse=normalize, **kw) if normalize else (kernel_attention(
            q, k, v, attn_mask=mask, kernel=kernel, normalize=False, backend="torch", **kw), None)
        assert len(calls) == (1 if budget and case in ("cosine", "linear") else 0)  # matmul tiles only
        expected, ref_lse = reference_features(q, k, v, kernel, normalize, attn_mask=mask, **kw)
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
        if normalize:
            torch.testing.assert_close(lse, ref_lse, rtol=1e-10, atol=1e-10)
        _assert_gradients_match(out, expected, [q, k, v], kw, seed=42)


def test_one_piece_only_where_it_pays(monkeypatch):
    """Causal tiles skip enough of the matrix to beat storing it; tanh (elementwise work per tile) and inference
    keep the tiles above one tile; a problem over the budget stays tiled; dropout trains in one piece."""
    monkeypatch.setattr(chunked, "TILE_ELEMENTS", 16)
    calls = []
    one_tile = chunked._one_tile
    monkeypatch.setattr(chunked, "_one_tile", lambda *a: calls.append(1) or one_tile(*a))
    q, k, v = (randn(1, 2, 200, 8, seed=s, requires_grad=True) for s in (43, 44, 45))
    kernel_attention(q, k, v, is_causal=True, kernel="linear", normalize=False, backend="torch")
    kernel_attention(q, k, v, kernel="tanh", normalize=False, backend="torch")
    with torch.no_grad():
        kernel_attention(q, k, v, kernel="linear", normalize=False, backend="torch")
    monkeypatch.setattr(chunked, "ONE_PIECE_BYTES", 2 * 200 * 200 * 8 - 1)
    kernel_attention(q, k, v, kernel="linear", normalize=False, backend="torch")
    assert not calls
    monkeypatch.setattr(chunked, "ONE_PIECE_BYTES", 2 * 200 * 200 * 8)
    out = kernel_attention(q, k, v, kernel="linear", normalize=False, backend="torch", dropout_p=0.5)
    assert calls and torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(q.grad).all()
