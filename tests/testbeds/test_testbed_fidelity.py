"""The papers' conventions as options: the theorem's step size and no LayerNorm, MSSA's Gram scaling, the MLP block
of the in-context model and the energy step's shrinkage."""

import math

import numpy as np
import pytest
import torch

from attention_kernels.testbeds.datasets import make_subspace_tokens, subspace_snr
from attention_kernels.testbeds.energy import rbf_attention_step
from attention_kernels.testbeds.models import MSSA, AttentionOnlyTransformer, LinearAttentionRegressor


@pytest.mark.parametrize("eta,n_layers", [(0.5, 2), (0.1, 5)])
def test_transformer_without_layernorm_is_the_theorem_layer(eta, n_layers):
    Z, labels, bases = make_subspace_tokens(4, 32, 100, delta=0.2, random_state=0)
    model = AttentionOnlyTransformer(Z.shape[1], n_layers, 4, 32, step_size=eta, layer_norm=False,
                                     attention="threshold", tau=0.9, gram_scale=1.0).double()
    with torch.no_grad():
        for block in model.blocks:
            block.bases.copy_(torch.from_numpy(bases))
    z = torch.from_numpy(Z)
    snr = subspace_snr(z, bases, labels)
    with torch.no_grad():
        out = model(z.unsqueeze(0))[0]
    # n_layers steps of Z + eta MSSA(Z): SNR grows by (1 + eta tau) per layer inside the theorem's regime
    np.testing.assert_allclose(subspace_snr(out, bases, labels) / snr, (1 + eta * 0.9) ** n_layers, rtol=1e-9)


def test_step_size_scales_each_update_and_layernorm_is_optional():
    torch.manual_seed(0)
    z = torch.randn(2, 7, 12, dtype=torch.float64)
    model = AttentionOnlyTransformer(12, 1, 3, step_size=0.25, layer_norm=False).double()
    with torch.no_grad():
        torch.testing.assert_close(model(z), z + 0.25 * model.blocks[0](z))
    with_ln = AttentionOnlyTransformer(12, 1, 3, step_size=0.25).double()
    with_ln.blocks[0].load_state_dict(model.blocks[0].state_dict())
    with torch.no_grad():
        expected = z + 0.25 * with_ln.blocks[0](torch.nn.functional.layer_norm(z, (12,)))
        torch.testing.assert_close(with_ln(z), expected)
    for bad in (0.0, -1.0, float("inf"), True):
        with pytest.raises(ValueError, match="step_size"):
            AttentionOnlyTransformer(12, 1, 3, step_size=bad)
    with pytest.raises(TypeError, match="layer_norm"):
        AttentionOnlyTransformer(12, 1, 3, layer_norm="no")


def test_gram_scale_unscaled_vs_crate():
    torch.manual_seed(0)
    u_in = torch.randn(5, 8, dtype=torch.float64)
    crate = MSSA(8, 1, 4).double()
    theorem = MSSA(8, 1, 4, gram_scale=1.0).double()
    theorem.load_state_dict(crate.state_dict())
    u = u_in @ crate.bases[0]
    for model, scale in ((crate, 1 / math.sqrt(4)), (theorem, 1.0)):
        weights = torch.softmax(scale * u @ u.T, dim=-1)
        with torch.no_grad():
            torch.testing.assert_close(model(u_in), weights @ u @ crate.bases[0].T)
    assert "gram_scale=1.0" in repr(theorem)
    with pytest.raises(ValueError, match="gram_scale must be a positive"):
        MSSA(8, 1, 4, gram_scale=0.0)
    with pytest.raises(ValueError, match="gram_scale: kernel 'rbf' has no scale"):
        MSSA(8, 1, 4, kernel="rbf", gram_scale=1.0)


def test_incontext_mlp_block_is_a_residual_after_every_layer():
    torch.manual_seed(0)
    plain = LinearAttentionRegressor(3, n_layers=2).double()
    routed = LinearAttentionRegressor(3, n_layers=2, mlp=True).double()
    routed.load_state_dict(plain.state_dict(), strict=False)
    X, y, xq = torch.randn(4, 6, 3).double(), torch.randn(4, 6).double(), torch.randn(4, 3).double()
    with torch.no_grad():
        for mlp in routed.mlps:  # a zero MLP leaves the residual stream unchanged
            mlp[-1].weight.zero_()
            mlp[-1].bias.zero_()
        torch.testing.assert_close(routed(X, y, xq), plain(X, y, xq))
        routed.mlps[1][-1].bias.fill_(0.5)  # the last block's output reaches the label slot
        torch.testing.assert_close(routed(X, y, xq), plain(X, y, xq) + 0.5)


def test_energy_step_default_shrinks_by_d_over_one_plus_d():
    Y = torch.tensor([[0.0, 0.0], [100.0, 0.0]], dtype=torch.float64)  # two isolated tokens: D_i = 1
    torch.testing.assert_close(rbf_attention_step(Y), Y / 2)
    torch.testing.assert_close(rbf_attention_step(Y, regularization=0.0), Y)
    close = torch.zeros(4, 2, dtype=torch.float64) + 1.0  # four coincident tokens: D_i = 4
    torch.testing.assert_close(rbf_attention_step(close), close * 4 / 5)


@pytest.mark.parametrize("kernel", ["edp", "linear"])
def test_causal_encoder_ignores_the_future(kernel):
    from attention_kernels.testbeds.models import KernelTransformerEncoder

    torch.manual_seed(0)
    model = KernelTransformerEncoder(7, 9, dim=16, n_layers=2, n_heads=2, kernel=kernel, is_causal=True).double()
    tokens = torch.randint(0, 7, (3, 9))
    changed = tokens.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 7
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_unnormalized_causal_layer_averages_over_the_keys_it_sees():
    from attention_kernels.testbeds.models import KernelEncoderLayer

    torch.manual_seed(0)
    layer = KernelEncoderLayer(4, 1, 8, "linear", normalize=False, is_causal=True).double()
    x = torch.randn(1, 5, 4, dtype=torch.float64)
    q, k, v = layer.qkv(layer.norm1(x)).chunk(3, dim=-1)
    scores = (q @ k.transpose(-1, -2) / 2.0).tril()  # linear kernel, scale 1/sqrt(head_dim = 4)
    heads = scores @ v / torch.arange(1, 6, dtype=torch.float64)[:, None]
    after_attention = x + layer.out(heads)
    expected = after_attention + layer.ffn(layer.norm2(after_attention))
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected)


def test_real_valued_tokens_and_kernel_swap():
    from attention_kernels.testbeds.models import KernelTransformerEncoder, SequenceClassifier

    torch.manual_seed(0)
    model = SequenceClassifier(3, vocab_size=None, input_dim=4, max_len=6, dim=8, n_layers=1, n_heads=2)
    x = torch.randn(2, 6, 4)
    assert model(x).shape == (2, 3)
    with pytest.raises(ValueError, match=r"tokens must be real of shape \(batch, seq, 4\)"):
        model(torch.zeros(2, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="exactly one of vocab_size and input_dim"):
        KernelTransformerEncoder(5, 6, input_dim=4)
    with torch.no_grad():
        before = model(x)
        model.encoder.set_kernel("linear")
        swapped = model(x)
        assert all(not layer.normalize and layer.kernel.name == "linear" for layer in model.encoder.layers)
        model.encoder.set_kernel("edp")
        torch.testing.assert_close(model(x), before)  # the weights were kept
    assert not torch.allclose(swapped, before)
