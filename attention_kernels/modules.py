"""Attention modules with a swappable kernel: the (batch, heads, seq, dim) core, a drop-in for
``torch.nn.MultiheadAttention``, and Transformer encoder/decoder layers built on it."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rkbs.kernels import Kernel

from ._masks import causal_keep
from .functional import BACKENDS, kernel_attention, kernel_attention_weights, resolve_kernel

__all__ = [
    "KernelAttention",
    "KernelMultiheadAttention",
    "KernelTransformerEncoderLayer",
    "KernelTransformerDecoderLayer",
]


def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


_DRAWS = "kernel_draws."


def _draw_cache(kernel: Kernel) -> dict | None:
    """The feature draws of a random-feature kernel, ``{(d, n_features): arrays}``, or None for other kernels.

    ``rkbs.kernels.feature_maps`` draws lazily, once per input dimension, into the kernel's ``_draws`` dict.
    """
    if not callable(getattr(kernel, "_draw", None)):
        return None
    return kernel.__dict__.setdefault("_draws", {})


class _KernelDrawsInStateDict:
    """Saves a random-feature kernel's draw in ``state_dict`` (``kernel_draws.<d>_<m>.<i>``) and restores it.

    The entries are written on saving, not kept as buffers: the draw stays float64 and exact under
    ``module.to(dtype)``, and the parameter names stay those of torch's modules. Loading installs the draw in
    a copy of the kernel, so a kernel object shared with other modules is left alone.
    """

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for (d, m), arrays in sorted(dict(_draw_cache(self.kernel) or {}).items()):  # a snapshot
            for i, a in enumerate(arrays):
                destination[f"{prefix}{_DRAWS}{d}_{m}.{i}"] = torch.tensor(np.asarray(a))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        draws: dict[tuple[int, int], dict[int, torch.Tensor]] = {}
        for name in [k for k in state_dict if k.startswith(prefix + _DRAWS)]:
            shape, index = name[len(prefix + _DRAWS):].split(".")
            d, m = (int(x) for x in shape.split("_"))
            draws.setdefault((d, m), {})[int(index)] = state_dict.pop(name)
        if draws:
            if _draw_cache(self.kernel) is None:
                error_msgs.append(
                    f"{prefix}{_DRAWS}*: the state dict holds a random-feature draw but this module's kernel "
                    f"{self.kernel.name!r} draws no features"
                )
            else:
                kernel = copy.copy(self.kernel)
                kernel.__dict__["_draws"] = {
                    **_draw_cache(self.kernel),
                    **{key: tuple(arrays[i].cpu().numpy() for i in sorted(arrays)) for key, arrays in draws.items()},
                }
                self.kernel = kernel
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


class KernelAttention(_KernelDrawsInStateDict, nn.Module):
    """Kernel attention on (batch, heads, seq, dim) tensors: :func:`kernel_attention` as a module.

    Parameters
    ----------
    kernel : str or Kernel, default="edp"
        Resolved once (``rkbs.kernels.get_kernel(kernel, **kernel_params)``), so random-feature kernels keep one
        draw for the module's lifetime.
    normalize : bool, default=True
    backend : {"auto", "torch", "triton", "linear"}, default="auto"
    dropout : float, default=0.0
        Applied to the (normalized) weights in training mode.
    **kernel_params
        Constructor parameters of the kernel (e.g. ``gamma=0.1``).

    Attributes
    ----------
    keys, values : torch.Tensor or None
        Stored keys and values (buffers) of a module built by :meth:`from_estimator`; ``forward(query)`` then
        attends to them.

    Notes
    -----
    A random-feature kernel's draw (made at the first forward, per head dimension) is saved in ``state_dict``
    and restored by ``load_state_dict``.
    """

    def __init__(self, kernel: str | Kernel = "edp", normalize: bool = True, backend: str = "auto",
                 dropout: float = 0.0, **kernel_params: Any):
        super().__init__()
        self.kernel = resolve_kernel(kernel, **kernel_params)
        self.kernel.check_normalize(normalize)
        self.normalize = normalize
        self.backend = _check_backend(backend)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        self.register_buffer("keys", None)
        self.register_buffer("values", None)
        self._squeeze_output = False
        self._query_features = None  # from_estimator: a binary machine's query side may differ from its keys'

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None, is_causal: bool = False,
                enable_gqa: bool = False) -> torch.Tensor:
        """Attend ``query`` (..., L, E) to ``key`` (..., S, E) / ``value`` (..., S, Ev), or to the stored ones."""
        if key is None and value is None and self.keys is not None:
            expected = self._query_features or self.keys.shape[-1]
            if query.shape[-1] != expected:
                raise ValueError(f"query has {query.shape[-1]} features but the estimator was fitted on {expected}")
            key, value = self.keys.to(query.dtype), self.values.to(query.dtype)
        elif key is None or value is None:
            raise ValueError("key and value are required (this module stores no keys; see from_estimator)")
        out = kernel_attention(
            query, key, value, attn_mask, self.dropout if self.training else 0.0, is_causal,
            enable_gqa=enable_gqa, kernel=self.kernel, normalize=self.normalize, backend=self.backend,
        )
        return out[..., 0] if self._squeeze_output else out

    @classmethod
    def from_estimator(cls, estimator: Any, backend: str = "torch") -> "KernelAttention":
        """The attention layer that computes a fitted kernel machine's predictions.

        ``f(x) = sum_j kappa(x, c_j) beta_j`` (divided by ``sum_j kappa(x, c_j)`` when ``normalize=True``) is
        attention with the centers as keys and the dual coefficients as values. ``module(torch.as_tensor(X))``
        equals ``estimator.predict(X)``: shape (n,) for one target, (n, n_targets) otherwise.

        Parameters
        ----------
        estimator : fitted rkbs.RKBSRegressor (anything with ``kernel_``, ``centers_``, ``dual_coef_`` and
            ``normalize``)
        backend : str, default="torch"
        """
        missing = [a for a in ("kernel_", "centers_", "dual_coef_") if not hasattr(estimator, a)]
        if missing:
            raise ValueError(
                f"estimator must be a fitted kernel machine; {type(estimator).__name__} has no "
                f"{', '.join(missing)} (call fit first)"
            )
        coef = np.asarray(estimator.dual_coef_, dtype=np.float64)
        module = cls(estimator.kernel_, normalize=bool(getattr(estimator, "normalize", False)), backend=backend)
        module.keys = torch.as_tensor(np.asarray(estimator.centers_, dtype=np.float64))
        module.values = torch.as_tensor(coef.reshape(coef.shape[0], -1))
        module._squeeze_output = coef.ndim == 1
        module._query_features = getattr(estimator, "n_features_x_", None)  # a cross-domain kernel's query side
        return module

    def extra_repr(self) -> str:
        return f"kernel={self.kernel!r}, normalize={self.normalize}, backend={self.backend!r}"


def _no_op_pre_hook(module, args):
    return None


class KernelMultiheadAttention(_KernelDrawsInStateDict, nn.MultiheadAttention):
    """A drop-in for :class:`torch.nn.MultiheadAttention` whose attention kernel is swappable.

    Same constructor, parameters (``in_proj_weight`` or ``q_proj_weight``/``k_proj_weight``/``v_proj_weight``,
    ``in_proj_bias``, ``bias_k``, ``bias_v``, ``out_proj``) and forward arguments, so state dicts load both
    ways; with ``kernel="edp"`` and ``normalize=True`` it computes what ``nn.MultiheadAttention`` computes.
    Masks keep torch's conventions: a boolean ``attn_mask`` / ``key_padding_mask`` is True where attention is
    NOT allowed; float masks are added to the log-weight (the kernel weight is multiplied by ``exp(mask)``).

    Parameters
    ----------
    embed_dim, num_heads, dropout, bias, add_bias_kv, add_zero_attn, kdim, vdim, batch_first, device, dtype
        As in :class:`torch.nn.MultiheadAttention`.
    kernel : str or Kernel, default="edp"
    normalize : bool, default=True
    backend : {"auto", "torch", "triton", "linear"}, default="auto"
    **kernel_params
        Kernel constructor parameters (e.g. ``gamma=0.1``).

    Notes
    -----
    ``need_weights=True`` (torch's default) materializes the (L, S) weights per head to return them; pass
    ``need_weights=False`` for the memory-efficient back ends. ``is_causal=True`` is torch's hint that
    ``attn_mask`` is the causal mask (here it may be omitted): as in torch, it is applied in structured form
    (top-left, so the extra ``add_bias_kv`` / ``add_zero_attn`` keys at the end are hidden from earlier
    queries) only when ``need_weights=False`` and there is no ``key_padding_mask``; otherwise the causal mask
    is used as a mask, padded so that every query sees the extra keys.

    The feature draw of a random-feature kernel (``positive_random_features``, ``random_fourier_features``)
    is saved in ``state_dict`` (``kernel_draws.*`` entries) and restored by ``load_state_dict``, so a loaded
    module computes what the saved one did.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, device=None, dtype=None, *,
                 kernel: str | Kernel = "edp", normalize: bool = True, backend: str = "auto",
                 **kernel_params: Any):
        super().__init__(embed_dim, num_heads, dropout, bias, add_bias_kv, add_zero_attn, kdim, vdim,
                         batch_first, device, dtype)
        self.set_kernel(kernel, normalize, backend, **kernel_params)
        # nn.TransformerEncoderLayer's inference fast path calls a fused softmax kernel on our weights directly;
        # it is skipped whenever a submodule has hooks, so a no-op hook keeps our kernel in charge.
        self.register_forward_pre_hook(_no_op_pre_hook)

    def set_kernel(self, kernel: str | Kernel = "edp", normalize: bool = True, backend: str = "auto",
                   **kernel_params: Any) -> "KernelMultiheadAttention":
        """Change the kernel in place (weights untouched)."""
        k = resolve_kernel(kernel, **kernel_params)
        k.check_normalize(normalize)
        self.kernel, self.normalize, self.backend = k, normalize, _check_backend(backend)
        if _draw_cache(k) is not None:  # draw now, so that a state_dict saved before any forward holds it
            k.feature_map_x(torch.zeros(1, self.head_dim, dtype=torch.float64))
        return self

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention, kernel: str | Kernel = "edp", normalize: bool = True,
                   backend: str = "auto", **kernel_params: Any) -> "KernelMultiheadAttention":
        """A KernelMultiheadAttention that shares ``mha``'s parameters (the same Parameter objects)."""
        ref = mha.in_proj_weight if mha._qkv_same_embed_dim else mha.q_proj_weight
        new = cls(mha.embed_dim, mha.num_heads, mha.dropout, mha.in_proj_bias is not None,
                  mha.bias_k is not None, mha.add_zero_attn, mha.kdim, mha.vdim, mha.batch_first,
                  device="meta", dtype=ref.dtype, kernel=kernel, normalize=normalize, backend=backend,
                  **kernel_params)
        for name, param in mha.named_parameters(recurse=False):
            setattr(new, name, param)
        new.out_proj = mha.out_proj
        new.train(mha.training)
        return new

    def _projections(self):
        e = self.embed_dim
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            wq, wk, wv = w[:e], w[e : 2 * e], w[2 * e :]
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        b = self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else (b[:e], b[e : 2 * e], b[2 * e :])
        return (wq, bq), (wk, bk), (wv, bv)

    def _check_dims(self, query, key, value):
        for name, t, want in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            if t.shape[-1] != want:
                raise ValueError(f"{name} has {t.shape[-1]} features but the module expects {want}")
        if key.shape[:-1] != value.shape[:-1]:
            raise ValueError(f"key shape {tuple(key.shape)} and value shape {tuple(value.shape)} do not match")

    def _merged_mask(self, attn_mask, key_padding_mask, n, length, source, dtype):
        """One mask in kernel_attention's convention (True = attend, or additive float), (n, h|1, L|1, S)."""
        masks = []
        if attn_mask is not None:
            if attn_mask.dim() == 3:
                attn_mask = attn_mask.view(n, self.num_heads, length, source)
            elif attn_mask.dim() != 2:
                raise ValueError(f"attn_mask must be 2-D (L, S) or 3-D (N * num_heads, L, S), got {attn_mask.dim()}-D")
            masks.append(attn_mask)
        if key_padding_mask is not None:
            if key_padding_mask.shape != (n, source):
                raise ValueError(
                    f"key_padding_mask must have shape (batch, S) = {(n, source)}, got {tuple(key_padding_mask.shape)}"
                )
            masks.append(key_padding_mask.view(n, 1, 1, source))
        if not masks:
            return None
        for m in masks:
            if m.dtype != torch.bool and not m.is_floating_point():
                raise TypeError(f"attn_mask and key_padding_mask must be bool or float, got {m.dtype}")
        if all(m.dtype == torch.bool for m in masks):
            keep = ~masks[0]
            for m in masks[1:]:
                keep = keep & ~m
            return keep
        total = None
        for m in masks:
            b = torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill(m, -torch.inf) if m.dtype == torch.bool else m.to(dtype)
            total = b if total is None else total + b
        return total

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Same arguments and returns as :meth:`torch.nn.MultiheadAttention.forward`."""
        self._check_dims(query, key, value)
        batched = query.dim() == 3
        if not batched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        # now (L, N, E), torch's internal layout
        length, n, _ = query.shape
        # torch's rule: the is_causal hint replaces attn_mask only without a key padding mask and without
        # weights; otherwise attn_mask (the causal mask) is used, padded below for bias_k/zero_attn keys that
        # every query then sees. Without attn_mask we build the causal mask torch would require.
        use_hint = is_causal and key_padding_mask is None and not need_weights
        if is_causal and not use_hint and attn_mask is None:
            attn_mask = ~causal_keep(length, 0, key.shape[0], query.device)  # torch's convention: True = masked
        if use_hint:
            attn_mask = None
        is_causal = use_hint
        (wq, bq), (wk, bk), (wv, bv) = self._projections()
        q, k, v = F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.expand(1, n, -1)])
            v = torch.cat([v, self.bias_v.expand(1, n, -1)])
            attn_mask = None if attn_mask is None else F.pad(attn_mask, (0, 1))
            key_padding_mask = None if key_padding_mask is None else F.pad(key_padding_mask, (0, 1))
        h, hd = self.num_heads, self.head_dim
        q = q.reshape(length, n, h, hd).permute(1, 2, 0, 3)
        k = k.reshape(k.shape[0], n, h, hd).permute(1, 2, 0, 3)
        v = v.reshape(v.shape[0], n, h, hd).permute(1, 2, 0, 3)
        if self.add_zero_attn:
            k = torch.cat([k, k.new_zeros(n, h, 1, hd)], dim=2)
            v = torch.cat([v, v.new_zeros(n, h, 1, hd)], dim=2)
            attn_mask = None if attn_mask is None else F.pad(attn_mask, (0, 1))
            key_padding_mask = None if key_padding_mask is None else F.pad(key_padding_mask, (0, 1))
        mask = self._merged_mask(attn_mask, key_padding_mask, n, length, k.shape[2], q.dtype)
        dropout = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            weights = kernel_attention_weights(q, k, mask, is_causal, kernel=self.kernel, normalize=self.normalize)
            if dropout > 0:
                weights = F.dropout(weights, dropout)
            out = weights @ v
        else:
            out = kernel_attention(q, k, v, mask, dropout, is_causal, kernel=self.kernel,
                                   normalize=self.normalize, backend=self.backend)
        out = self.out_proj(out.permute(2, 0, 1, 3).reshape(length, n, self.embed_dim))
        if not batched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        if weights is not None:
            if average_attn_weights:
                weights = weights.mean(dim=1)
            if not batched:
                weights = weights.squeeze(0)
        return out, weights

    def extra_repr(self) -> str:
        return f"kernel={self.kernel!r}, normalize={self.normalize}, backend={self.backend!r}"


class KernelTransformerEncoderLayer(nn.TransformerEncoderLayer):
    """:class:`torch.nn.TransformerEncoderLayer` whose self-attention is a :class:`KernelMultiheadAttention`.

    Same arguments as torch's layer, plus ``kernel``, ``normalize``, ``backend`` and ``kernel_params`` (a dict
    of kernel constructor parameters). In an ``nn.TransformerEncoder`` pass ``enable_nested_tensor=False``:
    torch's nested-tensor fast path bypasses the attention module.
    """

    def __init__(self, d_model: int, nhead: int, *args: Any, kernel: str | Kernel = "edp", normalize: bool = True,
                 backend: str = "auto", kernel_params: dict | None = None, **kwargs: Any):
        super().__init__(d_model, nhead, *args, **kwargs)
        self.self_attn = KernelMultiheadAttention.from_torch(
            self.self_attn, kernel, normalize, backend, **(kernel_params or {})
        )


class KernelTransformerDecoderLayer(nn.TransformerDecoderLayer):
    """:class:`torch.nn.TransformerDecoderLayer` with kernel self- and cross-attention (same extra arguments as
    :class:`KernelTransformerEncoderLayer`)."""

    def __init__(self, d_model: int, nhead: int, *args: Any, kernel: str | Kernel = "edp", normalize: bool = True,
                 backend: str = "auto", kernel_params: dict | None = None, **kwargs: Any):
        super().__init__(d_model, nhead, *args, **kwargs)
        params = kernel_params or {}
        self.self_attn = KernelMultiheadAttention.from_torch(self.self_attn, kernel, normalize, backend, **params)
        self.multihead_attn = KernelMultiheadAttention.from_torch(
            self.multihead_attn, kernel, normalize, backend, **params
        )
