"""The torch back end: kernel attention chunked over keys with online normalization.

Every kernel weight is carried as ``mantissa * exp(log_scale)``: exponential kernels put their whole value in
``log_scale`` (through ``kernel.log_evaluate``) and have mantissa 1; other kernels put their value in the
mantissa and only the additive mask in ``log_scale``. A running row maximum of ``log_scale`` (detached: the
result does not depend on it) keeps every ``exp`` <= 1, so normalized exponential kernels never overflow and
EDP normalized is softmax attention computed FlashAttention-style. Forward memory is O(N * chunk); under
autograd each chunk is checkpointed, so training memory holds the chunk inputs and running state only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from rkbs.kernels import Kernel

from ._masks import MaskSpec, causal_keep

__all__ = ["chunked_attention", "attention_weights", "DEFAULT_CHUNK"]

# Keys per chunk. 512 keeps a (Nq x 512) weight block in cache-sized pieces on CPU and amortizes Python
# overhead on GPU; results do not depend on it beyond rounding.
DEFAULT_CHUNK = 512

# Bounded kernels with a log-kernel gain nothing from the log path (their weights cannot overflow), and
# F.logsigmoid has a fixed ~6 ms CPU cost per call in torch 2.13, so sigmoid is evaluated directly.
_DIRECT = frozenset({"sigmoid"})


def _uses_log(kernel: Kernel) -> bool:
    return kernel.has_log_kernel and kernel.name not in _DIRECT


def _log_weight_and_mantissa(
    kernel: Kernel,
    q: torch.Tensor,
    k: torch.Tensor,
    keep: torch.Tensor | None,
    bias: torch.Tensor | None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Return ``(log_scale, mantissa)`` for one key block; either may be None (meaning 0 and 1)."""
    if _uses_log(kernel):
        log_scale, mantissa = kernel.log_evaluate(q, k), None
    else:
        log_scale, mantissa = None, kernel.evaluate(q, k)
    if bias is not None:
        log_scale = bias if log_scale is None else log_scale + bias
    if keep is not None:
        if log_scale is not None:
            log_scale = log_scale.masked_fill(~keep, -math.inf)
        else:
            mantissa = mantissa.masked_fill(~keep, 0.0)
    return log_scale, mantissa


def _block_keep(mask: MaskSpec, n_queries: int, start: int, stop: int, device) -> tuple:
    keep, bias = mask.chunk(start, stop)
    if mask.causal:
        causal = causal_keep(n_queries, start, stop, device)
        keep = causal if keep is None else keep & causal
    return keep, bias


def _step(kernel, dropout_p, q, k, v, keep, bias, m, l, acc):
    """Fold one key block into the running (max, row sum, accumulator)."""
    log_scale, mantissa = _log_weight_and_mantissa(kernel, q, k, keep, bias)
    if log_scale is None:
        p = mantissa
    else:
        m_new = torch.maximum(m, log_scale.detach().amax(-1))
        m_safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
        alpha = torch.exp(m - m_safe)  # 0 while the row has seen only masked keys (m = -inf)
        p = torch.exp(log_scale - m_safe.unsqueeze(-1))
        if mantissa is not None:
            p = p * mantissa
        l, acc, m = l * alpha, acc * alpha.unsqueeze(-1), m_new
    l = l + p.sum(-1)
    if dropout_p > 0.0:
        p = F.dropout(p, dropout_p, training=True)
    acc = acc + p @ v
    return m, l, acc


def chunked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel: Kernel,
    normalize: bool,
    mask: MaskSpec,
    dropout_p: float = 0.0,
    chunk: int | None = None,
) -> torch.Tensor:
    """Kernel attention over key chunks; inputs already validated, broadcast heads, compute dtype.

    Returns ``(*batch, n_queries, value_dim)`` in the dtype of ``q``. ``chunk`` defaults to the module's
    ``DEFAULT_CHUNK`` (read at call time, so tests can shrink it).
    """
    chunk = DEFAULT_CHUNK if chunk is None else chunk
    nq, nk = q.shape[-2], k.shape[-2]
    batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    m = torch.full((*batch, nq), -math.inf, dtype=q.dtype, device=q.device)
    l = torch.zeros((*batch, nq), dtype=q.dtype, device=q.device)
    acc = torch.zeros((*batch, nq, v.shape[-1]), dtype=q.dtype, device=q.device)
    # keys past the last query are invisible to every query under a top-left causal mask
    stop_all = min(nk, nq) if mask.causal else nk
    starts = range(0, stop_all, chunk)
    use_checkpoint = (
        len(starts) > 1
        and torch.is_grad_enabled()
        and any(t.requires_grad for t in (q, k, v))
        and not torch.compiler.is_compiling()
    )
    for start in starts:
        stop = min(start + chunk, stop_all)
        keep, bias = _block_keep(mask, nq, start, stop, q.device)
        args = (kernel, dropout_p, q, k[..., start:stop, :], v[..., start:stop, :], keep, bias, m, l, acc)
        if use_checkpoint:
            m, l, acc = checkpoint(_step, *args, use_reentrant=False)
        else:
            m, l, acc = _step(*args)
    if normalize:
        # zero row sums (every key masked, or a non-negative kernel with no overlap) give zeros, not NaN
        l_safe = torch.where(l != 0, l, torch.ones_like(l))
        return acc / l_safe.unsqueeze(-1)
    # un-normalized: undo the running maximum (m stays -inf, i.e. factor 1, when no log-scale was used)
    scale = torch.exp(torch.where(torch.isfinite(m), m, torch.zeros_like(m)))
    return acc * scale.unsqueeze(-1)


def attention_weights(
    q: torch.Tensor, k: torch.Tensor, kernel: Kernel, normalize: bool, mask: MaskSpec
) -> torch.Tensor:
    """The full ``(*batch, n_queries, n_keys)`` weight matrix (normalized rows or raw kernel values)."""
    nq, nk = q.shape[-2], k.shape[-2]
    keep, bias = _block_keep(mask, nq, 0, nk, q.device)
    log_scale, mantissa = _log_weight_and_mantissa(kernel, q, k, keep, bias)
    if log_scale is None:
        w = mantissa
    else:
        if normalize:
            row_max = log_scale.detach().amax(-1, keepdim=True)
            log_scale = log_scale - torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
        w = torch.exp(log_scale)
        if mantissa is not None:
            w = w * mantissa
    if normalize:
        total = w.sum(-1, keepdim=True)
        w = w / torch.where(total != 0, total, torch.ones_like(total))
    return w
