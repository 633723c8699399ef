"""Hugging Face transformers integration: the kernel catalogue as ``attn_implementation`` choices.

After :func:`register_hf_kernels`, ``AutoModel.from_config(config, attn_implementation="kernel_rbf")`` (or
``model.set_attn_implementation("kernel_rbf")``) runs every attention layer of a transformers model with the
RBF kernel. Each name is registered with ``transformers.AttentionInterface`` and, for the mask, with
``AttentionMaskInterface`` (the boolean SDPA-style mask, True = attend, which is kernel_attention's convention).
transformers is imported only when registering.

Every argument the attention interface passes is either honoured or refused with an error naming it (see
:func:`_hf_attention`); nothing is dropped silently.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any

import torch

from rkbs.kernels import Kernel, default_scale, gamma_for_scale, get_kernel, list_kernels

from ._masks import causal_keep
from .functional import kernel_attention, resolve_kernel

__all__ = ["register_hf_kernels", "register_hf_kernel", "HF_PREFIX"]

HF_PREFIX = "kernel_"

# Keyword arguments that reach the attention function through the models' ``**kwargs`` (transformers'
# TransformersKwargs and generation bookkeeping) without changing what attention computes here: the attention
# mask the model builds already carries what they describe (positions, packed-sequence boundaries, cache
# offsets), or they concern other parts of the model (losses, outputs, router logits, the cache object, which
# the layer updates before calling attention).
_NEUTRAL_KWARGS = frozenset({
    "position_ids", "cache_position", "use_cache", "past_key_values", "past_key_value", "output_hidden_states",
    "return_dict", "num_items_in_batch", "output_router_logits", "token_type_ids", "layer_idx", "labels",
    "position_embeddings", "logits_to_keep", "deterministic",
})
# Packed-sequence (varlen) arguments: the padding-free batches of DataCollatorWithFlattening. The masks
# transformers builds for the sdpa mask interface (which these names use) encode the sequence boundaries from
# position_ids, so they are redundant when a mask is present; without a mask they would be the only record.
_VARLEN_KWARGS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx")

# The model features transformers passes as keyword arguments, each with the kernel_attention argument that
# computes it and the model family that uses it. While kernel_attention lacks the argument, a model that uses
# the feature gets a NotImplementedError naming it; once kernel_attention takes it, _feature_arguments passes it.
_FEATURES = {
    "softcap": ("softcap", "logit soft-capping c * tanh(score / c) (Gemma 2, T5Gemma, VaultGemma)"),
    "s_aux": ("sinks", "learned attention sinks added to the normalizer (GPT-OSS)"),
    "sinks": ("sinks", "learned attention sinks added to the normalizer"),
    "sliding_window": ("window", "sliding-window attention without a mask that encodes the window (Mistral, "
                       "Gemma 2, ...)"),
}


@functools.lru_cache(maxsize=None)
def _kernel_attention_takes(name: str) -> bool:
    return name in inspect.signature(kernel_attention).parameters


def _window(sliding_window: Any, causal: bool) -> tuple[int, int]:
    """transformers' ``sliding_window`` as kernel_attention's ``window=(left, right)``.

    An int ``w`` lets query i see keys j with ``i - w < j`` (transformers' ``sliding_window_overlay``), i.e.
    ``w - 1`` keys to the left, and as many to the right for bidirectional layers; a pair is already
    (left, right) (FlashAttention's ``window_size``, which some models pass).
    """
    if isinstance(sliding_window, (tuple, list)):
        return int(sliding_window[0]), int(sliding_window[1])
    left = int(sliding_window) - 1
    return left, (0 if causal else left)


def _window_is_active(sliding_window: Any, attention_mask, kv_len: int) -> bool:
    """Whether the window changes the result and the mask does not already encode it.

    transformers builds the sliding-window mask for the sdpa mask interface and skips it (mask None) only when
    the window cannot bite (``kv_length < sliding_window``); a mask, when present, already carries the window.
    """
    if sliding_window is None or attention_mask is not None:
        return False
    if isinstance(sliding_window, (tuple, list)):
        return any(0 <= int(w) < kv_len - 1 for w in sliding_window)
    return int(sliding_window) > 0 and kv_len > int(sliding_window)


def _feature_arguments(module: torch.nn.Module, causal: bool, attention_mask, q_len: int, kv_len: int,
                       features: dict[str, Any]) -> dict[str, Any]:
    """kernel_attention arguments for the model features in ``features`` (the one place that maps them)."""
    extra: dict[str, Any] = {}
    for hf_name, value in features.items():
        if value is None or (hf_name == "sliding_window" and not _window_is_active(value, attention_mask, kv_len)):
            continue
        ours, what = _FEATURES[hf_name]
        if not _kernel_attention_takes(ours):
            raise NotImplementedError(
                f"{type(module).__name__} passes {hf_name}={_short(value)}: {what}. kernel_attention has no "
                f"'{ours}' argument yet, so the kernel_* attention cannot compute this model faithfully; use "
                "attn_implementation='eager' for this model"
            )
        if hf_name == "sliding_window":
            if q_len != kv_len:  # transformers builds the window mask for these; the alignment would be a guess
                raise NotImplementedError(
                    f"{type(module).__name__} passes sliding_window={value!r} without a mask for {q_len} queries "
                    f"against {kv_len} keys; the kernel_* attention needs the sliding-window mask transformers builds"
                )
            extra["window"] = _window(value, causal)
        elif hf_name == "softcap":
            extra["softcap"] = float(value)
        else:  # s_aux / sinks: one logit per query head
            extra["sinks"] = value
    return extra


def _short(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"<tensor of shape {tuple(value.shape)}>"
    return repr(value)


def _bias_as_mask(position_bias: torch.Tensor, attention_mask, causal: bool, q_len: int, kv_len: int):
    """A relative position bias (T5's ``position_bias``) folded into one additive float mask.

    kernel_attention multiplies the kernel weight by ``exp(bias)`` (SDPA's additive mask for EDP), and -inf
    removes a key; the result is what transformers' sdpa attention builds (``create_position_bias_mask``).
    """
    bias = position_bias[..., :kv_len]
    if attention_mask is None:
        if not causal:
            return bias
        return bias.masked_fill(~causal_keep(q_len, 0, kv_len, bias.device), -math.inf)
    if attention_mask.dtype == torch.bool:  # where, not masked_fill: the mask may have the larger batch
        return torch.where(attention_mask, bias, -math.inf)
    return bias + attention_mask


def _check_kwargs(module: torch.nn.Module, attention_mask, kwargs: dict[str, Any]) -> None:
    if kwargs.get("output_attentions", False):
        raise ValueError(
            "output_attentions=True: kernel attention does not return attention weights; use "
            "attn_implementation='eager' to get them"
        )
    if kwargs.get("cache") is not None:
        raise NotImplementedError(
            "cache: continuous batching's paged cache is not supported by the kernel_* attention; use "
            "model.generate() with the default cache"
        )
    if attention_mask is None:
        packed = [name for name in _VARLEN_KWARGS if kwargs.get(name) is not None]
        if packed:
            raise NotImplementedError(
                f"{', '.join(packed)}: a packed (padding-free) batch without an attention mask; the kernel_* "
                "attention needs the mask transformers builds from position_ids (pass position_ids, or use "
                "padded batches)"
            )
    unknown = sorted(
        name for name, value in kwargs.items()
        if name not in _NEUTRAL_KWARGS and name not in _VARLEN_KWARGS
        and name not in ("output_attentions", "cache") and value is not None and value is not False
    )
    if unknown:
        raise TypeError(
            f"{type(module).__name__} passes {', '.join(f'{n}={_short(kwargs[n])}' for n in unknown)} to its "
            "attention function; the kernel_* attention does not know what to do with "
            f"{'it' if len(unknown) == 1 else 'them'} and will not ignore it silently"
        )


def _hf_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                  is_causal: bool | None = None, position_bias: torch.Tensor | None = None,
                  sliding_window: Any = None, softcap: float | None = None, s_aux: torch.Tensor | None = None,
                  sinks: torch.Tensor | None = None, *, _kernel: Kernel, _normalize: bool, _backend: str,
                  _scaled: dict, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: (B, H, L, D) in, (B, L, H, D) out, no weights.

    ``attention_mask`` (boolean, True = attend; or additive float), ``dropout``, ``scaling`` (see
    :func:`_kernel_for`), ``is_causal`` (the module's ``is_causal`` when None, as in sdpa) and
    ``position_bias`` (an additive bias, folded into the mask) are computed; ``sliding_window``, ``softcap``,
    ``s_aux``/``sinks`` go through :func:`_feature_arguments`; every other keyword must be one of the neutral
    bookkeeping arguments, or the call fails naming it.
    """
    _check_kwargs(module, attention_mask, kwargs)
    q_len, kv_len = query.shape[2], key.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(q_len > 1 and attention_mask is None and causal)
    if causal and kv_len > q_len:  # prefill into an empty static cache: the rest of the keys are unused
        key, value = key[:, :, :q_len], value[:, :, :q_len]
        kv_len = q_len
    if attention_mask is not None:
        attention_mask = attention_mask[..., :kv_len]
    extra = _feature_arguments(module, causal, attention_mask, q_len, kv_len,
                               {"sliding_window": sliding_window, "softcap": softcap, "s_aux": s_aux, "sinks": sinks})
    if position_bias is not None:
        attention_mask = _bias_as_mask(position_bias.to(query.dtype), attention_mask, causal, q_len, kv_len)
        causal = False
    groups = getattr(module, "num_key_value_groups", 1)
    out = kernel_attention(
        query, key, value, attention_mask, dropout, causal, enable_gqa=groups > 1,
        kernel=_kernel_for(_kernel, scaling, query.shape[-1], _scaled), normalize=_normalize, backend=_backend,
        **extra,
    )
    return out.transpose(1, 2).contiguous(), None


def _kernel_for(kernel: Kernel, scaling: float | None, head_dim: int, cache: dict) -> Kernel:
    """The kernel with the model's ``scaling`` applied.

    The model's scaling (1/sqrt(head_dim) for most models; Gemma's query_pre_attn_scalar, ...) takes the place of
    the default 1/sqrt(d) of the kernel's ``scale``, or of ``gamma = 1/(2 sqrt(d))`` (``gamma = scaling / 2``,
    which keeps the RBF's q.k term equal to the model's scaled dot product). A parameter set explicitly at
    registration wins. A kernel with neither parameter (cosine, elu, relu) accepts only the default scaling and
    raises otherwise. One kernel object per scaling value, so random features keep their draw.
    """
    if scaling is None:
        return kernel
    if scaling not in cache:
        params = kernel.get_params(deep=False)
        if "scale" in params:
            cache[scaling] = kernel if params["scale"] is not None else resolve_kernel(kernel, scale=float(scaling))
        elif "gamma" in params:
            cache[scaling] = kernel if params["gamma"] is not None else get_kernel(kernel, gamma=gamma_for_scale(scaling))
        elif math.isclose(float(scaling), default_scale(None, head_dim), rel_tol=1e-6):
            cache[scaling] = kernel
        else:
            raise ValueError(
                f"scaling={scaling!r}: the model scales its scores by something other than 1/sqrt(head_dim), and "
                f"kernel {kernel.name!r} has no scale or gamma parameter to take it; use a kernel with a scale"
            )
    return cache[scaling]


# The names registered here: the guard below refuses them for models that never call the attention interface.
_REGISTERED: set[str] = set()


def _own_attention_error(model: Any, name: str) -> ValueError:
    return ValueError(
        f'attn_implementation="{name}" (a kernel_* attention of attention_kernels) needs a model that computes '
        f"attention through transformers' AttentionInterface, and {type(model).__name__} computes it in its own "
        'classes (transformers would fail with a bare KeyError); use attn_implementation="eager" or "sdpa" for '
        "this model"
    )


def _install_backend_guard() -> None:
    """Refuse our names, with an error naming the model, where transformers would raise a bare KeyError.

    Models whose ``_supports_attention_backend`` is False (GPT-Neo, GPT-J, Falcon, GIT, Bark, SAM,
    Data2Vec-Vision, ...) look the implementation up in their own class tables. transformers checks a registered
    name only against the global AttentionInterface, so ``from_config(attn_implementation="kernel_edp")``
    reached that lookup. The check every ``PreTrainedModel`` runs on its implementation (at construction and in
    ``set_attn_implementation``) is wrapped once; other names pass through unchanged.
    """
    from transformers import PreTrainedModel

    original = PreTrainedModel._check_and_adjust_attn_implementation
    if getattr(original, "_attention_kernels_guard", False):
        return

    @functools.wraps(original)
    def check(self, attn_implementation, *args, **kwargs):
        if (isinstance(attn_implementation, str) and attn_implementation in _REGISTERED
                and not getattr(type(self), "_supports_attention_backend", False)):
            raise _own_attention_error(self, attn_implementation)
        return original(self, attn_implementation, *args, **kwargs)

    check._attention_kernels_guard = True
    PreTrainedModel._check_and_adjust_attn_implementation = check


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
        Kernel constructor parameters. An explicit ``scale`` (or ``gamma``) replaces the model's ``scaling``.

    Examples
    --------
    >>> import transformers
    >>> from attention_kernels.hf import register_hf_kernel
    >>> register_hf_kernel("poly2", "polynomial", degree=2)
    'poly2'
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
    _REGISTERED.add(name)
    _install_backend_guard()
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
