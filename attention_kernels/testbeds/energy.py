"""The energy view of attention (Yang, Huang & Wipf): layers as descent steps on an energy.

Attention energy, for tokens ``y_i`` (rows of ``Y``) and a projection ``W`` (``d x m``)::

    E_att(Y) = sum_{i<j} rho(0.5 |W^T (y_i - y_j)|^2) + (lam / 2) |Y|_F^2,      rho(z) = -exp(-z)

``rho`` is concave, so its tangent line majorizes it; the weights of the majorizer are the RBF kernel values
``beta_ij = exp(-0.5 |W^T (y_i - y_j)|^2)``. One preconditioned (Jacobi) step on the quadratic majorizer is::

    y_i <- sum_j beta_ij y_j / (lam + sum_j beta_ij)

which for ``lam = 0`` is exactly normalized RBF-kernel attention with identity values (queries and keys
``Y W``, gamma = 1/2), and for ``lam > 0`` the same step scaled by ``D_i / (lam + D_i)``. The step decreases the
majorizer, hence ``E_att`` (majorization-minimization), when ``lam = 0`` and ``|W|_2 <= 1``, or when
``W W^T = I`` (any ``lam >= 0``); see ``docs/energy.md``. Feed-forward energy: ``E_ffn(Y) = 0.5 tr(Y W_f Y^T) + 0.5 |Y - B|_F^2``, whose gradient step
is a linear layer with a skip connection.
"""

from __future__ import annotations

import torch
from rkbs.kernels import get_kernel

__all__ = ["attention_energy", "rbf_attention_step", "ffn_energy", "ffn_descent_step"]


def _check_tokens(Y: torch.Tensor, name: str = "Y") -> None:
    if not isinstance(Y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(Y).__name__}")
    if Y.dim() < 2 or Y.shape[-2] == 0 or Y.shape[-1] == 0:
        raise ValueError(f"{name} must have shape (..., n_tokens, dim) with n_tokens, dim >= 1, got {tuple(Y.shape)}")
    if not torch.is_floating_point(Y):
        raise TypeError(f"{name} must be floating point, got {Y.dtype}")
    if not torch.isfinite(Y).all():
        raise ValueError(f"{name} contains NaN or infinite values")


def _project(Y: torch.Tensor, W: torch.Tensor | None) -> torch.Tensor:
    if W is None:
        return Y
    if not isinstance(W, torch.Tensor) or W.dim() != 2:
        raise ValueError(f"W must be a 2-D tensor of shape ({Y.shape[-1]}, m), got {getattr(W, 'shape', W)}")
    if W.shape[0] != Y.shape[-1]:
        raise ValueError(f"W must have {Y.shape[-1]} rows (the token dimension), got shape {tuple(W.shape)}")
    return Y @ W.to(Y.dtype)


def _check_lam(regularization: float) -> float:
    lam = float(regularization)
    if not lam >= 0.0 or lam == float("inf"):
        raise ValueError(f"regularization must be finite and >= 0, got {regularization}")
    return lam


def attention_energy(Y: torch.Tensor, W: torch.Tensor | None = None, *, regularization: float = 1.0) -> torch.Tensor:
    """``sum_{i<j} -exp(-0.5 |W^T (y_i - y_j)|^2) + (regularization / 2) |Y|_F^2``.

    Parameters
    ----------
    Y : Tensor of shape (..., n_tokens, dim)
        Tokens as rows (leading batch dimensions allowed).
    W : Tensor of shape (dim, m), optional
        Projection; identity when None.
    regularization : float, default=1.0
        Weight ``lam >= 0`` of the norm term (the paper's energy has 1).

    Returns
    -------
    Tensor of shape (...)
        One energy per batch element.
    """
    _check_tokens(Y)
    lam = _check_lam(regularization)
    P = _project(Y, W)
    # the RBF kernel with gamma = 1/2 is exactly exp(-rho's argument)
    beta = get_kernel("rbf", gamma=0.5).evaluate(P, P)
    n = Y.shape[-2]
    pair_sum = (beta.sum(dim=(-2, -1)) - n) / 2  # sum over i < j (the diagonal is exp(0) = 1)
    return -pair_sum + 0.5 * lam * Y.square().sum(dim=(-2, -1))


def rbf_attention_step(Y: torch.Tensor, W: torch.Tensor | None = None, *, regularization: float = 1.0) -> torch.Tensor:
    """One majorization-minimization step on :func:`attention_energy`: normalized RBF attention, identity values.

    ``y_i <- sum_j beta_ij y_j / (regularization + sum_j beta_ij)`` with ``beta`` the RBF kernel (gamma = 1/2)
    between the projected tokens ``Y W``. Guaranteed not to increase the energy when ``regularization = 0`` and
    ``|W|_2 <= 1``, or when ``W W^T = I`` (e.g. ``W=None``) for any ``regularization``.

    Parameters
    ----------
    Y : Tensor of shape (..., n_tokens, dim)
    W : Tensor of shape (dim, m), optional
    regularization : float, default=1.0
        The energy's norm weight ``lam``; the default 1 is the paper's energy. It shrinks each output token by
        ``D_i / (lam + D_i)`` with ``D_i = sum_j beta_ij >= 1`` (``beta_ii = 1``): by at least half for an isolated
        token, hardly at all for a token with many near neighbours. Pass 0 for plain normalized RBF-kernel
        attention (no shrinkage).

    Returns
    -------
    Tensor of the shape of ``Y``
    """
    _check_tokens(Y)
    lam = _check_lam(regularization)
    P = _project(Y, W)
    log_beta = get_kernel("rbf", gamma=0.5).log_evaluate(P, P)
    attended = torch.softmax(log_beta, dim=-1) @ Y
    if lam == 0.0:
        return attended
    # D_i / (lam + D_i) = sigmoid(log D_i - log lam), stable for any D_i >= 1
    log_d = torch.logsumexp(log_beta, dim=-1, keepdim=True)
    return attended * torch.sigmoid(log_d - torch.log(torch.tensor(lam, dtype=Y.dtype)))


def ffn_energy(Y: torch.Tensor, W_f: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``0.5 tr(Y W_f Y^T) + 0.5 |Y - B|_F^2`` per batch element.

    Parameters
    ----------
    Y : Tensor of shape (..., n_tokens, dim)
    W_f : Tensor of shape (dim, dim)
    B : Tensor broadcastable to ``Y``

    Returns
    -------
    Tensor of shape (...)
    """
    _check_tokens(Y)
    W_f, B = _check_ffn(Y, W_f, B)
    return 0.5 * ((Y @ W_f) * Y).sum(dim=(-2, -1)) + 0.5 * (Y - B).square().sum(dim=(-2, -1))


def ffn_descent_step(Y: torch.Tensor, W_f: torch.Tensor, B: torch.Tensor, step_size: float) -> torch.Tensor:
    """Gradient step ``Y - a (Y sym(W_f) + Y - B)`` on :func:`ffn_energy`: a linear layer with skip and bias.

    It decreases the energy when ``0 < a < 2 / L``, ``L = lambda_max(sym(W_f)) + 1 > 0``.
    """
    _check_tokens(Y)
    W_f, B = _check_ffn(Y, W_f, B)
    a = float(step_size)
    if not a > 0.0 or a == float("inf"):
        raise ValueError(f"step_size must be finite and > 0, got {step_size}")
    sym = 0.5 * (W_f + W_f.T)
    return Y - a * (Y @ sym + Y - B)


def _check_ffn(Y, W_f, B):
    d = Y.shape[-1]
    if not isinstance(W_f, torch.Tensor) or W_f.shape != (d, d):
        raise ValueError(f"W_f must be a tensor of shape ({d}, {d}), got {tuple(getattr(W_f, 'shape', ()))}")
    B = torch.as_tensor(B, dtype=Y.dtype)
    try:
        torch.broadcast_shapes(B.shape, Y.shape)
    except RuntimeError:
        raise ValueError(f"B must be broadcastable to Y's shape {tuple(Y.shape)}, got {tuple(B.shape)}") from None
    return W_f.to(Y.dtype), B
