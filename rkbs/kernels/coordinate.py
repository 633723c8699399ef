"""Coordinate-wise family: kernels that need every coordinate pair, not just q.k and the norms."""

from __future__ import annotations

from typing import Any

import torch
from triton_ops import Epilogue, KernelSpec

from ._base import Kernel
from ._validation import check_positive, default_scale

__all__ = ["ExpIntersection"]

# Caps the (rows x keys x dim) broadcast of one block at this many elements.
_BLOCK_ELEMENTS = 1 << 22


class ExpIntersection(Kernel):
    """Exponentiated intersection kernel ``exp(s * sum_l min(q_l, k_l))``.

    Mercer on all of R^d: shifting every coordinate by a constant a multiplies the kernel by the positive
    constant exp(-s a d), and on non-negative inputs min is a Mercer kernel whose exponential is one too.

    Parameters
    ----------
    scale : float, default=None
        ``None`` means ``1 / sqrt(d)``.
    """

    name = "exp_intersection"
    family = "coordinate"
    formula = "exp(s sum_l min(q_l, k_l))"
    has_log_kernel = True
    positive_definite = True
    positive_valued = True

    def __init__(self, scale: float | None = None):
        self.scale = scale
        check_positive("scale", scale)

    def resolved_params(self, d: int) -> dict[str, Any]:
        return {"scale": default_scale(check_positive("scale", self.scale), d)}

    def _fused_spec(self, d: int) -> KernelSpec:
        return self._spec(Epilogue.EXP_INTERSECTION, c0=self.resolved_params(d)["scale"])

    def log_evaluate(self, x, y):
        scale = self.resolved_params(x.shape[-1])["scale"]
        n, m, d = x.shape[-2], y.shape[-2], x.shape[-1]
        rows = max(1, _BLOCK_ELEMENTS // max(1, m * d))
        blocks = [
            torch.minimum(x[..., i : i + rows, None, :], y[..., None, :, :]).sum(-1)
            for i in range(0, n, rows)
        ]
        return scale * torch.cat(blocks, dim=-2)

    def evaluate(self, x, y):
        return torch.exp(self.log_evaluate(x, y))
