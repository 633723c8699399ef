"""A small pre-LayerNorm Transformer encoder whose attention kernel is a constructor argument.

Two heads sit on it: :class:`SequenceClassifier` (mean-pooled tokens -> classes, e.g. the root of a
hierarchical sequence) and :class:`MaskedLanguageModel` (a distribution over the vocabulary at every position;
with ``is_causal=True`` a next-token language model). With ``vocab_size=None`` and ``input_dim`` the encoder
embeds real-valued tokens (image patches) through a linear map instead of a token table.
Models built with different ``kernel`` values have identical parameters and differ only in the attention
weights, which is what the seed benchmarks compare.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._attention import attend, resolve_kernel

__all__ = ["KernelEncoderLayer", "KernelTransformerEncoder", "SequenceClassifier", "MaskedLanguageModel"]


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class KernelEncoderLayer(nn.Module):
    """``x + Attn(LN(x))`` then ``x + FFN(LN(x))`` with kernel attention.

    Parameters
    ----------
    dim : int
        Model width; divisible by ``n_heads``.
    n_heads : int
        Attention heads.
    ffn_dim : int
        Hidden width of the feed-forward block.
    kernel : str or rkbs Kernel
        Attention kernel from the catalogue.
    normalize : bool
        Row-normalize the kernel weights (must be False for kernels that can be negative). Un-normalized
        outputs are divided by the number of keys each query sees, so that they stay at the scale of an average.
    dropout : float, default=0.0
        Dropout after attention and feed-forward blocks.
    is_causal : bool, default=False
        Each position attends to itself and the positions before it only.
    """

    def __init__(self, dim: int, n_heads: int, ffn_dim: int, kernel, normalize: bool, dropout: float = 0.0,
                 is_causal: bool = False):
        super().__init__()
        self.is_causal = bool(is_causal)
        if dim % n_heads:
            raise ValueError(f"dim={dim} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.kernel = resolve_kernel(kernel)
        self.normalize = normalize
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        heads = attend(q, k, v, kernel=self.kernel, normalize=self.normalize, attn_mask=attn_mask,
                       is_causal=self.is_causal)
        if not self.normalize:  # keep un-normalized sums at the scale of an average
            if self.is_causal:
                heads = heads / torch.arange(1, n + 1, device=x.device, dtype=heads.dtype).unsqueeze(-1)
            else:
                heads = heads / n
        x = x + self.dropout(self.out(heads.transpose(1, 2).reshape(b, n, d)))
        return x + self.dropout(self.ffn(self.norm2(x)))


class KernelTransformerEncoder(nn.Module):
    """Token embedding + learned positions + ``n_layers`` :class:`KernelEncoderLayer` + final LayerNorm.

    Parameters
    ----------
    vocab_size : int or None
        Number of token ids (include a mask token if used); ``None`` with ``input_dim`` for real-valued tokens.
    max_len : int
        Longest sequence.
    dim : int, default=64
    n_layers : int, default=2
    n_heads : int, default=4
    ffn_dim : int, optional
        Default ``4 * dim``.
    kernel : str or rkbs Kernel, default="edp"
        Attention kernel; ``"edp"`` is softmax attention.
    normalize : bool, optional
        Default: True for positive-valued kernels, False otherwise.
    dropout : float, default=0.0
    is_causal : bool, default=False
        Causal attention in every layer (for next-token prediction).
    input_dim : int, optional
        With ``vocab_size=None``: the feature size of real-valued input tokens, embedded by a linear map.

    Shape
    -----
    Input token ids ``(batch, seq)`` (or real tokens ``(batch, seq, input_dim)``); output ``(batch, seq, dim)``.
    """

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        dim: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        ffn_dim: int | None = None,
        kernel="edp",
        normalize: bool | None = None,
        dropout: float = 0.0,
        is_causal: bool = False,
        input_dim: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("max_len", max_len), ("dim", dim), ("n_layers", n_layers), ("n_heads", n_heads)):
            _positive_int(value, name)
        if (vocab_size is None) == (input_dim is None):
            raise ValueError(f"give exactly one of vocab_size and input_dim, got {vocab_size!r} and {input_dim!r}")
        kernel = resolve_kernel(kernel)
        if normalize is None:
            normalize = bool(kernel.positive_valued)
        self.kernel = kernel
        if vocab_size is not None:
            self.embedding = nn.Embedding(_positive_int(vocab_size, "vocab_size"), dim)
        else:
            self.embedding = nn.Linear(_positive_int(input_dim, "input_dim"), dim)
        self.position = nn.Parameter(torch.randn(max_len, dim) / math.sqrt(dim))
        ffn_dim = 4 * dim if ffn_dim is None else _positive_int(ffn_dim, "ffn_dim")
        self.layers = nn.ModuleList(
            KernelEncoderLayer(dim, n_heads, ffn_dim, kernel, normalize, dropout, is_causal) for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(dim)

    def set_kernel(self, kernel, normalize: bool | None = None) -> None:
        """Swap every layer's attention kernel in place, keeping the trained weights (a swap test).

        Parameters
        ----------
        kernel : str or rkbs Kernel
        normalize : bool, optional
            Default: True for positive-valued kernels, False otherwise.
        """
        kernel = resolve_kernel(kernel)
        if normalize is None:
            normalize = bool(kernel.positive_valued)
        self.kernel = kernel
        for layer in self.layers:
            layer.kernel, layer.normalize = kernel, bool(normalize)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if isinstance(self.embedding, nn.Linear):
            width = self.embedding.in_features
            if tokens.dim() != 3 or tokens.shape[-1] != width or not torch.is_floating_point(tokens):
                raise ValueError(f"tokens must be real of shape (batch, seq, {width}), got {tokens.dtype} "
                                 f"{tuple(tokens.shape)}")
        else:
            if tokens.dim() != 2 or tokens.dtype not in (torch.int32, torch.int64):
                raise ValueError(f"tokens must be integer ids of shape (batch, seq), got {tokens.dtype} "
                                 f"{tuple(tokens.shape)}")
            if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.embedding.num_embeddings):
                raise ValueError(f"tokens must be in 0..{self.embedding.num_embeddings - 1}")
        if tokens.shape[1] > self.position.shape[0]:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds max_len={self.position.shape[0]}")
        x = self.embedding(tokens) + self.position[: tokens.shape[1]]
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class SequenceClassifier(nn.Module):
    """Mean-pooled :class:`KernelTransformerEncoder` features -> ``n_classes`` logits.

    Parameters
    ----------
    n_classes : int
        Number of classes.
    **encoder_kwargs
        Passed to :class:`KernelTransformerEncoder` (``vocab_size``, ``max_len``, ``kernel``, ...).
    """

    def __init__(self, n_classes: int, **encoder_kwargs) -> None:
        super().__init__()
        self.encoder = KernelTransformerEncoder(**encoder_kwargs)
        self.head = nn.Linear(self.encoder.norm.normalized_shape[0], _positive_int(n_classes, "n_classes"))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(tokens).mean(dim=1))


class MaskedLanguageModel(nn.Module):
    """Per-position logits over ``n_outputs`` symbols from a :class:`KernelTransformerEncoder`.

    Parameters
    ----------
    n_outputs : int
        Number of predictable symbols (usually the vocabulary without the mask token).
    **encoder_kwargs
        Passed to :class:`KernelTransformerEncoder`.
    """

    def __init__(self, n_outputs: int, **encoder_kwargs) -> None:
        super().__init__()
        self.encoder = KernelTransformerEncoder(**encoder_kwargs)
        self.head = nn.Linear(self.encoder.norm.normalized_shape[0], _positive_int(n_outputs, "n_outputs"))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(tokens))
