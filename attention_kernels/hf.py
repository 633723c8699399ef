"""Hugging Face transformers integration: the kernel catalogue as ``attn_implementation`` choices.

After :func:`register_hf_kernels`, ``AutoModel.from_config(config, attn_implementation="kernel_rbf")`` (or
``model.set_attn_implementation("kernel_rbf")``) runs every attention layer of a transformers model with the
RBF kernel. Each name is registered with ``transformers.AttentionInterface`` and, for the mask, with
``AttentionMaskInterface`` (the boolean SDPA-style mask, True = attend, which is kernel_attention's convention).
transformers is imported only when registering.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from rkbs.kernels import Kernel, get_kernel, list_kernels

from .functional import kernel_attention, resolve_kernel

__all__ = ["register_hf_kernels", "register_hf_kernel", "HF_PREFIX"]

HF_PREFIX = "kernel_"


def _hf_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                  is_causal: bool | None = None, *, _kernel: Kernel, _normalize: bool, _backend: str,
                  _scaled: dict, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: (B, H, L, D) in, (B, L, H, D) out, no weights."""
    if kwargs.get("output_attentions", False):
        raise ValueError("kernel attention does not return attention weights; use attn_implementation='eager'")
    q_len, kv_len = query.shape[2], key.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(q_len > 1 and attention_mask is None and causal)
    if causal and kv_len > q_len:  # prefill into an empty static cache: the rest of the keys are unused
        key, value = key[:, :, :q_len], value[:, :, :q_len]
    if attention_mask is not None:
        attention_mask = attention_mask[..., : key.shape[2]]
    # the model's scaling (1/sqrt(head_dim) for most) replaces the kernel's scale where the kernel has one;
    # one kernel object per scaling value, so random features keep their draw
    kernel = _kernel
    if scaling is not None and "scale" in _kernel.get_params(deep=False):
        if scaling not in _scaled:
            _scaled[scaling] = resolve_kernel(_kernel, scale=float(scaling))
        kernel = _scaled[scaling]
    groups = getattr(module, "num_key_value_groups", 1)
    out = kernel_attention(
        query, key, value, attention_mask, dropout, causal, enable_gqa=groups > 1,
        kernel=kernel, normalize=_normalize, backend=_backend,
    )
    return out.transpose(1, 2).contiguous(), None


def register_hf_kernel(name: str, kernel: str | Kernel, normalize: bool | None = None, backend: str = "auto",
                       **kernel_params: Any) -> str:
    """Register one kernel under ``attn_implementation=name``; returns ``name``.

    Parameters
    ----------
    name : str
        The ``attn_implementation`` string.
    kernel : str or Kernel
    normalize : bool, optional
        Default: True for non-negative kernels, False for kernels that can be negative.
    backend : str, default="auto"
    **kernel_params
        Kernel constructor parameters.
    """
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError as exc:
        raise ImportError("register_hf_kernel needs transformers (pip install 'attention-kernels[hf]')") from exc
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    k = get_kernel(kernel, **kernel_params)
    if normalize is None:
        normalize = bool(k.positive_valued)
    k.check_normalize(normalize)
    fn = functools.partial(_hf_attention, _kernel=k, _normalize=normalize, _backend=backend, _scaled={})
    AttentionInterface.register(name, fn)
    AttentionMaskInterface.register(name, sdpa_mask)
    return name


def register_hf_kernels(prefix: str = HF_PREFIX, backend: str = "auto") -> list[str]:
    """Register every catalogue kernel as ``f"{prefix}{name}"`` (``"kernel_edp"``, ``"kernel_rbf"``, ...).

    Non-negative kernels are registered normalized, the others (linear, cosine, tanh, random Fourier features)
    un-normalized; random-feature kernels with ``random_state=0``. Returns the registered names.
    """
    names = []
    for name in list_kernels():
        params = {"random_state": 0} if name in ("positive_random_features", "random_fourier_features") else {}
        names.append(register_hf_kernel(f"{prefix}{name}", name, backend=backend, **params))
    return names
