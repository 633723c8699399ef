"""The benchmark's kernel-swappable encoder and the constrained linear-attention regressor."""

import pytest
import torch

from attention_kernels.testbeds.datasets import make_hierarchical_sequences, make_incontext_regression, mask_leaves
from attention_kernels.testbeds.models import (
    KernelTransformerEncoder,
    LinearAttentionRegressor,
    MaskedLanguageModel,
    SequenceClassifier,
)


def test_edp_encoder_layer_is_softmax_attention():
    """With kernel='edp' the attention block equals torch's scaled_dot_product_attention."""
    torch.manual_seed(0)
    enc = KernelTransformerEncoder(7, 9, dim=16, n_layers=1, n_heads=2, kernel="edp").double()
    layer = enc.layers[0]
    x = torch.randn(3, 9, 16, dtype=torch.float64)
    b, n, d = x.shape
    q, k, v = layer.qkv(layer.norm1(x)).view(b, n, 3, 2, 8).permute(2, 0, 3, 1, 4)
    attn = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    h = x + layer.out(attn.transpose(1, 2).reshape(b, n, d))
    expected = h + layer.ffn(layer.norm2(h))
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("kernel", ["edp", "rbf", "polynomial", "elu", "linear"])
def test_models_differ_only_in_kernel_and_one_step_reduces_loss(kernel):
    X, y, grammar = make_hierarchical_sequences(64, 3, 4, random_state=0)
    torch.manual_seed(0)
    reference = SequenceClassifier(4, vocab_size=5, max_len=8, dim=16, n_layers=1, n_heads=2, kernel="edp")
    torch.manual_seed(0)
    model = SequenceClassifier(4, vocab_size=5, max_len=8, dim=16, n_layers=1, n_heads=2, kernel=kernel)
    for (name, p), (_, p_ref) in zip(model.named_parameters(), reference.named_parameters()):
        assert torch.equal(p, p_ref), name
    assert model.encoder.layers[0].normalize == (kernel != "linear")
    tokens, target = torch.from_numpy(X), torch.from_numpy(y)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(model(tokens), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[1] < losses[0]


def test_masked_language_model_shapes():
    X, _, _ = make_hierarchical_sequences(5, 2, 3, random_state=0)
    Xm, mask = mask_leaves(X, 3, random_state=0)
    model = MaskedLanguageModel(3, vocab_size=4, max_len=4, dim=8, n_layers=1, n_heads=2)
    assert model(torch.from_numpy(Xm)).shape == (5, 4, 3)


def test_linear_attention_regressor_matches_explicit_formula_and_ignores_query_label():
    torch.manual_seed(0)
    X, y, _, _ = make_incontext_regression(4, 6, 3, random_state=0)
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    model = LinearAttentionRegressor(3, n_layers=2).double()
    pred = model(X[:, :-1], y[:, :-1], X[:, -1])
    z = torch.cat([torch.cat([X[:, :-1], y[:, :-1, None]], -1), torch.cat([X[:, -1:], torch.zeros(4, 1, 1)], -1)], 1)
    for qkv, out in zip(model.qkv, model.out):
        q, k, v = (z @ qkv[i, 0] for i in range(3))
        z = z + (q @ k[:, :-1].transpose(1, 2) @ v[:, :-1]) @ out[0] / 6
    torch.testing.assert_close(pred, z[:, -1, -1])


def test_linear_attention_regressor_one_step_reduces_loss():
    torch.manual_seed(0)
    X, y, _, _ = make_incontext_regression(128, 8, 3, random_state=1)
    X, y = torch.from_numpy(X).float(), torch.from_numpy(y).float()
    model = LinearAttentionRegressor(3, n_layers=2, mlp=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(2):
        loss = torch.mean((model(X[:, :-1], y[:, :-1], X[:, -1]) - y[:, -1]) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[1] < losses[0]


def test_bad_input_messages():
    with pytest.raises(ValueError, match="dim=10 must be divisible by n_heads=4"):
        KernelTransformerEncoder(5, 4, dim=10, n_heads=4)
    with pytest.raises(ValueError, match="vocab_size must be a positive integer"):
        KernelTransformerEncoder(0, 4)
    enc = KernelTransformerEncoder(5, 4, dim=8, n_layers=1, n_heads=2)
    with pytest.raises(ValueError, match="exceeds max_len=4"):
        enc(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="tokens must be in 0..4"):
        enc(torch.full((1, 3), 5))
    with pytest.raises(ValueError, match="tokens must be integer ids"):
        enc(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="unknown kernel"):
        SequenceClassifier(3, vocab_size=4, max_len=4, kernel="nope")
    model = LinearAttentionRegressor(3)
    with pytest.raises(ValueError, match=r"y_context must have shape \(2, 5\)"):
        model(torch.zeros(2, 5, 3), torch.zeros(2, 4), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"X_context must have shape \(batch, n_context, 3\)"):
        model(torch.zeros(2, 5, 4), torch.zeros(2, 5), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"x_query must have shape \(2, 3\)"):
        model(torch.zeros(2, 5, 3), torch.zeros(2, 5), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="at least one context pair"):
        model(torch.zeros(2, 0, 3), torch.zeros(2, 0), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="n_layers must be a positive integer"):
        LinearAttentionRegressor(3, n_layers=0)
