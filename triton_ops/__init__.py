"""Fused Triton kernels for kernel attention (the library's fused primitive).

``kernel_attention(query, key, value, attn_mask, spec=...)`` computes
``norm(phi(s Q K^T, |Q|^2, |K|^2) [mask]) V`` for every dot-product kernel of the catalogue (and the
coordinate-wise ``exp_intersection``), normalized or not, with a backward pass by recomputation. The kernel comes
as a :class:`KernelSpec` built by the catalogue (``rkbs.kernels.get_kernel(...).fused_spec(head_dim)``):
``triton_ops`` knows epilogue ids and constants only, never kernel names or defaults. ``import triton_ops``
works without triton installed: triton is imported lazily when a kernel runs.
:func:`triton_ops.reference.reference_attention` is the float64 reference.
"""

from ._features import check_cu_seqlens
from ._interpreter import interpreting
from ._spec import Epilogue, KernelSpec, check_normalize
from .attention import is_available, kernel_attention

__all__ = ["Epilogue", "KernelSpec", "check_cu_seqlens", "check_normalize", "interpreting", "is_available",
           "kernel_attention"]
