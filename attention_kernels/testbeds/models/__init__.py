"""Models from the seed papers; each calls attention through the kernel catalogue."""

from .encoder import KernelEncoderLayer, KernelTransformerEncoder, MaskedLanguageModel, SequenceClassifier
from .linear_regression_transformer import LinearAttentionRegressor
from .subspace_attention import MSSA, AttentionOnlyTransformer

__all__ = [
    "MSSA",
    "AttentionOnlyTransformer",
    "KernelEncoderLayer",
    "KernelTransformerEncoder",
    "SequenceClassifier",
    "MaskedLanguageModel",
    "LinearAttentionRegressor",
]
