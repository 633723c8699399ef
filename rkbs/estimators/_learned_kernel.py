"""The kernel a BinaryKernelLearner learns: a weighted sum of attention heads with biased query and key maps."""

from __future__ import annotations


import numpy as np
import torch

from ..kernels import Kernel
from ..kernels._validation import default_scale

__all__ = ["LearnedAttentionKernel", "check_head", "head_logits", "soft_cap", "HEADS"]

#: The head forms: ``"exp"`` is the attention head exp(<q, k> / sqrt(d)); ``"rbf"`` is exp(-|q - k|^2 / (2 sqrt(d))),
#: the same head divided by its row and column factors exp(|q|^2 / (2 sqrt(d))) and exp(|k|^2 / (2 sqrt(d))): at
#: most 1, so smooth and bounded on points unlike the training ones.
HEADS = ("exp", "rbf")


def soft_cap(logits: torch.Tensor, cap) -> torch.Tensor:
    """``cap * tanh(logits / cap)``: logits bounded by ``cap`` (None: unchanged)."""
    if cap is None:
        return logits
    if not (isinstance(cap, (int, float, np.floating)) and not isinstance(cap, bool) and np.isfinite(cap)
            and cap > 0):
        raise ValueError(f"logit_cap must be a finite number > 0 or None, got {cap!r}")
    return cap * torch.tanh(logits / cap)


def check_head(head, logit_cap):
    """The validated head form; the soft cap applies to ``"exp"`` heads only (an RBF head is at most 1)."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    if head == "rbf" and logit_cap is not None:
        raise ValueError("logit_cap bounds exponential heads; head='rbf' is bounded by 1 already: pass "
                         "logit_cap=None")
    return head


def head_logits(q: torch.Tensor, k: torch.Tensor, head: str, cap=None) -> torch.Tensor:
    """Each head's logit for matched rows of ``q`` and ``k``, (..., n, d) -> (..., n): the pairs form used in
    training; ``LearnedAttentionKernel`` evaluates the same logits on whole grids (tested equal)."""
    scale = default_scale(None, q.shape[-1])
    if head == "rbf":
        return -0.5 * scale * ((q - k) ** 2).sum(-1)
    return soft_cap((q * k).sum(-1) * scale, cap)


class LearnedAttentionKernel(Kernel):
    """``kappa(x, y) = sum_h w_h exp(s(<x W_q^h + b_q^h, y W_k^h + b_k^h> / sqrt(d)))``, or with RBF heads.

    With zero biases and one unit-weight head it is ``AttentionKernel(EDP(1 / sqrt(d)), W_q, W_k)``. The biases
    give each head per-row and per-column factors (exp(<x W_q, b_k>) and exp(<b_q, y W_k>)), so the sum can
    carry row and column effects as well as interactions. Asymmetric and, in general, indefinite.

    ``s`` soft-caps the logits, ``s(l) = c tanh(l / c)`` with ``c = logit_cap`` (the identity when None), so
    every head is bounded by ``exp(c)``: an exponential head evaluated on points unlike the training ones
    (new rows or columns) cannot blow up, while logits well inside ``(-c, c)`` are nearly unchanged.
    ``head="rbf"`` uses ``exp(-|q - k|^2 / (2 sqrt(d)))`` (``q = x W_q^h + b_q^h``, ``k = y W_k^h + b_k^h``)
    instead: the exponential head without its row and column factors, at most 1 everywhere.

    Parameters
    ----------
    query_maps : ndarray of shape (n_heads, d_x, d)
    key_maps : ndarray of shape (n_heads, d_y, d)
    head_weights : ndarray of shape (n_heads,)
    query_bias : ndarray of shape (n_heads, d), default=None (zeros)
    key_bias : ndarray of shape (n_heads, d), default=None (zeros)
    logit_cap : float, default=None
        ``c > 0`` of the soft cap; None for uncapped logits (``head="exp"`` only).
    head : {"exp", "rbf"}, default="exp"
        The form of every head.

    Examples
    --------
    >>> import numpy as np
    >>> from rkbs.estimators import LearnedAttentionKernel
    >>> k = LearnedAttentionKernel(np.ones((2, 3, 4)) / 4, np.ones((2, 5, 4)) / 4, np.array([1.0, 0.5]))
    >>> k(np.zeros((2, 3)), np.zeros((6, 5))).shape
    (2, 6)
    """

    name = "learned_attention"
    family = "learned"
    cross_domain = True
    formula = ("sum_h w_h exp(c tanh(<x Wq_h + bq_h, y Wk_h + bk_h> / (c sqrt(d)))), or (head='rbf') "
               "sum_h w_h exp(-|x Wq_h + bq_h - y Wk_h - bk_h|^2 / (2 sqrt(d)))")

    def __init__(self, query_maps=None, key_maps=None, head_weights=None, query_bias=None, key_bias=None,
                 logit_cap=None, head="exp"):
        self.query_maps = query_maps
        self.key_maps = key_maps
        self.head_weights = head_weights
        self.query_bias = query_bias
        self.key_bias = key_bias
        self.logit_cap = logit_cap
        self.head = head

    def _arrays(self, like: torch.Tensor):
        if self.query_maps is None or self.key_maps is None or self.head_weights is None:
            raise ValueError("LearnedAttentionKernel needs query_maps, key_maps and head_weights")
        Wq = torch.as_tensor(np.asarray(self.query_maps), dtype=like.dtype, device=like.device)
        Wk = torch.as_tensor(np.asarray(self.key_maps), dtype=like.dtype, device=like.device)
        w = torch.as_tensor(np.asarray(self.head_weights), dtype=like.dtype, device=like.device)
        H, d = Wq.shape[0], Wq.shape[2]
        if Wq.ndim != 3 or Wk.ndim != 3 or Wk.shape[0] != H or Wk.shape[2] != d or w.shape != (H,):
            raise ValueError(f"query_maps (H, d_x, d), key_maps (H, d_y, d) and head_weights (H,) disagree: "
                             f"{tuple(Wq.shape)}, {tuple(Wk.shape)}, {tuple(w.shape)}")
        zeros = torch.zeros(H, d, dtype=like.dtype, device=like.device)
        bq = zeros if self.query_bias is None else torch.as_tensor(np.asarray(self.query_bias), dtype=like.dtype,
                                                                   device=like.device)
        bk = zeros if self.key_bias is None else torch.as_tensor(np.asarray(self.key_bias), dtype=like.dtype,
                                                                 device=like.device)
        return Wq, Wk, w, bq, bk

    @property
    def symmetric(self) -> bool:
        return False

    @property
    def positive_definite(self) -> bool:
        return False

    @property
    def positive_valued(self) -> bool:
        return self.head_weights is not None and bool(np.all(np.asarray(self.head_weights) >= 0))

    @property
    def has_log_kernel(self) -> bool:  # type: ignore[override]
        return self.head_weights is not None and bool(np.all(np.asarray(self.head_weights) > 0))

    def _logits(self, x, y):
        Wq, Wk, w, bq, bk = self._arrays(x)
        q = x.unsqueeze(-3) @ Wq + bq.unsqueeze(-2)  # (..., H, n, d)
        k = y.unsqueeze(-3) @ Wk + bk.unsqueeze(-2)
        check_head(self.head, self.logit_cap)
        if self.head == "rbf":  # |q - k|^2 by the expansion: no (H, n, m, d) temporary
            sq = (q**2).sum(-1, keepdim=True) + (k**2).sum(-1).unsqueeze(-2) - 2 * q @ k.transpose(-1, -2)
            return -0.5 * default_scale(None, Wq.shape[2]) * sq.clamp_min(0), w
        return soft_cap(q @ k.transpose(-1, -2) * default_scale(None, Wq.shape[2]), self.logit_cap), w

    def evaluate(self, x, y):
        logits, w = self._logits(x, y)
        return torch.einsum("h,...hnm->...nm", w, torch.exp(logits))

    def log_evaluate(self, x, y):
        if not self.has_log_kernel:
            return super().log_evaluate(x, y)
        logits, w = self._logits(x, y)
        return torch.logsumexp(logits + torch.log(w)[:, None, None], dim=-3)

    def _check_dims(self, X, Y):
        dx, dy = np.shape(self.query_maps)[1], np.shape(self.key_maps)[1]
        if X.shape[-1] != dx or Y.shape[-1] != dy:
            raise ValueError(f"the learned kernel maps {dx}-dimensional queries and {dy}-dimensional keys; got "
                             f"X with {X.shape[-1]} and Y with {Y.shape[-1]} features")
