"""Public entry point :func:`kernel_attention` and its ``torch.autograd.Function``."""

from __future__ import annotations

import torch

from ._interpreter import interpreting
from ._features import Features, check_features
from ._spec import KernelSpec, check_normalize

__all__ = ["kernel_attention", "is_available"]

_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_PRECISIONS = ("default", "ieee", "tf32")
_MAX_HEAD_DIM = 256


def is_available() -> bool:
    """True when triton imports and either a CUDA device is present or ``TRITON_INTERPRET=1``."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return interpreting() or torch.cuda.is_available()


def _check_inputs(q, k, v, enable_gqa: bool) -> None:
    for name, t in (("query", q), ("key", k), ("value", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor, got {type(t).__name__}.")
        if t.dim() != 4:
            raise ValueError(f"`{name}` must have shape (batch, heads, seq, dim), got {tuple(t.shape)}.")
        if t.dtype not in _DTYPES:
            raise TypeError(f"`{name}` has dtype {t.dtype}; the fused kernels support float16, bfloat16 and float32.")
        if t.numel() == 0:
            raise ValueError(f"`{name}` is empty (shape {tuple(t.shape)}); every dimension must be positive.")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"`query`, `key`, `value` must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}.")
    if not (q.device == k.device == v.device):
        raise ValueError(f"`query`, `key`, `value` must be on one device, got {q.device}, {k.device}, {v.device}.")
    (b, hq, _, d), (bk, hk, nk, dk), (bv, hv, nv, _) = q.shape, k.shape, v.shape
    if not (b == bk == bv):
        raise ValueError(f"`query`, `key`, `value` batch sizes differ: {b}, {bk}, {bv}.")
    if hk != hv or nk != nv:
        raise ValueError(
            f"`key` {tuple(k.shape)} and `value` {tuple(v.shape)} must agree in heads and sequence length."
        )
    if hq != hk and not enable_gqa:
        raise ValueError(
            f"`query` has {hq} heads but `key`/`value` {hk}; pass enable_gqa=True for grouped-query attention."
        )
    if hq % hk != 0:
        raise ValueError(
            f"`query` heads ({hq}) must be a multiple of `key`/`value` heads ({hk}) (grouped-query attention)."
        )
    if d != dk:
        raise ValueError(f"`query` and `key` head dims differ: {d} vs {dk}.")
    if b * hq > 65535:  # one grid axis of the launch
        raise ValueError(f"batch * heads must be at most 65535, got {b} * {hq}; split the batch.")
    if d > _MAX_HEAD_DIM or v.shape[-1] > _MAX_HEAD_DIM:
        raise ValueError(
            f"head dims up to {_MAX_HEAD_DIM} are supported, got query/key {d} and value {v.shape[-1]}."
        )
    if q.device.type == "cuda":
        return
    if not interpreting():
        raise ValueError(
            f"triton_ops runs on CUDA tensors, got tensors on {q.device}; use "
            'attention_kernels.kernel_attention(..., backend="torch") on the CPU, or set TRITON_INTERPRET=1 '
            "(Triton's slow interpreter, for testing)."
        )
    if q.device.type != "cpu":
        raise ValueError(f"TRITON_INTERPRET=1 runs on CPU tensors, got {q.device}.")


def _prepare_mask(mask, shape, device):
    """Return (mask view broadcast to ``shape`` with stride-0 axes, mask kind); kind 0 none, 1 bool, 2 additive."""
    if mask is None:
        return None, 0
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"`attn_mask` must be a torch.Tensor or None, got {type(mask).__name__}.")
    if mask.device != device:
        raise ValueError(f"`attn_mask` is on {mask.device} but `query` is on {device}.")
    try:
        torch.broadcast_shapes(mask.shape, shape)
        if mask.dim() > 4:
            raise RuntimeError
    except RuntimeError:
        raise ValueError(
            f"`attn_mask` of shape {tuple(mask.shape)} is not broadcastable to (batch, heads, Nq, Nk) = {tuple(shape)}."
        ) from None
    if mask.dtype == torch.bool:
        return mask.broadcast_to(shape).view(torch.uint8), 1
    if not mask.is_floating_point():
        raise TypeError(f"`attn_mask` must be boolean (True = attend) or floating (additive), got {mask.dtype}.")
    return mask.broadcast_to(shape), 2


def _resolve_precision(precision: str, dtype: torch.dtype) -> str:
    if precision not in _PRECISIONS:
        raise ValueError(f"`precision` must be one of {_PRECISIONS}, got {precision!r}.")
    if dtype != torch.float32:
        return "tf32"  # triton's default; only float32 operands read it
    if precision == "default":
        return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"
    return precision


def _last_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    # the kernels take every stride but the last, so (B, N, H, D)-transposed views need no copy
    return t if t.stride(-1) == 1 else t.contiguous()


def _sum_to_shape(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Reduce a (B, H, Nq, Nk) gradient to the broadcast ``shape`` of the mask it belongs to."""
    lead = grad.dim() - len(shape)
    if lead:
        grad = grad.sum(dim=tuple(range(lead)))
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if dims:
        grad = grad.sum(dim=dims, keepdim=True)
    return grad


def _packed_view(t: torch.Tensor) -> torch.Tensor:
    """A packed (total, heads, dim) tensor as the (1, heads, total, dim) view the kernels index."""
    return t.transpose(0, 1).unsqueeze(0)


class _KernelAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, mask, slopes, sinks, spec: KernelSpec, normalize: bool, causal: bool, precision: str,
                feat: Features):
        from ._launch import forward

        packed = feat.varlen
        q4, k4, v4 = (_packed_view(t) for t in (q, k, v)) if packed else (q, k, v)
        mask_view, mask_kind = _prepare_mask(mask, (q4.shape[0], q4.shape[1], q4.shape[2], k4.shape[2]), q.device)
        out, lse = forward(q4, k4, v4, mask_view, mask_kind, spec, normalize, causal, precision, feat)
        ctx.save_for_backward(q, k, v, out, lse, mask)
        ctx.config = (spec, normalize, causal, precision, mask_kind, feat, slopes, sinks)
        if packed:
            out = out[0].transpose(0, 1)
            lse = lse[0] if normalize else lse
        return out, lse

    @staticmethod
    @torch.autograd.function.once_differentiable  # the Triton backward is not itself differentiable
    def backward(ctx, dout, dlse):
        from ._launch import backward

        q, k, v, out, lse, mask = ctx.saved_tensors
        spec, normalize, causal, precision, mask_kind, feat, slopes, sinks = ctx.config
        packed = feat.varlen
        q4, k4, v4 = (_packed_view(t) for t in (q, k, v)) if packed else (q, k, v)
        if packed:
            dout = _packed_view(dout)
            dlse = None if dlse is None or not normalize else dlse.unsqueeze(0)
        mask_view, _ = _prepare_mask(mask, (q4.shape[0], q4.shape[1], q4.shape[2], k4.shape[2]), q.device)
        bias_grad = mask_kind == 2 and ctx.needs_input_grad[3]
        dq, dk, dv, dbias, dslopes, dsinks = backward(
            q4, k4, v4, out, lse, _last_dim_contiguous(dout), mask_view, mask_kind, spec, normalize, causal,
            precision, bias_grad, feat, dlse if normalize else None, ctx.needs_input_grad[4],
        )
        if packed:
            dq, dk, dv = (t[0].transpose(0, 1) for t in (dq, dk, dv))
        if dbias is not None:
            dbias = _sum_to_shape(dbias, mask.shape).to(mask.dtype)
        if dslopes is not None:
            dslopes = dslopes.reshape(slopes.shape).to(slopes.dtype)
        if dsinks is not None and ctx.needs_input_grad[5]:
            dsinks = dsinks.to(sinks.dtype)
        else:
            dsinks = None
        return dq, dk, dv, dbias, dslopes, dsinks, None, None, None, None, None


def kernel_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    *,
    spec: KernelSpec,
    is_causal: bool = False,
    enable_gqa: bool = False,
    normalize: bool = True,
    return_lse: bool = False,
    precision: str = "default",
    window: tuple[int, int] | None = None,
    alibi_slopes: torch.Tensor | None = None,
    sinks: torch.Tensor | None = None,
    softcap: float | None = None,
    cu_seqlens_q: torch.Tensor | None = None,
    cu_seqlens_k: torch.Tensor | None = None,
    max_seqlen_q: int | None = None,
    max_seqlen_k: int | None = None,
):
    r"""Fused kernel attention ``out_i = sum_j w_ij v_j`` (``/ sum_j w_ij`` when ``normalize``).

    ``w_ij = kappa(q_i, k_j) * exp(bias_ij)`` for an additive float ``attn_mask`` (``bias``), ``w_ij = 0``
    where a boolean ``attn_mask`` is False or, with ``is_causal``, where ``j > i`` (top-left aligned, like
    ``torch.nn.functional.scaled_dot_product_attention``). The argument names are SDPA's; the kernel and all
    its constants (SDPA's ``scale`` included) come resolved in ``spec``. Memory is linear in the sequence
    lengths (no N x N buffer, except the bias gradient when a learnable bias is given).

    Parameters
    ----------
    query : Tensor of shape (B, Hq, Nq, D)
    key : Tensor of shape (B, Hkv, Nk, D)
        ``Hkv`` differs from ``Hq`` only with ``enable_gqa``.
    value : Tensor of shape (B, Hkv, Nk, Dv)
        float16, bfloat16 or float32 (all three the same); head dims 1..256 (padded internally to a power of
        two >= 16). Any strides; tensors whose last dim is not contiguous are copied.
    attn_mask : Tensor, optional
        Boolean (True = attend) or additive float, broadcastable to (B, Hq, Nq, Nk), e.g. (B, 1, 1, Nk) key
        padding or (Nq, Nk). Broadcast axes are read with stride 0 (never copied). For every kernel the weight
        becomes ``kappa * exp(bias)``; for ``edp`` this is SDPA's additive mask. If the float mask requires
        grad, its gradient is returned (a learnable bias; this materializes one float32 (B, Hq, Nq, Nk) buffer
        in the backward pass, reduced to the mask's shape).
    spec : KernelSpec
        The kernel, from ``rkbs.kernels.get_kernel(name, **params).fused_spec(D)`` (``None`` there means the
        kernel has no fused form).
    is_causal : bool, default=False
        Query ``i`` attends keys ``j <= i``; may be combined with ``attn_mask``.
    enable_gqa : bool, default=False
        Grouped-query attention: ``Hq`` a multiple of ``Hkv``; query head ``h`` uses key/value head
        ``h // (Hq // Hkv)`` (never copied).
    normalize : bool, default=True
        Divide by the row sum of weights. Exponential kernels use a running maximum (log-sum-exp), so EDP is
        exactly softmax attention. A ``ValueError`` when ``spec.nonnegative`` is False. Rows whose weights are
        all zero (every key masked) give zeros, never NaN.
    return_lse : bool, default=False
        Also return ``lse`` (B, Hq, Nq) float32 ((Hq, total_q) for a packed batch), the log of the row sum of
        weights, sinks included (``-inf`` for rows with no weight); differentiable. Only in normalized mode
        (``ValueError`` otherwise).
    precision : {"default", "ieee", "tf32"}
        For float32 inputs: ``"ieee"`` computes the matmuls in full fp32 (no tf32); ``"tf32"`` allows tf32;
        ``"default"`` follows ``torch.get_float32_matmul_precision()`` (``"highest"`` means ieee).
        Ignored for float16/bfloat16 (fp32 accumulation always).
    window : (int, int), optional
        Sliding window ``(left, right)``, bottom-right aligned as FlashAttention's ``window_size``: query ``i``
        sees keys ``i + Nk - Nq - left <= j <= i + Nk - Nq + right`` (-1: that side unbounded), combinable with
        ``is_causal``. Key blocks outside the window are skipped (O(N window) work).
    alibi_slopes : Tensor of shape (Hq,) or (B, Hq), optional
        Multiplies the weight by ``exp(-slope |i + Nk - Nq - j|)`` (ALiBi for EDP). Differentiable.
    sinks : Tensor of shape (Hq,), optional
        ``exp(sink)`` joins every row sum (GPT-OSS's attention sinks). Needs ``normalize``. Differentiable.
    softcap : float, optional
        ``softcap * tanh(u / softcap)`` in place of ``u`` before masks and ALiBi, every epilogue: ``u`` is the
        natural exponent of the exponential kernels (Gemma 2 for EDP) and the argument of the others' outer
        function (``c0 q.k``; cosine ``q.k / (|q| |k|)``), e.g. polynomial ``(cap(c0 q.k) + c1)^degree``.
    cu_seqlens_q, cu_seqlens_k : Tensor of shape (batch + 1,), optional
        A packed batch: ``query`` (total_q, Hq, D), ``key``/``value`` (total_k, Hkv, D/Dv), sequence ``b`` in
        rows ``cu[b]:cu[b + 1]`` (int32/int64 offsets from 0). No ``attn_mask``. Outputs are packed too.
    max_seqlen_q, max_seqlen_k : int, optional
        The longest sequences of the packed batch (checked against the offsets).

    Returns
    -------
    out : Tensor of shape (B, Hq, Nq, Dv) (packed: (total_q, Hq, Dv)), dtype of ``query``
    lse : Tensor of shape (B, Hq, Nq) (packed: (Hq, total_q)), float32
        Only when ``return_lse``.

    Notes
    -----
    A forward with few query blocks and a long key sequence (decoding) splits the keys over more programs and
    merges their partial results (split-KV); with grouped-query heads and at most 16 queries, the heads of a
    group share one program and its key/value reads. Differentiable in ``query``, ``key``, ``value``, ``alibi_slopes``,
    ``sinks`` (and a float ``attn_mask``) through a backward pass by
    recomputation. ``laplacian`` takes the subgradient 0 of the distance at ``q = k``; ``exp_intersection``
    splits the gradient of ``min`` at ties in halves (like ``torch.minimum``). Non-finite inputs propagate (not
    checked, to avoid a device synchronization). In float16 the weights of un-normalized exponential kernels
    overflow above 65504 (they are cast to the value dtype for the tensor-core matmul). For float16/bfloat16
    inputs ``sigmoid`` and ``tanh`` use the GPU's ``tanh.approx.f32`` (relative error 2^-11).

    On a GPU the first call of each case (kernel, mode, mask kind, head dims, dtypes, sequence lengths rounded
    up to a power of two) times a few block-size candidates and keeps the fastest; set the environment
    variable ``TRITON_OPS_AUTOTUNE=0`` to use the measured defaults without timing.

    Examples
    --------
    >>> import torch, triton_ops
    >>> from rkbs.kernels import get_kernel
    >>> q = k = v = torch.randn(1, 2, 5, 16)
    >>> spec = get_kernel("rbf", gamma=0.1).fused_spec(16)
    >>> out = triton_ops.kernel_attention(q, k, v, spec=spec, is_causal=True)  # doctest: +SKIP
    """
    if not isinstance(spec, KernelSpec):
        raise TypeError(
            f"`spec` must be a triton_ops.KernelSpec (from rkbs.kernels.get_kernel(...).fused_spec(head_dim)), "
            f"got {type(spec).__name__}."
        )
    for name, flag in (("is_causal", is_causal), ("enable_gqa", enable_gqa), ("return_lse", return_lse)):
        if not isinstance(flag, bool):
            raise TypeError(f"`{name}` must be a bool, got {type(flag).__name__}.")
    packed = cu_seqlens_q is not None or cu_seqlens_k is not None
    if packed:
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, torch.Tensor) or t.dim() != 3:
                raise ValueError(
                    f"with `cu_seqlens_q`/`cu_seqlens_k`, `{name}` must be a packed (total, heads, dim) tensor, got "
                    f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}."
                )
        if attn_mask is not None:
            raise ValueError("`attn_mask` is not supported with `cu_seqlens_q`/`cu_seqlens_k`; use `window` or "
                             "`is_causal`.")
        _check_inputs(*(_packed_view(t) for t in (query, key, value)), enable_gqa)
        heads, batch = query.shape[1], cu_seqlens_q.numel() - 1 if isinstance(cu_seqlens_q, torch.Tensor) else 0
    else:
        _check_inputs(query, key, value, enable_gqa)
        heads, batch = query.shape[1], query.shape[0]
    check_normalize(normalize, spec.nonnegative, spec.describe())
    if return_lse and not normalize:
        raise ValueError("`return_lse=True` needs `normalize=True` (the log-sum-exp is the log of the row sum).")
    feat = check_features(
        query, key, heads=heads, batch=batch, normalize=normalize, window=window,
        alibi_slopes=alibi_slopes, sinks=sinks, softcap=softcap, cu_seqlens_q=cu_seqlens_q,
        cu_seqlens_k=cu_seqlens_k, max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k,
    )
    precision = _resolve_precision(precision, query.dtype)
    try:
        import triton  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "triton is not installed; use attention_kernels.kernel_attention(..., backend=\"torch\")."
        ) from None
    q, k, v = (_last_dim_contiguous(t) for t in (query, key, value))
    out, lse = _KernelAttention.apply(q, k, v, attn_mask, alibi_slopes, sinks, spec, normalize, is_causal,
                                      precision, feat)
    return (out, lse) if return_lse else out
