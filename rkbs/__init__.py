"""rkbs: kernel machines with asymmetric, indefinite (non-Mercer) kernels between two domains.

The kernel catalogue lives in :mod:`rkbs.kernels`.
"""

from . import kernels
from .kernels import AttentionKernel, get_kernel, list_kernels

__all__ = ["kernels", "get_kernel", "list_kernels", "AttentionKernel"]
__version__ = "0.1.0"
