"""Mixture-of-subspaces tokens, the SNR measure, MSSA and the attention-only Transformer."""

import numpy as np
import pytest
import torch
from rkbs.kernels import get_kernel

from attention_kernels.testbeds.datasets import make_subspace_tokens, subspace_snr
from attention_kernels.testbeds.models import MSSA, AttentionOnlyTransformer


def _theorem_layer(Z, bases, eta):
    torch.manual_seed(0)
    mssa = MSSA(Z.shape[1], len(bases), bases.shape[2], attention="threshold", tau=0.9,
                kernel=get_kernel("edp", scale=1.0)).double()
    with torch.no_grad():
        mssa.bases.copy_(torch.from_numpy(bases))
    return mssa


@pytest.mark.parametrize("eta,n_layers", [(0.5, 2), (0.1, 5)])
def test_snr_grows_by_one_plus_eta_tau_inside_theorem_regime(eta, n_layers):
    Z, labels, bases = make_subspace_tokens(4, 32, 100, delta=0.2, random_state=0)
    mssa = _theorem_layer(Z, bases, eta)
    z = torch.from_numpy(Z)
    snr = subspace_snr(z, bases, labels)
    for _ in range(n_layers):
        with torch.no_grad():
            z = z + eta * mssa(z)
        new = subspace_snr(z, bases, labels)
        np.testing.assert_allclose(new / snr, 1 + eta * 0.9, rtol=1e-10)
        snr = new


def test_tokens_are_noisy_points_of_orthogonal_subspaces():
    Z, labels, bases = make_subspace_tokens(3, 5, 31, ambient_dim=20, delta=0.0, random_state=1)
    assert Z.shape == (31, 20) and bases.shape == (3, 20, 5)
    np.testing.assert_allclose(np.einsum("kdp,ldq->klpq", bases, bases),
                               np.einsum("kl,pq->klpq", np.eye(3), np.eye(5)), atol=1e-12)
    assert np.all(np.bincount(labels) >= 10)
    assert np.all(subspace_snr(Z, bases, labels) > 1e12)  # delta = 0: no foreign component (up to rounding)
    Z, labels, bases = make_subspace_tokens(4, 32, 400, delta=0.2, random_state=2)
    # E|signal|^2 / E|noise|^2 = p / ((K - 1) p delta^2)
    np.testing.assert_allclose(subspace_snr(Z, bases, labels), 1 / np.sqrt(3 * 0.04), rtol=0.1)


def test_mssa_softmax_matches_float64_formula():
    torch.manual_seed(0)
    mssa = MSSA(12, 3, 4).double()
    z = torch.randn(2, 7, 12, dtype=torch.float64)
    out = mssa(z)
    expected = torch.zeros_like(z)
    for U in mssa.bases.detach():
        u = z @ U
        expected += torch.softmax(u @ u.transpose(-1, -2) / 2.0, dim=-1) @ u @ U.T  # edp scale 1/sqrt(4)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(mssa(z[0]), expected[0])


def test_mssa_causal_ignores_the_future():
    torch.manual_seed(0)
    for attention in ("softmax", "threshold"):
        mssa = MSSA(8, 2, 4, attention=attention, is_causal=True).double()
        z = torch.randn(1, 6, 8, dtype=torch.float64)
        z2 = z.clone()
        z2[:, 4:] += 1.0
        torch.testing.assert_close(mssa(z)[:, :4], mssa(z2)[:, :4])


def test_attention_only_language_model_learns_a_step():
    torch.manual_seed(0)
    model = AttentionOnlyTransformer(16, 2, 4, vocab_size=11, max_len=9, is_causal=True)
    tokens = torch.randint(0, 11, (8, 9))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(2):
        logits = model(tokens[:, :-1])
        assert logits.shape == (8, 8, 11)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), tokens[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[1] < losses[0]
    assert AttentionOnlyTransformer(8, 1, 2)(torch.randn(3, 5, 8)).shape == (3, 5, 8)


def test_bad_input_messages():
    with pytest.raises(ValueError, match=r"delta must be < 1"):
        make_subspace_tokens(delta=1.5)
    with pytest.raises(ValueError, match=r"delta must be >= 0"):
        make_subspace_tokens(delta=-0.1)
    with pytest.raises(ValueError, match="ambient_dim must be >= n_subspaces \\* subspace_dim = 128"):
        make_subspace_tokens(4, 32, 100, ambient_dim=100)
    with pytest.raises(ValueError, match="n_tokens must be >= 4"):
        make_subspace_tokens(4, 8, 3)
    Z, labels, bases = make_subspace_tokens(2, 3, 10, random_state=0)
    with pytest.raises(ValueError, match="labels must have shape"):
        subspace_snr(Z, bases, labels[:-1])
    with pytest.raises(ValueError, match="bases must have ambient dimension 6"):
        subspace_snr(Z, bases[:, :5], labels)
    with pytest.raises(ValueError, match="labels must be integers in 0..1"):
        subspace_snr(Z, bases, labels + 1)
    with pytest.raises(ValueError, match="attention must be one of"):
        MSSA(8, 2, 4, attention="sparsemax")
    with pytest.raises(ValueError, match="tau must be in"):
        MSSA(8, 2, 4, tau=1.5)
    with pytest.raises(ValueError, match="can be negative"):
        MSSA(8, 2, 4, kernel="linear")
    with pytest.raises(ValueError, match="z must have shape"):
        MSSA(8, 2, 4)(torch.randn(2, 3, 7))
    with pytest.raises(ValueError, match="must be divisible by n_heads"):
        AttentionOnlyTransformer(10, 1, 3)
    with pytest.raises(ValueError, match="exceeds max_len"):
        AttentionOnlyTransformer(8, 1, 2, vocab_size=5, max_len=4)(torch.zeros(1, 5, dtype=torch.long))
