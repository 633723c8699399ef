"""Fused Triton kernels for kernel attention (the library's fused primitive).

``kernel_attention(q, k, v, kernel=...)`` computes ``norm(phi(s Q K^T, |Q|^2, |K|^2) [mask]) V`` for every
dot-product kernel of the catalogue (and the coordinate-wise ``exp_intersection``), normalized or not, with a
backward pass by recomputation. ``import triton_ops`` works without triton installed: triton is imported
lazily when a kernel runs. :func:`triton_ops.reference.reference_attention` is the float64 reference.
"""

from ._spec import FUSED_KERNELS
from .attention import is_available, kernel_attention

__all__ = ["FUSED_KERNELS", "is_available", "kernel_attention"]
