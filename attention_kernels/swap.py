"""Swap the attention kernel inside an existing model, keeping its weights."""

from __future__ import annotations

import warnings
from typing import Any

from torch import nn

from rkbs.kernels import Kernel, get_kernel

from .modules import KernelMultiheadAttention

__all__ = ["swap_attention"]


def swap_attention(model: nn.Module, kernel: str | Kernel = "edp", normalize: bool = True, backend: str = "auto",
                   **kernel_params: Any) -> nn.Module:
    """Replace every :class:`torch.nn.MultiheadAttention` in ``model`` by a :class:`KernelMultiheadAttention`,
    and switch every Hugging Face transformers model in it to the kernel.

    The new modules share the old ones' Parameter objects (an optimizer built before the swap keeps working) and
    their configuration; with ``kernel="edp"`` the model's outputs are unchanged. Modules that are already
    ``KernelMultiheadAttention`` get the new kernel. ``nn.TransformerEncoder`` stacks have their nested-tensor
    fast path switched off (it bypasses the attention module).

    A transformers ``PreTrainedModel`` (the model itself or one nested in it) gets
    ``set_attn_implementation(name)``, ``name`` being the kernel registered with
    :func:`attention_kernels.hf.register_hf_kernel` (registered here if needed: ``"kernel_<name>"`` for a
    catalogue name with default arguments). A transformers model whose attention does not go through
    transformers' ``AttentionInterface`` (GPT-Neo, GPT-J, Falcon, ...) cannot take a kernel: a ValueError names
    it. A UserWarning says when nothing was replaced.

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
    switched = _switch_hf_models(model, kernel, normalize, backend, kernel_params)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MultiheadAttention):
                setattr(parent, name, convert(child))
        if isinstance(parent, nn.TransformerEncoder):
            parent.use_nested_tensor = False
    if not swapped and not switched:
        warnings.warn(
            f"swap_attention replaced nothing: {type(model).__name__} contains no torch.nn.MultiheadAttention and "
            "no Hugging Face transformers model", UserWarning, stacklevel=2,
        )
    return model


def _is_hf_model(module: nn.Module) -> bool:
    return callable(getattr(module, "set_attn_implementation", None)) and hasattr(
        getattr(module, "config", None), "_attn_implementation"
    )


def _hf_name(kernel: str | Kernel, normalize: bool, backend: str, kernel_params: dict) -> str:
    """The attn_implementation name of these arguments, registered with transformers."""
    from .hf import HF_PREFIX, register_hf_kernel

    k = get_kernel(kernel, **kernel_params)
    if isinstance(kernel, str) and not kernel_params and backend == "auto" and normalize == k.positive_valued:
        name = f"{HF_PREFIX}{k.name}"  # what register_hf_kernels registers (random features aside: own draw)
    else:
        # a kernel object keeps its identity (and its random-feature draw); parameters are spelled out
        if isinstance(kernel, Kernel):
            tag = f"@{id(k):x}"
        else:
            tag = ",".join(f"{p}={v!r}" for p, v in sorted(kernel_params.items()))
        name = f"{HF_PREFIX}{k.name}[{tag};normalize={normalize};backend={backend}]"
    return register_hf_kernel(name, k, normalize=normalize, backend=backend)


def _switch_hf_models(model: nn.Module, kernel, normalize, backend, kernel_params) -> list[nn.Module]:
    """set_attn_implementation on the outermost transformers models inside ``model``."""
    switched: list[nn.Module] = []
    inside: set[int] = set()
    for module in model.modules():
        if id(module) in inside or not _is_hf_model(module):
            continue
        inside.update(id(m) for m in module.modules())
        if not getattr(module, "_supports_attention_backend", False) or not module._can_set_attn_implementation():
            raise ValueError(
                f"{type(module).__name__} computes attention in its own classes, not through transformers' "
                "AttentionInterface, so no attn_implementation can put a kernel in it (transformers raises "
                "KeyError for such models); use a model that supports the attention interface"
            )
        module.set_attn_implementation(_hf_name(kernel, normalize, backend, kernel_params))
        switched.append(module)
    return switched
