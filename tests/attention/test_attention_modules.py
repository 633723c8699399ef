"""KernelMultiheadAttention vs torch.nn.MultiheadAttention, layers, swap_attention, from_estimator, compile."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from helpers import randn

from attention_kernels.functional import kernel_attention
from attention_kernels.modules import (
    KernelAttention,
    KernelMultiheadAttention,
    KernelTransformerDecoderLayer,
    KernelTransformerEncoderLayer,
)
from attention_kernels.swap import swap_attention

E, H = 16, 4

CONFIGS = {
    "default": {},
    "batch_first": {"batch_first": True},
    "kdim_vdim": {"kdim": 6, "vdim": 10},
    "bias_kv_zero_attn": {"add_bias_kv": True, "add_zero_attn": True},
    "no_bias": {"bias": False},
}


def _pair(config, **kernel):
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(E, H, dtype=torch.float64, **config)
    ours = KernelMultiheadAttention(E, H, dtype=torch.float64, **config, **kernel)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _inputs(config, batched=True, n=3, length=5, source=7):
    kd, vd = config.get("kdim", E), config.get("vdim", E)
    shape = (lambda s, d: (n, s, d) if config.get("batch_first") else (s, n, d)) if batched else (lambda s, d: (s, d))
    return (randn(*shape(length, E), seed=1, requires_grad=True), randn(*shape(source, kd), seed=2, requires_grad=True),
            randn(*shape(source, vd), seed=3, requires_grad=True))


def _masks(n=3, length=5, source=7):
    g = torch.Generator().manual_seed(0)
    bool_attn = torch.rand(length, source, generator=g) < 0.3
    bool_attn[:, 0] = False  # torch gives NaN on fully masked rows; keep one key per row
    float_attn = torch.randn(n * H, length, source, generator=g, dtype=torch.float64)
    kpm = torch.zeros(n, source, dtype=torch.bool)
    kpm[0, -2:] = True
    return {"none": {}, "bool": {"attn_mask": bool_attn}, "float3d": {"attn_mask": float_attn},
            "padding": {"key_padding_mask": kpm}, "both": {"attn_mask": bool_attn, "key_padding_mask": kpm}}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("mask", ["none", "bool", "float3d", "padding", "both"])
@pytest.mark.parametrize("need_weights", [True, False])
def test_edp_equals_torch_mha(config, mask, need_weights):
    cfg = CONFIGS[config]
    ref, ours = _pair(cfg)
    inputs = _inputs(cfg)
    masks = _masks()[mask]
    out_ref, w_ref = ref(*inputs, need_weights=need_weights, average_attn_weights=False, **masks)
    grads_ref = torch.autograd.grad(out_ref.square().sum(), [*inputs, *ref.parameters()])
    out, w = ours(*inputs, need_weights=need_weights, average_attn_weights=False, **masks)
    grads = torch.autograd.grad(out.square().sum(), [*inputs, *ours.parameters()])
    torch.testing.assert_close(out, out_ref)
    if need_weights:
        torch.testing.assert_close(w, w_ref)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref)


def test_unbatched_averaged_weights_and_causal():
    ref, ours = _pair({})
    q, k, v = _inputs({}, batched=False)
    for args in ({"need_weights": True}, {"need_weights": False}):
        out_ref, w_ref = ref(q, k, v, **args)
        out, w = ours(q, k, v, **args)
        torch.testing.assert_close(out, out_ref)
        if w_ref is not None:
            torch.testing.assert_close(w, w_ref)
    x = randn(6, 2, E, seed=4)
    causal = nn.Transformer.generate_square_subsequent_mask(6, dtype=torch.float64)
    out_ref, _ = ref(x, x, x, attn_mask=causal, is_causal=True, need_weights=False)
    torch.testing.assert_close(ours(x, x, x, is_causal=True, need_weights=False)[0], out_ref)
    torch.testing.assert_close(ours(x, x, x, attn_mask=causal, is_causal=True)[0], out_ref)


def test_state_dict_round_trip_and_kernel_is_used():
    ref, ours = _pair({}, kernel="rbf")
    assert set(ours.state_dict()) == set(ref.state_dict())
    ref.load_state_dict(ours.state_dict())
    q, k, v = _inputs({})
    out, w = ours(q, k, v, average_attn_weights=False)
    qh = nn.functional.linear(q, ours.in_proj_weight[:E], ours.in_proj_bias[:E]).reshape(5, 3, H, 4).permute(1, 2, 0, 3)
    kh = nn.functional.linear(k, ours.in_proj_weight[E:2 * E], ours.in_proj_bias[E:2 * E]).reshape(7, 3, H, 4).permute(1, 2, 0, 3)
    vh = nn.functional.linear(v, ours.in_proj_weight[2 * E:], ours.in_proj_bias[2 * E:]).reshape(7, 3, H, 4).permute(1, 2, 0, 3)
    expected = ours.out_proj(kernel_attention(qh, kh, vh, kernel="rbf").permute(2, 0, 1, 3).reshape(5, 3, E))
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)))


def test_module_errors():
    _, ours = _pair({})
    q, k, v = _inputs({})
    with pytest.raises(ValueError, match="query has 8 features but the module expects 16"):
        ours(q[..., :8], k, v)
    with pytest.raises(ValueError, match="key_padding_mask must have shape"):
        ours(q, k, v, key_padding_mask=torch.zeros(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="normalize=True needs a non-negative kernel"):
        KernelMultiheadAttention(E, H, kernel="tanh")
    with pytest.raises(ValueError, match="backend must be one of"):
        KernelMultiheadAttention(E, H, backend="fast")
    with pytest.raises(ValueError, match="key and value are required"):
        KernelAttention()(q)


def _encoder(**kernel):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(E, H, dim_feedforward=32, dropout=0.0, batch_first=True, dtype=torch.float64)
    return nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=True)


def test_swap_attention_edp_leaves_outputs_unchanged():
    model = _encoder().eval()
    x = randn(3, 6, E, seed=5)
    kpm = torch.zeros(3, 6, dtype=torch.bool)
    kpm[1, 4:] = True
    with torch.no_grad():
        expected = model(x, src_key_padding_mask=kpm)
    params = list(model.parameters())
    swapped = swap_attention(copy.deepcopy(model))
    assert sum(isinstance(m, KernelMultiheadAttention) for m in swapped.modules()) == 2
    model = swap_attention(model)
    assert all(a is b for a, b in zip(params, model.parameters()))  # same Parameter objects
    with torch.no_grad():  # eval + no_grad: torch's fast paths would bypass the kernel; they must not
        out = model(x, src_key_padding_mask=kpm)
    torch.testing.assert_close(out[~kpm], expected[~kpm])
    swap_attention(model, kernel="rbf")
    with torch.no_grad():
        assert not torch.allclose(model(x, src_key_padding_mask=kpm)[~kpm], expected[~kpm])


def test_encoder_layer_fast_path_uses_the_kernel():
    torch.manual_seed(0)
    layer = KernelTransformerEncoderLayer(E, H, 32, 0.0, batch_first=True, dtype=torch.float64, kernel="rbf")
    x = randn(2, 5, E, seed=6)
    train_out = layer(x)  # training mode: never the fast path
    layer.eval()
    with torch.no_grad():
        torch.testing.assert_close(layer(x), train_out.detach())


def test_decoder_layer_edp_equals_torch():
    torch.manual_seed(0)
    ref = nn.TransformerDecoderLayer(E, H, 32, 0.0, batch_first=True, dtype=torch.float64)
    ours = KernelTransformerDecoderLayer(E, H, 32, 0.0, batch_first=True, dtype=torch.float64)
    ours.load_state_dict(ref.state_dict())
    x, mem = randn(2, 5, E, seed=7), randn(2, 8, E, seed=8)
    causal = nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64)
    torch.testing.assert_close(ours(x, mem, tgt_mask=causal, tgt_is_causal=True), ref(x, mem, tgt_mask=causal, tgt_is_causal=True))


def test_kernel_attention_module_and_compile():
    attn = KernelAttention(kernel="sigmoid", coef0=-1.0, dropout=0.1).eval()
    q, k, v = (randn(1, 2, 9, 8, seed=s, dtype=torch.float32) for s in (9, 10, 11))
    expected = kernel_attention(q, k, v, kernel="sigmoid", coef0=-1.0)
    torch.testing.assert_close(attn(q, k, v), expected)
    torch.testing.assert_close(torch.compile(attn, backend="aot_eager")(q, k, v), expected)


def test_from_estimator_matches_predict():
    pytest.importorskip("rkbs")
    try:
        from rkbs import RKBSRegressor
    except ImportError:
        try:
            from rkbs.estimators.regressor import RKBSRegressor
        except ImportError:
            pytest.skip("rkbs.RKBSRegressor does not exist yet")
    rng = np.random.RandomState(0)
    X, Xt = rng.randn(40, 3), rng.randn(11, 3)
    y = np.sin(X).sum(1)
    for normalize, target in ((True, y), (False, np.c_[y, y ** 2])):
        est = RKBSRegressor(kernel="rbf", alpha=0.1, normalize=normalize).fit(X, target)
        module = KernelAttention.from_estimator(est)
        out = module(torch.from_numpy(Xt)).numpy()
        assert out.shape == est.predict(Xt).shape
        np.testing.assert_allclose(out, est.predict(Xt), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="fitted on 3"):
        module(torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="call fit first"):
        KernelAttention.from_estimator(RKBSRegressor())


@pytest.mark.parametrize("extra", [{"add_zero_attn": True}, {"add_bias_kv": True},
                                   {"add_bias_kv": True, "add_zero_attn": True}], ids=["zero", "bias_kv", "both"])
@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("padding", [False, True])
@pytest.mark.parametrize("mask_kind", ["bool", "float"])
def test_causal_with_extra_keys_equals_torch_mha(extra, need_weights, padding, mask_kind):
    ref, ours = _pair(extra)
    x = randn(6, 3, E, seed=12, requires_grad=True)
    causal = nn.Transformer.generate_square_subsequent_mask(6, dtype=torch.float64)
    if mask_kind == "bool":
        causal = causal.isinf()
    kpm = None
    if padding:
        kpm = torch.zeros(3, 6, dtype=torch.bool)
        kpm[1, -2:] = True
    args = dict(attn_mask=causal, is_causal=True, key_padding_mask=kpm, need_weights=need_weights,
                average_attn_weights=False)
    out_ref, w_ref = ref(x, x, x, **args)
    out, w = ours(x, x, x, **args)
    torch.testing.assert_close(out, out_ref)
    if need_weights:
        torch.testing.assert_close(w, w_ref)
    torch.testing.assert_close(torch.autograd.grad(out.sum(), x)[0], torch.autograd.grad(out_ref.sum(), x)[0])
    args.pop("attn_mask")  # ours builds the causal mask torch requires
    torch.testing.assert_close(ours(x, x, x, **args)[0], out_ref)


def _compiled_round(backend, compile_backend):
    kernel = "elu" if backend == "linear" else "edp"
    torch.manual_seed(0)
    mha = KernelMultiheadAttention(E, H, batch_first=True, kernel=kernel, backend=backend)
    x = torch.randn(2, 9, E, requires_grad=True)
    for causal in (True, False):
        expected = mha(x, x, x, need_weights=False, is_causal=causal)[0]
        grad = torch.autograd.grad(expected.square().sum(), [x, *mha.parameters()])
        torch._dynamo.reset()
        out = torch.compile(mha, backend=compile_backend)(x, x, x, need_weights=False, is_causal=causal)[0]
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        for g, g_ref in zip(torch.autograd.grad(out.square().sum(), [x, *mha.parameters()]), grad):
            torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-5)


def _backends():
    from attention_kernels.functional import _triton_ops

    skip = pytest.mark.skipif(not torch.cuda.is_available() or _triton_ops() is None, reason="needs CUDA and Triton")
    return ["torch", "linear", pytest.param("triton", marks=skip)]


@pytest.mark.parametrize("backend", _backends())
def test_compile_aot_eager_forward_and_backward(backend):
    _compiled_round(backend, "aot_eager")


@pytest.mark.slow
@pytest.mark.parametrize("backend", _backends())
def test_compile_inductor_forward_and_backward(backend):
    # inductor compiles C++ on the CPU (minutes for a whole MultiheadAttention): the attention core, causal
    kernel = "elu" if backend == "linear" else "edp"
    attn = KernelAttention(kernel=kernel, backend=backend)
    q, k, v = (randn(1, 2, 9, 8, seed=s, dtype=torch.float32, requires_grad=True) for s in (15, 16, 17))
    expected = attn(q, k, v, is_causal=True)
    grads = torch.autograd.grad(expected.square().sum(), [q, k, v])
    torch._dynamo.reset()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors; intra-op threads only spin on a busy machine
    try:
        out = torch.compile(attn, backend="inductor")(q, k, v, is_causal=True)
        compiled_grads = torch.autograd.grad(out.square().sum(), [q, k, v])
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    for g, g_ref in zip(compiled_grads, grads):
        torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kernel", ["positive_random_features", "random_fourier_features"])
def test_random_feature_draw_survives_state_dict(kernel):
    normalize = kernel == "positive_random_features"
    torch.manual_seed(0)
    saved = KernelMultiheadAttention(E, H, kernel=kernel, normalize=normalize, n_features=16)
    state = saved.state_dict()
    assert any(k.startswith("kernel_draws.") for k in state)
    torch.manual_seed(1)
    loaded = KernelMultiheadAttention(E, H, kernel=kernel, normalize=normalize, n_features=16)
    x = randn(5, 2, E, seed=13, dtype=torch.float32)
    assert not torch.allclose(loaded(x, x, x)[0], saved(x, x, x)[0])  # a different draw...
    loaded.load_state_dict(state)
    torch.testing.assert_close(loaded(x, x, x)[0], saved(x, x, x)[0], rtol=0, atol=0)  # ...until loaded
    assert any(k.startswith("kernel_draws.") for k in state)  # the caller's dict is not consumed
    nn.MultiheadAttention(E, H).load_state_dict(state, strict=False)  # torch's module ignores the draw

    core = KernelAttention(kernel=kernel, normalize=normalize, n_features=16)
    q = randn(1, 2, 7, 8, seed=14, dtype=torch.float32)
    out = core(q, q, q)  # the draw happens here, for head dimension 8
    fresh = KernelAttention(kernel=kernel, normalize=normalize, n_features=16)
    fresh.load_state_dict(core.state_dict())
    torch.testing.assert_close(fresh(q, q, q), out, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="draws no features"):
        KernelAttention(kernel="edp").load_state_dict(core.state_dict())
