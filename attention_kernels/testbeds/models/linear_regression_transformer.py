"""The constrained linear-attention Transformer for in-context regression (Raj & Reddy's testbed).

Prompt tokens are ``e_i = [x_i; y_i]`` and the query token is ``[x_query; 0]``. Each layer adds
``(1/n) sum_h (Z Wq_h)(Z Wk_h)^T (Z Wv_h) Wo_h`` with the linear kernel and no normalization, softmax or
LayerNorm; keys and values come from the context tokens only. The prediction is read from the query token's
label slot. ``mlp=True`` adds a residual MLP after every attention layer (the "routing" variant).
"""

from __future__ import annotations

import torch
from torch import nn

from ._attention import attend, resolve_kernel

__all__ = ["LinearAttentionRegressor"]


class LinearAttentionRegressor(nn.Module):
    """Depth-``n_layers`` linear-attention model predicting the query's label from an in-context prompt.

    Parameters
    ----------
    dim : int
        Input dimension ``d`` (tokens have ``d + 1`` coordinates).
    n_layers : int, default=1
        Depth ``L``.
    n_heads : int, default=1
        Heads per layer, each with full ``(d + 1) x (d + 1)`` query/key/value maps.
    mlp : bool, default=False
        Add a residual two-layer MLP (width ``4 (d + 1)``) after each attention layer.
    init_scale : float, default=0.1
        Standard deviation of the initial weights (small: the model starts near the zero predictor).

    Shape
    -----
    ``forward(X_context, y_context, x_query)`` with shapes ``(batch, n, d)``, ``(batch, n)``, ``(batch, d)``
    returns ``(batch,)``.
    """

    def __init__(self, dim: int, n_layers: int = 1, n_heads: int = 1, mlp: bool = False, init_scale: float = 0.1):
        super().__init__()
        for name, value in (("dim", dim), ("n_layers", n_layers), ("n_heads", n_heads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.dim = dim
        width = dim + 1
        self.kernel = resolve_kernel("linear", scale=1.0)
        self.qkv = nn.ParameterList(
            nn.Parameter(init_scale * torch.randn(3, n_heads, width, width)) for _ in range(n_layers)
        )
        self.out = nn.ParameterList(nn.Parameter(init_scale * torch.randn(n_heads, width, width)) for _ in range(n_layers))
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)) if mlp else nn.Identity()
            for _ in range(n_layers)
        )
        self.mlp = mlp

    def forward(self, X_context: torch.Tensor, y_context: torch.Tensor, x_query: torch.Tensor) -> torch.Tensor:
        if X_context.dim() != 3 or X_context.shape[-1] != self.dim:
            raise ValueError(f"X_context must have shape (batch, n_context, {self.dim}), got {tuple(X_context.shape)}")
        b, n, _ = X_context.shape
        if y_context.shape != (b, n):
            raise ValueError(f"y_context must have shape {(b, n)}, got {tuple(y_context.shape)}")
        if x_query.shape != (b, self.dim):
            raise ValueError(f"x_query must have shape {(b, self.dim)}, got {tuple(x_query.shape)}")
        if n == 0:
            raise ValueError("X_context must hold at least one context pair")
        context = torch.cat([X_context, y_context.unsqueeze(-1)], dim=-1)
        query = torch.cat([x_query, torch.zeros_like(x_query[:, :1])], dim=-1).unsqueeze(1)
        z = torch.cat([context, query], dim=1)  # (b, n + 1, d + 1)
        allowed = torch.ones(n + 1, n + 1, dtype=torch.bool, device=z.device)
        allowed[:, n] = False  # the query token carries no label: it is never a key
        for qkv, out, mlp in zip(self.qkv, self.out, self.mlps):
            q, k, v = torch.einsum("bnw,thwu->tbhnu", z, qkv)
            heads = attend(q, k, v, kernel=self.kernel, normalize=False, attn_mask=allowed) / n
            z = z + torch.einsum("bhnu,huw->bnw", heads, out)
            if self.mlp:
                z = z + mlp(z)
        return z[:, -1, -1]
