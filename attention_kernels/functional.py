"""``kernel_attention``: ``torch.nn.functional.scaled_dot_product_attention`` with a swappable kernel.

    out_i = sum_j kappa(q_i, k_j) v_j / sum_j kappa(q_i, k_j)      (normalize=True; softmax when kappa = EDP)
    out_i = sum_j kappa(q_i, k_j) v_j                              (normalize=False)

Back ends: ``"torch"`` (normalized EDP/RBF through torch's fused SDPA, every other kernel over tiles with online
normalization and a recomputing backward; any device), ``"triton"`` (the fused primitive of :mod:`triton_ops`,
CUDA), ``"linear"`` (finite feature maps, linear in the sequence length) and ``"auto"``. Every back end computes
the same function; they are tested against one float64 reference.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

import torch
from triton_ops import interpreting

from rkbs.kernels import Kernel, resolve_kernel

from ._chunked import attention_weights, chunked_attention
from ._linear import linear_attention
from ._masks import MaskSpec, canonical_mask
from ._options import Extras, check_extras, window_is_vacuous
from ._sdpa import sdpa_attention, sdpa_eligible
from ._varlen import check_cu_seqlens, packed_attention

__all__ = ["kernel_attention", "kernel_attention_weights", "resolve_kernel", "BACKENDS"]

BACKENDS = ("auto", "torch", "triton", "linear")
_TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)

# backend="auto" switches a finite-feature kernel to the linear form once the effective length
# N = 2 Nq Nk / (Nq + Nk) reaches ratio * feature_dim. The quadratic form costs ~ N^2 (d + d_v), the linear one
# ~ N m d_v, so the crossover grows with the feature dimension m. Measured by benchmarks/linear_vs_quadratic.py
# (CPU, float32, 4 heads, d = 32; benchmarks/results/linear_vs_quadratic.json): N*/m = 1.4 (prf, m=128),
# 1.8 (taylor_edp, m=561), <= 4 (elu, m=32: linear already faster at the smallest N=128); causal 1.7 and 3.3.
LINEAR_CROSSOVER_RATIO = 2.0
LINEAR_CROSSOVER_RATIO_CAUSAL = 3.5


def _triton_ops():
    """The fused primitive, or None when ``triton_ops`` or Triton itself is unavailable."""
    try:
        import triton_ops
    except ImportError:
        return None
    available = getattr(triton_ops, "is_available", None)
    if available is None or not hasattr(triton_ops, "kernel_attention") or not available():
        return None
    return triton_ops


def _is_fused(kernel: Kernel, ops, head_dim: int) -> bool:
    # the catalogue decides: fused_spec is None for feature-map kernels and for user subclasses
    return ops is not None and kernel.fused_spec(head_dim) is not None


def _validate(query, key, value, dropout_p, normalize, backend, enable_gqa, kernel: Kernel) -> None:
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor, got dtype {t.dtype}")
        if t.ndim < 2:
            raise ValueError(f"{name} must have shape (..., seq, dim), got {tuple(t.shape)}")
        if t.device != query.device:
            raise ValueError(f"{name} is on {t.device} but query is on {query.device}")
    if not (query.dtype == key.dtype == value.dtype):
        raise TypeError(
            f"query, key and value must have the same dtype, got {query.dtype}, {key.dtype}, {value.dtype}"
        )
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(f"key has {key.shape[-2]} positions but value has {value.shape[-2]}")
    if query.shape[-1] == 0:
        raise ValueError("query has head dimension 0")
    if query.shape[-1] != key.shape[-1] and not kernel.cross_domain:
        raise ValueError(
            f"query head dim {query.shape[-1]} does not match key head dim {key.shape[-1]}"
        )
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)) or not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be a float in [0, 1), got {dropout_p!r}")
    kernel.check_normalize(normalize)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(enable_gqa, bool):
        raise TypeError(f"enable_gqa must be a bool, got {type(enable_gqa).__name__}")


def _expand_gqa(query, key, value, enable_gqa):
    if not enable_gqa or query.ndim < 3 or key.shape[-3] == query.shape[-3]:
        return key, value
    hq = query.shape[-3]
    for name, t in (("key", key), ("value", value)):
        if t.ndim < 3 or hq % t.shape[-3] != 0:
            raise ValueError(
                f"enable_gqa=True needs the query heads ({hq}) to be a multiple of the {name} heads "
                f"({t.shape[-3] if t.ndim >= 3 else 'none'})"
            )
    return (
        key.repeat_interleave(hq // key.shape[-3], dim=-3),
        value.repeat_interleave(hq // value.shape[-3], dim=-3),
    )


def _out_dtype(query: torch.Tensor) -> torch.dtype:
    device_type = query.device.type
    with contextlib.suppress(TypeError, RuntimeError):
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
    return query.dtype


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # low-precision inputs accumulate in float32 (as flash attention does)
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _effective_length(nq: int, nk: int) -> float:
    return 0.0 if nq + nk == 0 else 2.0 * nq * nk / (nq + nk)


def _prepare(query, key, value, attn_mask, is_causal, dropout_p, normalize, backend, enable_gqa, kernel):
    _validate(query, key, value, dropout_p, normalize, backend, enable_gqa, kernel)
    key_g, value_g = _expand_gqa(query, key, value, enable_gqa)
    try:
        batch = torch.broadcast_shapes(query.shape[:-2], key_g.shape[:-2], value_g.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"the batch dimensions of query {tuple(query.shape)}, key {tuple(key.shape)} and value "
            f"{tuple(value.shape)} do not broadcast (pass enable_gqa=True for grouped-query heads)"
        ) from None
    mask = canonical_mask(attn_mask, is_causal, query, batch, query.shape[-2], key.shape[-2])
    return key_g, value_g, mask


def kernel_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    *,
    kernel: str | Kernel = "edp",
    normalize: bool = True,
    backend: str = "auto",
    window: tuple[int, int] | None = None,
    alibi_slopes: torch.Tensor | None = None,
    sinks: torch.Tensor | None = None,
    softcap: float | None = None,
    cu_seqlens_q: torch.Tensor | None = None,
    cu_seqlens_k: torch.Tensor | None = None,
    max_seqlen_q: int | None = None,
    max_seqlen_k: int | None = None,
    return_lse: bool = False,
    **kernel_params: Any,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Kernel attention with the arguments of ``torch.nn.functional.scaled_dot_product_attention``.

    Parameters
    ----------
    query : torch.Tensor of shape (..., L, E)
        Usually (batch, heads, L, E); (total_q, heads, E) when packed (``cu_seqlens_q``).
    key : torch.Tensor of shape (..., S, E)
    value : torch.Tensor of shape (..., S, Ev)
    attn_mask : torch.Tensor, optional
        Broadcasts to (..., L, S). Boolean: True = attend. Floating (the query's dtype): an additive bias ``b``
        on the log-weight, i.e. the kernel weight is multiplied by ``exp(b)`` for every kernel (``-inf``
        removes a key; for EDP this is SDPA's additive mask). It receives a gradient when it requires one.
    dropout_p : float, default=0.0
        Dropout on the normalized weights (raw weights when ``normalize=False``), applied whenever > 0 as in
        SDPA: pass ``dropout_p if self.training else 0.0`` from a module. Normalized EDP/RBF draw the mask
        from SDPA's random stream, every other case from the tiled path's (seeded from torch's global
        generator): the same seed gives different masks on the two routes.
    is_causal : bool, default=False
        Top-left aligned causal mask (query i attends keys j <= i), as in SDPA; unlike SDPA it may be combined
        with ``attn_mask`` (both apply). For the bottom-right alignment of a KV cache use ``window=(-1, 0)``.
    scale : float, optional
        Overrides the kernel's ``scale`` (default 1/sqrt(E)) for kernels that have one; a TypeError for kernels
        that do not (rbf, laplacian: use ``gamma``).
    enable_gqa : bool, default=False
        Grouped-query attention: key/value heads (dim -3) are repeated to match the query heads.
    kernel : str or rkbs.kernels.Kernel, default="edp"
        A catalogue name (``rkbs.kernels.list_kernels()``) or kernel object; ``**kernel_params`` are its
        constructor parameters (e.g. ``gamma=0.1``). Random-feature kernels given by name draw new features on
        every call unless ``random_state`` is set: pass a kernel object to keep one draw.
    normalize : bool, default=True
        Divide by the row sum of the weights. Needs a non-negative kernel (``kernel.positive_valued``); a
        ValueError otherwise. Rows whose weights sum to zero (every key masked, or e.g. relu features with no
        overlap) give zeros, not NaN (SDPA gives NaN for fully masked rows).
    backend : {"auto", "torch", "triton", "linear"}, default="auto"
        "torch": normalized EDP/RBF through torch's fused SDPA, everything else tiled with a recomputing
        backward (O(L * tile) memory, any device and kernel). "triton": the fused :mod:`triton_ops` kernel
        (CUDA; dot-family and exp_intersection kernels; every feature argument below, packed batches in one
        launch, split-KV decoding; no dropout).
        "linear": finite feature maps in O((L + S) m Ev) (causal, key-padding masks, packed batches and
        ``return_lse``). "auto": triton on CUDA where fused (feature arguments and packed batches included),
        linear for finite-feature kernels past the measured crossover length, else torch.
    window : (int, int), optional
        Sliding window ``(left, right)`` aligned bottom-right as FlashAttention's ``window_size``: query i
        attends keys j with ``i + S - L - left <= j <= i + S - L + right``; -1 leaves a side unbounded, so
        ``(-1, 0)`` is the KV-cache causal mask (equal to ``is_causal`` when L == S). Tiles outside the window
        are skipped: O(L * window) time and memory.
    alibi_slopes : torch.Tensor of shape (heads,) or (batch, heads), optional
        Multiplies the kernel by ``exp(-slope |i + S - L - j|)`` (ALiBi for EDP), for every kernel.
    sinks : torch.Tensor of shape (heads,), optional
        A learned sink logit per head: ``exp(sink)`` joins every row sum of the normalized weights (GPT-OSS;
        "softmax1" when 0), for any non-negative kernel. Needs ``normalize=True``. Differentiable.
    softcap : float, optional
        ``c * tanh(u / c)`` in place of ``u``, before masks and ALiBi: ``u`` is the exponent of the exponential
        kernels (edp, rbf, laplacian, exp_intersection; for EDP the score ``s q.k``: Gemma 2's logit
        soft-capping) and the argument of the outer function of the other dot-family kernels, the scaled dot
        product ``s q.k`` (cosine: ``q.k / (|q| |k|)``), e.g. polynomial ``(c tanh(s q.k / c) + coef0)^p``.
        Other kernels raise a ValueError (see ``docs/attention.md``, "Soft-capping").
    cu_seqlens_q, cu_seqlens_k : torch.Tensor of shape (batch + 1,), optional
        Packed variable-length batch (the layout of torch's ``varlen_attn``): query (total_q, heads, E), key
        and value (total_k, kv_heads, E / Ev); int32/int64 offsets from 0. ``attn_mask`` is not supported here.
    max_seqlen_q, max_seqlen_k : int, optional
        The longest sequences of the packed batch (checked, as in ``varlen_attn``).
    return_lse : bool, default=False
        Also return the row log-normalizer ``lse`` (log of the row sum including sinks; -inf for empty rows),
        in the compute dtype, shape (..., L) or (heads, total_q) when packed: partial results over disjoint key
        sets merge as ``sum_p exp(lse_p - lse) out_p`` with ``lse = logsumexp_p lse_p``. Needs
        ``normalize=True``. Differentiable.

    Returns
    -------
    torch.Tensor of shape (..., L, Ev), or (out, lse) with ``return_lse``
        In the query's dtype (the autocast dtype under autocast). Low-precision inputs accumulate in float32.

    Notes
    -----
    Inputs are not scanned for NaN/inf (a device synchronization per call): like SDPA, non-finite inputs give
    non-finite outputs.

    Examples
    --------
    >>> import torch
    >>> q, k, v = torch.randn(3, 1, 2, 8, 16).unbind(0)
    >>> out, lse = kernel_attention(q, k, v, kernel="rbf", window=(3, 0), return_lse=True)
    >>> out.shape, lse.shape
    (torch.Size([1, 2, 8, 16]), torch.Size([1, 2, 8]))
    """
    k_obj = resolve_kernel(kernel, scale, **kernel_params)
    packed = cu_seqlens_q is not None or cu_seqlens_k is not None
    extras = check_extras(query, window, alibi_slopes, sinks, softcap, return_lse, normalize, packed)
    if not packed:
        if max_seqlen_q is not None or max_seqlen_k is not None:
            raise ValueError("max_seqlen_q/max_seqlen_k need cu_seqlens_q and cu_seqlens_k (a packed batch)")
        return _attention(query, key, value, attn_mask, dropout_p, is_causal, enable_gqa, k_obj, normalize,
                          backend, extras)
    off_q, off_k = check_cu_seqlens(query, key, value, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    if attn_mask is not None:
        raise ValueError("attn_mask is not supported with cu_seqlens_q/cu_seqlens_k; use window or is_causal")
    if backend == "triton" or (backend == "auto" and _auto_packed_fused(query, dropout_p, k_obj, extras)):
        return _triton_packed(query, key, value, dropout_p, is_causal, enable_gqa, k_obj, normalize, extras,
                              cu_seqlens_q, cu_seqlens_k, max(b - a for a, b in zip(off_q, off_q[1:])),
                              max(b - a for a, b in zip(off_k, off_k[1:])))

    def run(q, k, v):
        return _attention(q, k, v, None, dropout_p, is_causal, enable_gqa, k_obj, normalize, backend, extras)

    return packed_attention(run, query, key, value, off_q, off_k, extras.return_lse)


def _attention(query, key, value, attn_mask, dropout_p, is_causal, enable_gqa, k_obj, normalize, backend,
               extras: Extras):
    key_g, value_g, mask = _prepare(
        query, key, value, attn_mask, is_causal, dropout_p, normalize, backend, enable_gqa, k_obj
    )
    if not window_is_vacuous(extras.window, query.shape[-2], key.shape[-2]):
        mask = replace(mask, window=extras.window)
    chosen = _choose_backend(backend, query, key, mask, dropout_p, k_obj, extras, normalize)
    out_dtype = _out_dtype(query)
    if chosen == "triton":
        res = _triton_ops().kernel_attention(
            query, key if enable_gqa else key_g, value if enable_gqa else value_g, attn_mask,
            spec=k_obj.fused_spec(query.shape[-1]), is_causal=is_causal, enable_gqa=enable_gqa,
            normalize=normalize, **_triton_features(extras, mask.window, query.shape[-3]),
        )
        return (res[0].to(out_dtype), res[1]) if extras.return_lse else res.to(out_dtype)
    dtype = _compute_dtype(query.dtype)
    q, k, v = query.to(dtype), key_g.to(dtype), value_g.to(dtype)
    if mask.bias is not None:
        mask = replace(mask, bias=mask.bias.to(dtype))
    sinks = None if extras.sinks is None else extras.sinks.to(dtype)
    slopes = None if extras.alibi_slopes is None else extras.alibi_slopes.to(dtype)
    lse = None
    with torch.autocast(query.device.type, enabled=False):
        if chosen == "linear":
            res = linear_attention(q, k, v, k_obj, normalize, mask, return_lse=extras.return_lse)
        elif chosen == "sdpa":
            res = sdpa_attention(q, k, v, k_obj, mask, float(dropout_p))
        else:
            res = chunked_attention(
                q, k, v, k_obj, normalize, mask, float(dropout_p), softcap=extras.softcap, sinks=sinks,
                alibi_slopes=slopes, return_lse=extras.return_lse,
            )
    if extras.return_lse:
        out, lse = res
        return out.to(out_dtype), lse
    return res.to(out_dtype)


def _triton_features(extras: Extras, window, heads: int) -> dict:
    """The feature arguments in triton_ops' conventions (-1 for an unbounded window side, (H,) or (B, H) slopes)."""
    slopes = extras.alibi_slopes
    if slopes is not None:
        slopes = slopes.reshape(heads) if slopes.shape[0] == 1 else slopes.reshape(-1, heads)
    return dict(
        window=None if window is None else tuple(-1 if w is None else w for w in window), alibi_slopes=slopes,
        sinks=extras.sinks, softcap=extras.softcap, return_lse=extras.return_lse,
    )


def _auto_packed_fused(query, dropout_p, k_obj: Kernel, extras: Extras) -> bool:
    """Whether backend="auto" runs a packed batch as one fused launch (CUDA, a fused kernel, no dropout)."""
    # every fused kernel takes every feature argument (softcap included)
    return bool(query.is_cuda and dropout_p == 0 and query.dtype in _TRITON_DTYPES
                and _is_fused(k_obj, _triton_ops(), query.shape[-1]))


def _triton_packed(query, key, value, dropout_p, is_causal, enable_gqa, k_obj, normalize, extras: Extras,
                   cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k):
    """A packed batch on the fused back end: one launch, programs over (sequence, query block)."""
    q4 = query.transpose(0, 1).unsqueeze(0)  # validate as the (1, heads, total, dim) view the kernels index
    k4, v4 = (t.transpose(0, 1).unsqueeze(0) for t in (key, value))
    _validate(q4, k4, v4, dropout_p, normalize, "triton", enable_gqa, k_obj)
    _choose_backend("triton", q4, k4, None, dropout_p, k_obj, extras, normalize)  # the triton checks need no mask
    res = _triton_ops().kernel_attention(
        query, key, value, spec=k_obj.fused_spec(query.shape[-1]), is_causal=is_causal, enable_gqa=enable_gqa,
        normalize=normalize, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k, max_seqlen_q=max_seqlen_q,
        max_seqlen_k=max_seqlen_k, **_triton_features(extras, extras.window, query.shape[-2]),
    )
    out_dtype = _out_dtype(query)
    return (res[0].to(out_dtype), res[1]) if extras.return_lse else res.to(out_dtype)


def _choose_backend(backend: str, query, key, mask: MaskSpec, dropout_p: float, kernel: Kernel,
                    extras: Extras, normalize: bool) -> str:
    if backend == "triton":
        ops = _triton_ops()
        if ops is None:
            raise ValueError("backend='triton' needs triton_ops with a working Triton (not available here)")
        if not query.is_cuda and not interpreting():
            raise ValueError(
                "backend='triton' needs CUDA tensors (or Triton's interpreter, TRITON_INTERPRET=1, for CPU "
                "tensors); use backend='torch' on the CPU"
            )
        if not _is_fused(kernel, ops, query.shape[-1]):
            raise ValueError(
                f"backend='triton' has no fused form of kernel {kernel.name!r} (its fused_spec is None: a "
                "feature-map kernel, an AttentionKernel or a user-defined subclass). Use backend='torch' (or "
                "'linear' for feature-map kernels)"
            )
        if query.dtype not in _TRITON_DTYPES or query.ndim != 4:
            raise ValueError(
                "backend='triton' takes (batch, heads, seq, dim) float16, bfloat16 or float32 tensors, got "
                f"{query.ndim}-D {query.dtype}; use backend='torch'"
            )
        if dropout_p > 0:
            raise ValueError("backend='triton' does not apply dropout; use dropout_p=0.0 or backend='torch'")
        return "triton"
    tiled_features = (
        mask.window is not None or extras.alibi_slopes is not None or extras.sinks is not None
        or extras.softcap is not None
    )
    if backend == "linear":
        if not kernel.has_features:
            raise ValueError(
                f"backend='linear' needs a finite feature map, and kernel {kernel.name!r} has none; use a "
                "feature-map kernel (elu, relu, taylor_edp, positive_random_features, polynomial, linear, ...)"
            )
        if not mask.keys_only():
            raise ValueError(
                "backend='linear' supports only is_causal and key-padding masks (attn_mask of shape "
                "(..., 1, S)); use backend='torch' for general masks"
            )
        if dropout_p > 0:
            raise ValueError("backend='linear' cannot apply dropout to weights it never forms; use dropout_p=0.0")
        if tiled_features:
            name = next(n for n, on in (("window", mask.window is not None), ("alibi_slopes",
                        extras.alibi_slopes is not None), ("sinks", extras.sinks is not None),
                        ("softcap", extras.softcap is not None)) if on)
            raise ValueError(
                f"backend='linear' does not support {name} (its recurrence has no position-dependent weights); "
                "use backend='torch'"
            )
        return "linear"
    if backend == "auto":
        # the fused primitive takes (B, H, N, D) float16/bfloat16/float32 tensors
        if query.is_cuda and dropout_p == 0 and query.ndim == 4 and query.dtype in _TRITON_DTYPES:
            ops = _triton_ops()  # it takes every feature argument, for every fused kernel
            if _is_fused(kernel, ops, query.shape[-1]):
                return "triton"
        if kernel.has_features and mask.keys_only() and dropout_p == 0 and not tiled_features:
            m = kernel.feature_dim(query.shape[-1])
            ratio = LINEAR_CROSSOVER_RATIO_CAUSAL if mask.causal else LINEAR_CROSSOVER_RATIO
            if _effective_length(query.shape[-2], key.shape[-2]) >= ratio * m:
                return "linear"
    bias = mask.bias
    if (sdpa_eligible(kernel, normalize)
            and not tiled_features and not extras.return_lse and not (bias is not None and bias.requires_grad)):
        return "sdpa"
    return "torch"


def kernel_attention_weights(
    query: torch.Tensor,
    key: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    *,
    kernel: str | Kernel = "edp",
    normalize: bool = True,
    **kernel_params: Any,
) -> torch.Tensor:
    """The explicit ``(..., L, S)`` attention weights of :func:`kernel_attention` (O(L S) memory).

    Normalized rows (zeros for rows whose weights sum to zero) or, with ``normalize=False``, the masked kernel
    values ``kappa(q_i, k_j) * exp(b_ij)``. Same arguments and errors as :func:`kernel_attention`.
    """
    k_obj = resolve_kernel(kernel, scale, **kernel_params)
    key_g, _, mask = _prepare(query, key, key, attn_mask, is_causal, 0.0, normalize, "torch", enable_gqa, k_obj)
    dtype = _compute_dtype(query.dtype)
    if mask.bias is not None:
        mask = replace(mask, bias=mask.bias.to(dtype))
    with torch.autocast(query.device.type, enabled=False):
        w = attention_weights(query.to(dtype), key_g.to(dtype), k_obj, normalize, mask)
    return w.to(_out_dtype(query))
