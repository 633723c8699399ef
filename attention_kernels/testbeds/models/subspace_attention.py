"""Multi-head subspace self-attention and the attention-only Transformer (Wang, Lu, Yu, Pai, Qu & Ma).

One head per subspace ``U_k`` (``dim x head_dim``) shares query, key and value ``U_k^T z`` and writes back
through ``U_k``: ``MSSA(Z) = sum_k U_k U_k^T Z phi(Z^T U_k U_k^T Z)`` (columns as tokens), i.e. in the row
layout used here ``sum_k A_k (Z U_k) U_k^T`` with ``A_k`` the normalized kernel weights, optionally
hard-thresholded: ``h(a) = tau * 1{a > tau}`` as in the denoising theorem.

Two conventions of the papers are parameters: the Gram matrix inside the kernel is unscaled in the theorem
(``gram_scale=1.0``) and divided by ``sqrt(p)`` in CRATE (``gram_scale=None``, the EDP kernel's default), and the
theorem's layer is ``Z + eta MSSA(Z)`` (``AttentionOnlyTransformer(step_size=eta, layer_norm=False)``) where the
architecture of the paper's experiments is ``Z + MSSA(LN(Z))`` (the defaults).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from attention_kernels._masks import causal_keep

from ._attention import attend, resolve_kernel

__all__ = ["MSSA", "AttentionOnlyTransformer"]

_ATTENTION = ("softmax", "threshold")


class MSSA(nn.Module):
    """Multi-head subspace self-attention with shared query/key/value bases.

    Parameters
    ----------
    dim : int
        Token dimension ``d``.
    n_heads : int
        Number of subspaces ``K`` (one head each).
    head_dim : int
        Subspace dimension ``p``.
    attention : {"softmax", "threshold"}, default="softmax"
        ``"softmax"``: normalized kernel attention (softmax for the EDP kernel). ``"threshold"``: the
        normalized weights passed through ``h(a) = tau * 1{a > tau}`` (not differentiable in the weights).
    tau : float, default=0.5
        Threshold of ``"threshold"`` attention, in (0, 1].
    kernel : str or rkbs Kernel, default="edp"
        Attention kernel from the catalogue; must be positive-valued (the weights are row-normalized).
    gram_scale : float, optional
        The factor ``s`` in ``kappa(U^T z_i, U^T z_j) = exp(s <U^T z_i, U^T z_j>)`` (the kernel's ``scale``
        parameter). ``None`` (default) keeps the kernel's own default, ``1 / sqrt(head_dim)`` for EDP: CRATE's
        scaled Gram. ``1.0`` is the unscaled Gram of the denoising theorem.
    is_causal : bool, default=False
        Causal masking (for language modelling).

    Attributes
    ----------
    bases : Parameter of shape (n_heads, dim, head_dim)
        The subspace bases ``U_k`` (orthonormal at initialization).

    Shape
    -----
    Input ``(batch, seq, dim)`` or ``(seq, dim)``; output of the same shape (the update, without residual).
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        head_dim: int,
        *,
        attention: str = "softmax",
        tau: float = 0.5,
        kernel="edp",
        gram_scale: float | None = None,
        is_causal: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("n_heads", n_heads), ("head_dim", head_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if attention not in _ATTENTION:
            raise ValueError(f"attention must be one of {_ATTENTION}, got {attention!r}")
        if not (0.0 < float(tau) <= 1.0):
            raise ValueError(f"tau must be in (0, 1], got {tau}")
        if gram_scale is not None:
            if isinstance(gram_scale, bool) or not isinstance(gram_scale, (int, float)) or not (
                    0.0 < float(gram_scale) < float("inf")):
                raise ValueError(f"gram_scale must be a positive finite number or None, got {gram_scale!r}")
            try:
                self.kernel = resolve_kernel(kernel, scale=float(gram_scale))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"gram_scale: kernel {kernel!r} has no scale parameter ({exc})") from None
        else:
            self.kernel = resolve_kernel(kernel)
        self.kernel.check_normalize(True)  # MSSA row-normalizes its weights
        self.gram_scale = gram_scale
        self.attention = attention
        self.tau = float(tau)
        self.is_causal = bool(is_causal)
        init = torch.empty(n_heads, dim, head_dim)
        for h in range(n_heads):
            nn.init.orthogonal_(init[h])
        self.bases = nn.Parameter(init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() not in (2, 3) or z.shape[-1] != self.bases.shape[1]:
            raise ValueError(f"z must have shape (batch, seq, {self.bases.shape[1]}) or (seq, dim), got {tuple(z.shape)}")
        unbatched = z.dim() == 2
        if unbatched:
            z = z.unsqueeze(0)
        u = torch.einsum("bnd,hdp->bhnp", z, self.bases)  # shared query, key and value
        if self.attention == "softmax":
            heads = attend(u, u, u, kernel=self.kernel, normalize=True, is_causal=self.is_causal)
        else:
            heads = self._threshold_weights(u) @ u
        out = torch.einsum("bhnp,hdp->bnd", heads, self.bases)
        return out.squeeze(0) if unbatched else out

    def _threshold_weights(self, u: torch.Tensor) -> torch.Tensor:
        n = u.shape[-2]
        if self.kernel.has_log_kernel:
            logits = self.kernel.log_evaluate(u, u)
        else:
            logits = torch.log(self.kernel.evaluate(u, u))
        if self.is_causal:
            logits = logits.masked_fill(~causal_keep(n, 0, n, u.device), float("-inf"))
        weights = torch.softmax(logits, dim=-1)
        return self.tau * (weights > self.tau).to(u.dtype)

    def extra_repr(self) -> str:
        h, d, p = self.bases.shape
        return (f"dim={d}, n_heads={h}, head_dim={p}, attention={self.attention!r}, kernel={self.kernel.name!r}, "
                f"gram_scale={self.gram_scale}")


class AttentionOnlyTransformer(nn.Module):
    """Stacks of ``Z <- Z + eta MSSA(LayerNorm(Z))``, with an optional token embedding and language-model head.

    Parameters
    ----------
    dim : int
        Width ``d``.
    n_layers : int
        Number of MSSA blocks.
    n_heads : int
        Subspaces per block.
    head_dim : int, optional
        Subspace dimension; default ``dim // n_heads``.
    vocab_size : int, optional
        With a vocabulary, ``forward`` takes token ids ``(batch, seq)`` and returns logits
        ``(batch, seq, vocab_size)`` (embedding and output weights tied); without, it maps
        ``(batch, seq, dim) -> (batch, seq, dim)``.
    max_len : int, default=512
        Longest sequence (learned positional embedding; only used with a vocabulary).
    step_size : float, default=1.0
        The theorem's ``eta``: each block adds ``eta`` times its MSSA update.
    layer_norm : bool, default=True
        Normalize each block's input (the paper's architecture). ``False`` gives the theorem's
        ``Z <- Z + eta MSSA(Z)``, under which the SNR grows by ``1 + eta tau`` per layer.
    attention, tau, kernel, gram_scale, is_causal
        Passed to every :class:`MSSA`.

    Examples
    --------
    >>> import torch
    >>> from attention_kernels.testbeds.models import AttentionOnlyTransformer
    >>> model = AttentionOnlyTransformer(16, n_layers=2, n_heads=4, step_size=0.5, layer_norm=False,
    ...                                  attention="threshold", tau=0.9, gram_scale=1.0)
    >>> model(torch.randn(3, 10, 16)).shape
    torch.Size([3, 10, 16])
    """

    def __init__(
        self,
        dim: int,
        n_layers: int,
        n_heads: int,
        head_dim: int | None = None,
        *,
        vocab_size: int | None = None,
        max_len: int = 512,
        attention: str = "softmax",
        tau: float = 0.5,
        kernel="edp",
        gram_scale: float | None = None,
        step_size: float = 1.0,
        layer_norm: bool = True,
        is_causal: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or not (
                0.0 < float(step_size) < float("inf")):
            raise ValueError(f"step_size must be a positive finite number, got {step_size!r}")
        if not isinstance(layer_norm, bool):
            raise TypeError(f"layer_norm must be a bool, got {type(layer_norm).__name__}")
        self.step_size = float(step_size)
        if not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f"n_layers must be a positive integer, got {n_layers!r}")
        if head_dim is None:
            if not isinstance(n_heads, int) or n_heads < 1 or dim % n_heads:
                raise ValueError(f"dim={dim} must be divisible by n_heads={n_heads} when head_dim is not given")
            head_dim = dim // n_heads
        self.norms = nn.ModuleList((nn.LayerNorm(dim) if layer_norm else nn.Identity()) for _ in range(n_layers))
        self.blocks = nn.ModuleList(
            MSSA(dim, n_heads, head_dim, attention=attention, tau=tau, kernel=kernel, gram_scale=gram_scale,
                 is_causal=is_causal)
            for _ in range(n_layers)
        )
        self.vocab_size = vocab_size
        if vocab_size is not None:
            if not isinstance(vocab_size, int) or vocab_size < 1:
                raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
            self.embedding = nn.Embedding(vocab_size, dim)
            self.position = nn.Parameter(torch.randn(max_len, dim) / math.sqrt(dim))
            self.final_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.vocab_size is not None:
            if x.dtype not in (torch.int32, torch.int64) or x.dim() != 2:
                raise ValueError(f"x must be token ids of shape (batch, seq), got {x.dtype} {tuple(x.shape)}")
            if x.shape[1] > self.position.shape[0]:
                raise ValueError(f"sequence length {x.shape[1]} exceeds max_len={self.position.shape[0]}")
            z = self.embedding(x) + self.position[: x.shape[1]]
        else:
            z = x
        for norm, block in zip(self.norms, self.blocks):
            z = z + self.step_size * block(norm(z))
        if self.vocab_size is not None:
            return self.final_norm(z) @ self.embedding.weight.T
        return z
