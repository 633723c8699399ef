"""The SDPA route: kernels whose log-kernel is affine in the scores run through torch's fused SDPA.

For EDP, ``log kappa = s q.k``: normalized EDP attention *is* ``scaled_dot_product_attention``. For RBF,

    -gamma |q - k|^2 = 2 gamma q.k - gamma |q|^2 - gamma |k|^2,

the per-query term cancels under normalization and the per-key term joins the scores. It goes in as an
additive ``(..., 1, S)`` mask when no gradient has to flow into the keys through it and the attention is not
causal (SDPA's CPU flash kernel takes such a mask at no cost), and otherwise as one extra coordinate,
``q' = [q, 1]``, ``k' = [k, -|k|^2 / 2]`` with scale ``2 gamma`` (SDPA falls back to its O(L S) math path when a mask needs a gradient, but not for an
extra coordinate; the value gets a zero column too, since the flash kernel needs equal head dimensions).

Un-normalized kernels cannot go through SDPA: it returns neither the row sums nor a differentiable
log-normalizer, so they stay on the tiled path (``_chunked``), as do windows, ALiBi, sinks, soft-capping and
``return_lse``. SDPA gives NaN (math path) or zeros (flash path) for rows whose every key is masked; such rows
are un-masked before the call and zeroed after it, so the contract (zeros, finite gradients) holds on every
path. Dropout follows SDPA's own random stream, which differs from the tiled path's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rkbs.kernels import EDP, RBF, Kernel

from ._masks import MaskSpec, causal_keep

__all__ = ["sdpa_eligible", "sdpa_attention"]

_AFFINE = (EDP, RBF)


def sdpa_eligible(kernel: Kernel, normalize: bool) -> bool:
    """Whether ``kernel`` is an exact catalogue EDP/RBF (a subclass may override its formula) in normalized mode."""
    return normalize and type(kernel) in _AFFINE


def _combined_mask(mask: MaskSpec, extra: torch.Tensor | None, nq: int, nk: int, device):
    """One SDPA ``attn_mask`` (or None) from the explicit mask, causality and the per-key term."""
    keep, bias = mask.keep, mask.bias
    if mask.causal and (keep is not None or bias is not None or extra is not None):
        tril = causal_keep(nq, 0, nk, device)
        keep = tril if keep is None else keep & tril
    if extra is not None:
        bias = extra if bias is None else bias + extra
    if bias is None:
        return keep
    return bias if keep is None else bias.masked_fill(~keep, -math.inf)


def sdpa_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: Kernel, mask: MaskSpec, dropout_p: float
) -> torch.Tensor:
    """Normalized EDP or RBF attention by ``F.scaled_dot_product_attention``; heads already expanded."""
    nq, nk, d = q.shape[-2], k.shape[-2], q.shape[-1]
    batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    q, k, v = (t.expand(*batch, *t.shape[-2:]) for t in (q, k, v))
    params = kernel.resolved_params(d)
    extra = None
    pad_value = False
    if isinstance(kernel, RBF):
        gamma = params["gamma"]
        scale = 2.0 * gamma
        sq_k = torch.linalg.vector_norm(k, dim=-1, keepdim=True).square()  # no (..., S, E) temporary
        # the (..., 1, S) mask is free, but SDPA takes no mask together with is_causal (a causal one would be
        # an (L, S) tensor and lose the causal block skipping) and gives a mask no gradient on its fast path
        if mask.causal or (k.requires_grad and torch.is_grad_enabled()):
            q = torch.cat([q, torch.ones_like(q[..., :1])], -1)
            k = torch.cat([k, -0.5 * sq_k], -1)
            if v.shape[-1] == d:
                v = torch.cat([v, torch.zeros_like(v[..., :1])], -1)
                pad_value = True
        else:
            extra = (-gamma * sq_k).transpose(-1, -2)  # (..., 1, S)
    else:
        scale = params["scale"]
    attn = _combined_mask(mask, extra, nq, nk, q.device)
    dead = None
    if mask.keep is not None or mask.bias is not None:
        visible = attn if attn.dtype == torch.bool else attn > -math.inf
        dead = ~visible.any(-1, keepdim=True)
        if bool(dead.any()):
            attn = attn | dead if attn.dtype == torch.bool else attn.masked_fill(dead, 0.0)
        else:
            dead = None
    is_causal = mask.causal and attn is None
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn, dropout_p=dropout_p, is_causal=is_causal,
                                         scale=scale)
    if pad_value:
        out = out[..., :-1]
    if dead is not None:
        out = out.masked_fill(dead, 0.0)
    return out
