"""attention_kernels: PyTorch attention with swappable kernels, and the models and data sets of the seed papers.

>>> import torch
>>> from attention_kernels import kernel_attention
>>> q = k = v = torch.randn(1, 2, 5, 8)
>>> kernel_attention(q, k, v, kernel="rbf").shape
torch.Size([1, 2, 5, 8])
"""

from . import datasets, energy, models
from .functional import kernel_attention, kernel_attention_weights
from .modules import (
    KernelAttention,
    KernelMultiheadAttention,
    KernelTransformerDecoderLayer,
    KernelTransformerEncoderLayer,
)
from .swap import swap_attention


def register_hf_kernels(*args, **kwargs):
    """Register the catalogue with Hugging Face ``transformers`` (see :func:`attention_kernels.hf.register_hf_kernels`)."""
    from .hf import register_hf_kernels as _register

    return _register(*args, **kwargs)


__all__ = [
    "kernel_attention",
    "kernel_attention_weights",
    "KernelAttention",
    "KernelMultiheadAttention",
    "KernelTransformerEncoderLayer",
    "KernelTransformerDecoderLayer",
    "swap_attention",
    "register_hf_kernels",
    "datasets",
    "energy",
    "models",
]
__version__ = "0.1.0"
