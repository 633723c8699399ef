"""The attention energy and its normalized-RBF descent step (Yang, Huang & Wipf)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attention_kernels.testbeds.energy import attention_energy, ffn_descent_step, ffn_energy, rbf_attention_step


def _energy_float64(Y, W, lam):
    P = Y @ W
    total = 0.5 * lam * np.sum(Y**2)
    for i in range(len(Y)):
        for j in range(i + 1, len(Y)):
            total -= np.exp(-0.5 * np.sum((P[i] - P[j]) ** 2))
    return total


def _step_float64(Y, W, lam):
    P = Y @ W
    beta = np.exp(-0.5 * ((P[:, None, :] - P[None, :, :]) ** 2).sum(-1))
    return beta @ Y / (lam + beta.sum(axis=1, keepdims=True))


@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_energy_and_step_match_direct_float64_formulas(lam):
    rng = np.random.default_rng(0)
    Y, W = rng.standard_normal((9, 5)), rng.standard_normal((5, 3)) / 3
    Yt, Wt = torch.from_numpy(Y), torch.from_numpy(W)
    np.testing.assert_allclose(attention_energy(Yt, Wt, regularization=lam).item(), _energy_float64(Y, W, lam), rtol=1e-12)
    np.testing.assert_allclose(rbf_attention_step(Yt, Wt, regularization=lam).numpy(), _step_float64(Y, W, lam),
                               rtol=1e-12, atol=1e-14)
    # batched inputs give the per-element results; W=None is the identity
    batch = torch.stack([Yt, 2 * Yt])
    torch.testing.assert_close(rbf_attention_step(batch, regularization=lam)[1],
                               torch.from_numpy(_step_float64(2 * Y, np.eye(5), lam)))


@st.composite
def _problems(draw):
    n = draw(st.integers(2, 24))
    d = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**31 - 1))
    spread = draw(st.floats(0.05, 5.0))
    regime = draw(st.sampled_from(["identity", "orthogonal", "contraction"]))
    rng = np.random.default_rng(seed)
    Y = spread * rng.standard_normal((n, d))
    if regime == "identity":
        return Y, None, draw(st.sampled_from([0.0, 1.0]))
    if regime == "orthogonal":
        return Y, np.linalg.qr(rng.standard_normal((d, d)))[0], draw(st.sampled_from([0.0, 1.0, 3.0]))
    m = draw(st.integers(1, 8))
    W = rng.standard_normal((d, m))
    return Y, W / np.linalg.norm(W, 2) * draw(st.floats(0.05, 1.0)), 0.0


@settings(max_examples=40, deadline=None)
@given(_problems())
def test_energy_decreases_monotonically_over_normalized_rbf_steps(problem):
    Y, W, lam = problem
    Y = torch.from_numpy(Y)
    W = None if W is None else torch.from_numpy(W)
    energies = [attention_energy(Y, W, regularization=lam).item()]
    for _ in range(12):
        Y = rbf_attention_step(Y, W, regularization=lam)
        energies.append(attention_energy(Y, W, regularization=lam).item())
    steps = np.diff(energies)
    assert np.all(steps <= 1e-10 * (1 + np.abs(energies[:-1]))), energies


def test_ffn_step_decreases_its_energy():
    torch.manual_seed(0)
    Y, B = torch.randn(6, 4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    A = torch.randn(4, 4, dtype=torch.float64)
    W_f = A @ A.T / 4
    L = torch.linalg.eigvalsh(0.5 * (W_f + W_f.T)).max().item() + 1
    energies = [ffn_energy(Y, W_f, B).item()]
    for _ in range(10):
        Y = ffn_descent_step(Y, W_f, B, step_size=1.0 / L)
        energies.append(ffn_energy(Y, W_f, B).item())
    assert np.all(np.diff(energies) < 0)
    # the fixed point solves Y (sym(W_f) + I) = B
    for _ in range(500):
        Y = ffn_descent_step(Y, W_f, B, step_size=1.0 / L)
    torch.testing.assert_close(Y @ (W_f + torch.eye(4, dtype=torch.float64)), B.expand(6, 4))


def test_bad_input_messages():
    Y = torch.randn(5, 3)
    with pytest.raises(ValueError, match="W must have 3 rows"):
        attention_energy(Y, torch.randn(4, 2))
    with pytest.raises(ValueError, match="regularization must be finite and >= 0"):
        rbf_attention_step(Y, regularization=-1.0)
    with pytest.raises(ValueError, match="Y contains NaN"):
        attention_energy(torch.full((3, 2), float("nan")))
    with pytest.raises(ValueError, match="Y must have shape"):
        attention_energy(torch.randn(3))
    with pytest.raises(TypeError, match="Y must be floating point"):
        attention_energy(torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="Y must be a torch.Tensor"):
        attention_energy(np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"W_f must be a tensor of shape \(3, 3\)"):
        ffn_energy(Y, torch.eye(2), torch.zeros(3))
    with pytest.raises(ValueError, match="B must be broadcastable"):
        ffn_energy(Y, torch.eye(3), torch.zeros(4))
    with pytest.raises(ValueError, match="step_size must be finite and > 0"):
        ffn_descent_step(Y, torch.eye(3), torch.zeros(3), step_size=0.0)
