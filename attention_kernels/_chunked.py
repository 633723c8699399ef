"""The torch back end: kernel attention over (query block x key chunk) tiles, FlashAttention-2 style.

The forward pass keeps, per query row, a running maximum ``m`` of the log-weights (exponential kernels only),
the row sum ``l`` and the accumulator ``acc``, and folds in one tile at a time with in-place updates: one
matmul for the scores (inside the catalogue's ``evaluate`` / ``log_evaluate``) and one for the values. Tiles
above the causal diagonal or outside the sliding window are never formed, and tiles strictly inside the band
get no mask at all. The backward pass is hand-written (``torch.autograd.Function``): it stores only the output
and the row log-normalizer ``lse`` and recomputes each tile's weights. The kernel's derivative with respect to
the query and key tile comes from ``torch.autograd`` on the catalogue's own ``log_evaluate`` / ``evaluate``
of that tile, so each formula has one definition.

With ``w_ij = exp(s_ij) * mantissa_ij`` (``s`` = log-kernel, soft-capped, plus ALiBi and the additive mask) and
``P_ij = w_ij / Z_i`` (``Z_i`` = row sum plus ``exp(sink)``; ``Z_i = 1`` un-normalized):

    dV = P^T dO,    dP = dO V^T,    dS = P * (dP - D + dlse),    D_i = dO_i . O_i   (D = dlse = 0 un-normalized)

``dS`` is the gradient of the log-weight: it flows into the log-kernel (hence q and k), the additive mask and
the ALiBi slopes; kernels without a log-kernel get ``dS / mantissa`` as the gradient of their value.
Training a matmul-tile kernel (linear, cosine, ...) on a problem whose weight matrix fits ``ONE_PIECE_BYTES`` skips all this: one tile over the whole
matrix, differentiated by plain autograd (``_one_tile``), as cheap as the eager formula.
Dropout masks are drawn per tile from a generator seeded once per call (from torch's global generator), so
the backward pass redraws exactly the forward's masks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from rkbs.kernels import Cosine, Kernel, Linear, softcap_error

from ._masks import MaskSpec, causal_keep

__all__ = ["chunked_attention", "attention_weights", "DEFAULT_CHUNK", "TILE_ELEMENTS", "ONE_PIECE_BYTES"]

# Tile size override (queries = keys = DEFAULT_CHUNK); None chooses the tile from the shapes. Tests set it small
# so that lengths are not multiples of it; setting it also keeps training on the tiled path (see ONE_PIECE_BYTES).
DEFAULT_CHUNK: int | None = None

# Training a kernel whose tile is one plain matmul (linear; cosine, elu, relu once their features are formed) on
# a problem whose (batch x n_queries x n_keys) weight matrix takes at most this many bytes runs in one piece
# through plain autograd, storing that matrix as the eager formula does, so it costs what the eager formula
# costs: the tiled backward recomputes the scores (7 matmuls against 6) and pays Python per tile. Measured
# (benchmarks/attention_cpu.py --suite piece, B = 1, H = 4, d = 64, float32, one thread, shared machine): at
# N = 1024 (16 MiB) fwd+bwd one piece ran 0.60x / 1.00x eager for linear / cosine, tiles 0.79x / 1.25x; at
# N = 2048 (64 MiB) one piece ran 1.01x / 1.06x, tiles 0.97x / 0.90x (a stored matrix that size is
# memory-bound). 32 MiB lies between the two; the crossover in between was not measured. Kernels with
# elementwise work per tile stay tiled (tanh fwd+bwd at N = 2048: tiles 0.72-0.83x eager, one piece
# 0.73-1.00x). Above the budget the tiled path keeps memory O(N * tile). 0 keeps every multi-tile problem tiled.
ONE_PIECE_BYTES = 32 << 20

# ... unless the causal/window band leaves the tiled path this fraction of the weight matrix or less: below the
# break-even of 6 stored-formula matmuls against 7 recomputing ones, skipping tiles wins.
_ONE_PIECE_MIN_COVER = 6 / 7

# Elements of one (batch x query block x key chunk) tile: 2^18 float32 = 1 MiB, so a tile and its in-place
# updates stay in a core's L2 cache. Measured on a 2-core CPU (B=1, H=4, N=4096, d=64, one thread): 256 x 256
# tiles run 1.9x faster than (4096 x 512) strips and 2x faster than the eager formula (benchmarks/attention_cpu.py).
TILE_ELEMENTS = 1 << 18

# exp(x) = 2^(x log2 e): torch 2.13's CPU exp2 is ~8x faster than its exp on a tile (0.04 ms against 0.3 ms
# per 2^18 float32, AVX512), which dwarfs the extra multiply; GPUs evaluate exp this way too. The relative
# error it adds is ~|x| eps, on weights exp(x) that the running maximum keeps at x <= 0.
_LOG2E = 1.0 / math.log(2.0)


def _exp_(t: torch.Tensor) -> torch.Tensor:
    return t.mul_(_LOG2E).exp2_()


def _exp(t: torch.Tensor) -> torch.Tensor:
    return torch.exp2(t * _LOG2E)


# Bounded kernels with a log-kernel gain nothing from the log path (their weights cannot overflow), and
# F.logsigmoid has a fixed ~6 ms CPU cost per call in torch 2.13, so sigmoid is evaluated directly.
_DIRECT = frozenset({"sigmoid"})


def _uses_log(kernel: Kernel) -> bool:
    return kernel.has_log_kernel and kernel.name not in _DIRECT


# The plain dot product that feature-product kernels are tiled with, once their features are formed.
_DOT = Linear(scale=1.0)


def _feature_product(kernel: Kernel, d: int) -> bool:
    """Whether ``evaluate`` is the product of the kernel's own features, at most ``d`` of them (cosine, elu, relu).

    Such kernels form their features once per call instead of once per tile (cosine's normalization and its
    backward per tile cost cosine ~20% of its fwd+bwd time), and their tiles are a plain matmul.
    """
    if not kernel.has_features or kernel.has_log_kernel:
        return False
    exact = kernel.family == "feature_map" or type(kernel).evaluate is Cosine.evaluate
    return exact and kernel.feature_dim(d) <= d


def _tile_sizes(batch_elements: int, nq: int, nk: int) -> tuple[int, int]:
    if DEFAULT_CHUNK is not None:
        return DEFAULT_CHUNK, DEFAULT_CHUNK
    if batch_elements * nq * nk <= 4 * TILE_ELEMENTS:  # small enough for one tile: no per-tile overhead
        return max(1, nq), max(1, nk)
    per_head = max(1, TILE_ELEMENTS // max(1, batch_elements))
    if nq <= 64:  # decoding: every query in one block, keys in as few chunks as the cache allows
        return max(1, nq), max(256, per_head // max(1, nq))
    side = 1 << round(math.log2(math.sqrt(per_head)))
    side = min(1024, max(64, side))
    return side, side


@dataclass(frozen=True)
class _Plan:
    kernel: Kernel
    use_log: bool
    normalize: bool
    mask: MaskSpec
    softcap: float | None
    dropout_p: float
    seed: int
    bq: int
    bk: int


def _tiles(plan: _Plan, nq: int, nk: int) -> Iterator[tuple[int, int, int, int]]:
    """Tiles ``(r0, r1, c0, c1)`` holding at least one visible (query, key) pair of the causal/window band."""
    mask = plan.mask
    for r0 in range(0, nq, plan.bq):
        r1 = min(r0 + plan.bq, nq)
        lo, hi = max(0.0, mask.lo(r0)), min(float(nk), mask.hi(r1 - 1) + 1)
        for c0 in range(int(lo), int(hi), plan.bk):
            yield r0, r1, c0, min(c0 + plan.bk, int(hi))


def _rows(t: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
    return t if t.shape[-2] == 1 else t[..., r0:r1, :]


def _tile_mask(plan: _Plan, bias, slopes, r0, r1, c0, c1, device):
    """``(extra, keep)``: the additive log-weight (mask bias + ALiBi) and the boolean keep of one tile."""
    mask = plan.mask
    extra = None if bias is None else _rows(bias, r0, r1)[..., c0:c1]
    if slopes is not None:
        shift = mask.n_keys - mask.n_queries  # ALiBi distances with queries aligned bottom-right
        rows = torch.arange(r0 + shift, r1 + shift, device=device, dtype=slopes.dtype).unsqueeze(-1)
        cols = torch.arange(c0, c1, device=device, dtype=slopes.dtype)
        alibi = (rows - cols).abs_().mul(-slopes)
        extra = alibi if extra is None else alibi.add_(extra)
    keep = None if mask.keep is None else _rows(mask.keep, r0, r1)[..., c0:c1]
    band = mask.band_keep(r0, r1, c0, c1, device)
    if band is not None:
        keep = band if keep is None else keep & band
    return extra, keep


def _kernel_part(plan: _Plan, q: torch.Tensor, k: torch.Tensor, inplace: bool) -> torch.Tensor:
    """The query/key-dependent factor of a tile: the log-kernel (``use_log``) or the kernel value; with a soft
    cap, the catalogue's ``softcap_evaluate`` (its ``softcap_target`` "log" is exactly ``use_log``)."""
    if plan.softcap is not None:
        return plan.kernel.softcap_evaluate(q, k, plan.softcap)
    return plan.kernel.log_evaluate(q, k) if plan.use_log else plan.kernel.evaluate(q, k)


def _dropout_scale(plan: _Plan, tile: int, like: torch.Tensor) -> torch.Tensor:
    gen = torch.Generator(device=like.device)
    gen.manual_seed(plan.seed + tile)
    keep = torch.empty_like(like).bernoulli_(1.0 - plan.dropout_p, generator=gen)
    return keep.div_(1.0 - plan.dropout_p)


def _finite_or_zero(t: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(t), t, torch.zeros_like(t))


def _sink_rows(sinks: torch.Tensor) -> torch.Tensor:
    return sinks.reshape(-1, 1)  # (heads, 1): broadcasts against (..., heads, n_queries)


def _forward(plan: _Plan, q, k, v, bias, sinks, slopes) -> tuple[torch.Tensor, torch.Tensor]:
    nq, nk = q.shape[-2], k.shape[-2]
    batch = q.shape[:-2]
    l = q.new_zeros((*batch, nq))
    acc = q.new_zeros((*batch, nq, v.shape[-1]))
    # the running maximum only matters for the normalizer: un-normalized weights are summed as they are (the
    # result overflows exactly when the eager formula's does)
    track_max = plan.use_log and plan.normalize
    m = torch.full_like(l, -math.inf) if track_max else None
    for tile, (r0, r1, c0, c1) in enumerate(_tiles(plan, nq, nk)):
        q_t, k_t, v_t = q[..., r0:r1, :], k[..., c0:c1, :], v[..., c0:c1, :]
        extra, keep = _tile_mask(plan, bias, slopes, r0, r1, c0, c1, q.device)
        p = _kernel_part(plan, q_t, k_t, inplace=True)
        l_t, acc_t = l[..., r0:r1], acc[..., r0:r1, :]
        if plan.use_log:
            if extra is not None:
                p.add_(extra)
            if keep is not None:
                p.masked_fill_(~keep, -math.inf)
            if track_max:
                m_t = m[..., r0:r1]
                m_new = torch.maximum(m_t, p.amax(-1))
                m_safe = _finite_or_zero(m_new)
                alpha = torch.exp(m_t - m_safe)  # 0 while the row has seen only masked keys (m = -inf)
                # (p - m) log2(e) in one pass, then 2^
                torch.add(m_safe.unsqueeze(-1).mul(-_LOG2E), p, alpha=_LOG2E, out=p).exp2_()
                l_t.mul_(alpha)
                acc_t.mul_(alpha.unsqueeze(-1))
                m_t.copy_(m_new)
            else:
                _exp_(p)
        else:
            if extra is not None:
                p.mul_(torch.exp(extra))
            if keep is not None:
                p.masked_fill_(~keep, 0.0)
        if plan.normalize:
            l_t.add_(p.sum(-1))
        if plan.dropout_p > 0.0:
            p.mul_(_dropout_scale(plan, tile, p))
        acc_t.add_(torch.matmul(p, v_t))
    m_safe = _finite_or_zero(m) if m is not None else None
    if sinks is not None:  # normalized only: exp(sink) joins the row sum (the max includes it, as in GPT-OSS)
        sink = _sink_rows(sinks).to(l.dtype)
        if m is not None:
            m_all = torch.maximum(m, sink)
            alpha = torch.exp(m - m_all)
            l.mul_(alpha).add_(torch.exp(sink - m_all))
            acc.mul_(alpha.unsqueeze(-1))
            m_safe = m_all
        else:
            l.add_(torch.exp(sink))
    lse = torch.log(l)
    if m_safe is not None:
        lse = lse + m_safe
    if plan.normalize:
        # zero row sums (every key masked, or a non-negative kernel with no overlap) give zeros, not NaN
        out = acc.div_(torch.where(l != 0, l, torch.ones_like(l)).unsqueeze(-1))
    else:
        out = acc  # lse is not defined here (the row sum was not formed); return_lse needs normalize
    return out, lse


def _one_tile(plan: _Plan, q, k, v, bias, sinks, slopes) -> tuple[torch.Tensor, torch.Tensor]:
    """The same function as one tile of ``_forward``, out of place, so that plain autograd differentiates it.

    Used for training on problems whose weight matrix fits ``ONE_PIECE_BYTES`` (see ``_in_one_piece``): storing
    it costs what the eager formula's costs and saves the backward pass its recomputation and per-tile Python.
    """
    nq, nk = q.shape[-2], k.shape[-2]
    extra, keep = _tile_mask(plan, bias, slopes, 0, nq, 0, nk, q.device)
    kp = _kernel_part(plan, q, k, inplace=False)
    sink = None if sinks is None else _sink_rows(sinks).to(q.dtype).unsqueeze(-1)  # (heads, 1, 1)
    shift = torch.zeros((), dtype=q.dtype, device=q.device)
    if plan.use_log:
        s = kp if extra is None else kp + extra
        if keep is not None:
            s = s.masked_fill(~keep, -math.inf)
        if plan.normalize:
            shift = s.detach().amax(-1, keepdim=True)
            if sink is not None:
                shift = torch.maximum(shift, sink.detach())
            shift = _finite_or_zero(shift)
            s = s - shift
        w = _exp(s)
    else:
        w = kp if extra is None else kp * torch.exp(extra)
        if keep is not None:
            w = w.masked_fill(~keep, 0.0)
    w_v = w if plan.dropout_p == 0.0 else w * _dropout_scale(plan, 0, w)
    out = torch.matmul(w_v, v)
    if not plan.normalize:
        return out, torch.full(out.shape[:-1], -math.inf, dtype=out.dtype, device=out.device)
    l = w.sum(-1, keepdim=True)
    if sink is not None:
        l = l + torch.exp(sink - shift)
    out = out / torch.where(l != 0, l, torch.ones_like(l))
    return out, (torch.log(l) + shift).squeeze(-1)


class _TiledAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, bias, sinks, slopes, plan):
        out, lse = _forward(plan, q, k, v, bias, sinks, slopes)
        ctx.plan = plan
        ctx.save_for_backward(q, k, v, bias, sinks, slopes, out, lse)
        return out, lse

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_lse):
        q, k, v, bias, sinks, slopes, out, lse = ctx.saved_tensors
        plan: _Plan = ctx.plan
        need_q, need_k, need_v, need_b, need_s, need_a = ctx.needs_input_grad[:6]
        nq, nk = q.shape[-2], k.shape[-2]
        if d_out is None:
            d_out = torch.zeros_like(out)
        # r: the row log-normalizer subtracted from the log-weights (0 un-normalized)
        r = _finite_or_zero(lse) if plan.normalize else torch.zeros_like(lse)
        d_row = None  # D - dlse, per row
        if plan.normalize:
            d_row = (d_out * out).sum(-1)
            if d_lse is not None:
                d_row = d_row - d_lse
        dq = torch.zeros_like(q) if need_q else None
        dk = torch.zeros_like(k) if need_k else None
        dv = torch.zeros_like(v) if need_v else None
        dbias = torch.zeros_like(bias) if need_b else None
        dslopes = torch.zeros_like(slopes) if need_a else None
        differentiate = need_q or need_k
        for tile, (r0, r1, c0, c1) in enumerate(_tiles(plan, nq, nk)):
            q_t, k_t, v_t = q[..., r0:r1, :], k[..., c0:c1, :], v[..., c0:c1, :]
            do_t = d_out[..., r0:r1, :]
            r_t = r[..., r0:r1].unsqueeze(-1)
            extra, keep = _tile_mask(plan, bias, slopes, r0, r1, c0, c1, q.device)
            with torch.enable_grad():
                q_g = q_t.detach().requires_grad_(need_q)
                k_g = k_t.detach().requires_grad_(need_k)
                kp = _kernel_part(plan, q_g, k_g, inplace=False)
            if plan.use_log:
                p = torch.add(r_t.mul(-_LOG2E), kp.detach(), alpha=_LOG2E)  # (kp - r) log2(e), then 2^
                if extra is not None:
                    p.add_(extra, alpha=_LOG2E)
                if keep is not None:
                    p.masked_fill_(~keep, -math.inf)
                p.exp2_()
                factor = None
            else:
                factor = None  # the tile's weights are kp * factor
                if plan.normalize or extra is not None:
                    factor = torch.exp(-r_t) if extra is None else torch.exp(extra - r_t)
                if keep is not None:
                    factor = (keep.to(kp.dtype) if factor is None else factor.masked_fill(~keep, 0.0))
                p = kp.detach() if factor is None else kp.detach() * factor
            drop = _dropout_scale(plan, tile, p) if plan.dropout_p > 0.0 else None
            if need_v:
                p_v = p if drop is None else p * drop
                dv[..., c0:c1, :].add_(torch.matmul(p_v.transpose(-1, -2), do_t))
            if not (differentiate or need_b or need_a):
                continue
            g = torch.matmul(do_t, v_t.transpose(-1, -2))
            if drop is not None:
                g.mul_(drop)
            if d_row is not None:
                g.sub_(d_row[..., r0:r1].unsqueeze(-1))
            # gradient of the log-weight (p may alias the kernel's output when it needs no factor: no in-place);
            # kernels without a log-kernel need it only for the mask bias and the ALiBi slopes
            d_s = None
            if plan.use_log or need_b or need_a:
                d_s = p.mul_(g) if plan.use_log or factor is not None else p * g
            if differentiate:
                cotangent = d_s if plan.use_log else (g if factor is None else g.mul_(factor))
                inputs = [t for t, need in ((q_g, need_q), (k_g, need_k)) if need]
                grads = dict(zip(map(id, inputs), torch.autograd.grad(kp, inputs, cotangent, allow_unused=True)))
                if need_q and grads[id(q_g)] is not None:
                    dq[..., r0:r1, :].add_(grads[id(q_g)])
                if need_k and grads[id(k_g)] is not None:
                    dk[..., c0:c1, :].add_(grads[id(k_g)])
            if need_b:
                b_t = _rows(dbias, r0, r1)[..., c0:c1]
                b_t.add_(d_s.sum_to_size(b_t.shape))
            if need_a:
                shift = plan.mask.n_keys - plan.mask.n_queries
                rows = torch.arange(r0 + shift, r1 + shift, device=q.device, dtype=d_s.dtype).unsqueeze(-1)
                dist = (rows - torch.arange(c0, c1, device=q.device, dtype=d_s.dtype)).abs_()
                dslopes.sub_((d_s * dist).sum((-1, -2), keepdim=True).sum_to_size(dslopes.shape))
        dsinks = None
        if need_s:
            p_sink = torch.exp(_sink_rows(sinks).to(lse.dtype) - lse)
            dsinks = (-(p_sink * d_row)).sum(-1).sum_to_size(sinks.shape)
        return dq, dk, dv, dbias, dsinks, dslopes, None


def chunked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel: Kernel,
    normalize: bool,
    mask: MaskSpec,
    dropout_p: float = 0.0,
    *,
    softcap: float | None = None,
    sinks: torch.Tensor | None = None,
    alibi_slopes: torch.Tensor | None = None,
    return_lse: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Kernel attention over tiles; inputs already validated, GQA heads expanded, compute dtype.

    Returns ``(*batch, n_queries, value_dim)`` (and the row log-normalizer ``(*batch, n_queries)`` with
    ``return_lse``). ``sinks`` has shape (heads,) and needs ``normalize``; ``alibi_slopes`` broadcasts against
    ``(*batch, 1, 1)``; ``softcap`` follows the catalogue's ``softcap_target`` (the exponent of the exponential
    kernels, the argument of the other dot kernels' outer function).
    """
    batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    q = q.expand(*batch, *q.shape[-2:])
    k = k.expand(*batch, *k.shape[-2:])
    v = v.expand(*batch, *v.shape[-2:])
    bq, bk = _tile_sizes(math.prod(batch), q.shape[-2], k.shape[-2])
    seed = int(torch.randint(0, 2**62, (1,)).item()) if dropout_p > 0.0 else 0
    use_log = _uses_log(kernel) if softcap is None else kernel.softcap_target == "log"
    if softcap is not None and kernel.softcap_target is None:
        raise ValueError(softcap_error(kernel))
    if not use_log and _feature_product(kernel, q.shape[-1]):
        q, k, kernel = kernel.feature_map_x(q), kernel.feature_map_y(k), _DOT
    plan = _Plan(kernel, use_log, normalize, mask, softcap, float(dropout_p), seed, bq, bk)
    inputs = (q, k, v, mask.bias, sinks, alibi_slopes)
    training = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
    if _in_one_piece(plan, q, k, training):
        out, lse = _one_tile(plan, *inputs)
    else:
        out, lse = _TiledAttention.apply(*inputs, plan)
    return (out, lse) if return_lse else out


def _in_one_piece(plan: _Plan, q: torch.Tensor, k: torch.Tensor, training: bool) -> bool:
    """Whether the call runs through ``_one_tile`` (plain autograd, weight matrix stored) instead of the tiles.

    A problem that is one tile anyway runs there with or without a gradient (the autograd Function's
    bookkeeping cost the un-normalized kernels ~1.3x the eager forward at N = 512); a larger one only when
    training a matmul-tile kernel within ``ONE_PIECE_BYTES`` (without a gradient, the cache-sized tiles beat
    the eager formula).
    """
    nq, nk = q.shape[-2], k.shape[-2]
    if plan.bq >= nq and plan.bk >= nk:  # small problems, or DEFAULT_CHUNK >= the lengths
        return True
    if not training or DEFAULT_CHUNK is not None or q.numel() == 0 or k.numel() == 0:
        return False
    if plan.use_log or type(plan.kernel).evaluate is not Linear.evaluate:
        return False
    weights = math.prod(q.shape[:-2]) * nq * nk
    if weights * q.element_size() > ONE_PIECE_BYTES:
        return False
    formed = sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in _tiles(plan, nq, nk))
    return formed >= _ONE_PIECE_MIN_COVER * nq * nk


def _block_keep(mask: MaskSpec, n_queries: int, start: int, stop: int, device) -> tuple:
    keep, bias = mask.chunk(start, stop)
    if mask.causal:
        causal = causal_keep(n_queries, start, stop, device)
        keep = causal if keep is None else keep & causal
    return keep, bias


def attention_weights(
    q: torch.Tensor, k: torch.Tensor, kernel: Kernel, normalize: bool, mask: MaskSpec
) -> torch.Tensor:
    """The full ``(*batch, n_queries, n_keys)`` weight matrix (normalized rows or raw kernel values)."""
    nq, nk = q.shape[-2], k.shape[-2]
    keep, bias = _block_keep(mask, nq, 0, nk, q.device)
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
