"""Models from the seed papers; each calls attention through the kernel catalogue."""

from .subspace_attention import MSSA, AttentionOnlyTransformer

__all__ = ["MSSA", "AttentionOnlyTransformer"]
