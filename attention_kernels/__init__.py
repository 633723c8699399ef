"""attention_kernels: PyTorch attention with swappable kernels (the seed papers' testbeds: :mod:`attention_kernels.testbeds`).

>>> import torch
>>> from attention_kernels import kernel_attention
>>> q = k = v = torch.randn(1, 2, 5, 8)
>>> kernel_attention(q, k, v, kernel="rbf").shape
torch.Size([1, 2, 5, 8])
"""

from ._linear import LinearAttentionState, linear_attention_step
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
    "linear_attention_step",
    "LinearAttentionState",
    "KernelAttention",
    "KernelMultiheadAttention",
    "KernelTransformerEncoderLayer",
    "KernelTransformerDecoderLayer",
    "swap_attention",
    "register_hf_kernels",
    "testbeds",
]
__version__ = "0.1.0"


def __getattr__(name):
    # The testbeds (data sets, models, energy) load on first use, so that importing the attention layers stays light.
    if name == "testbeds":
        import importlib

        return importlib.import_module(".testbeds", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
