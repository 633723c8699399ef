"""Swap the attention kernel inside an existing model, keeping its weights."""

from __future__ import annotations

from typing import Any

from torch import nn

from rkbs.kernels import Kernel

from .modules import KernelMultiheadAttention

__all__ = ["swap_attention"]


def swap_attention(model: nn.Module, kernel: str | Kernel = "edp", normalize: bool = True, backend: str = "auto",
                   **kernel_params: Any) -> nn.Module:
    """Replace every :class:`torch.nn.MultiheadAttention` in ``model`` by a :class:`KernelMultiheadAttention`.

    The new modules share the old ones' Parameter objects (an optimizer built before the swap keeps working) and
    their configuration; with ``kernel="edp"`` the model's outputs are unchanged. Modules that are already
    ``KernelMultiheadAttention`` get the new kernel. ``nn.TransformerEncoder`` stacks have their nested-tensor
    fast path switched off (it bypasses the attention module).

    Parameters
    ----------
    model : torch.nn.Module
        Modified in place (a bare ``nn.MultiheadAttention`` is returned replaced).
    kernel, normalize, backend, **kernel_params
        As in :class:`KernelMultiheadAttention`.

    Returns
    -------
    torch.nn.Module
        ``model`` (or the replacement when ``model`` itself is a MultiheadAttention).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    swapped: dict[int, KernelMultiheadAttention] = {}  # keeps modules shared between parents shared

    def convert(mha: nn.MultiheadAttention) -> KernelMultiheadAttention:
        if id(mha) not in swapped:
            if isinstance(mha, KernelMultiheadAttention):
                swapped[id(mha)] = mha.set_kernel(kernel, normalize, backend, **kernel_params)
            else:
                swapped[id(mha)] = KernelMultiheadAttention.from_torch(mha, kernel, normalize, backend, **kernel_params)
        return swapped[id(mha)]

    if isinstance(model, nn.MultiheadAttention):
        return convert(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MultiheadAttention):
                setattr(parent, name, convert(child))
        if isinstance(parent, nn.TransformerEncoder):
            parent.use_nested_tensor = False
    return model
