"""rkbs: kernel machines with asymmetric, indefinite (non-Mercer) kernels between two domains.

- :mod:`rkbs.kernels`: the kernel catalogue shared with the attention layers and the fused Triton kernels.
- :mod:`rkbs.operators`: matrix-free kernel operators ``K(X, C) @ B`` computed block by block.
- :mod:`rkbs.solvers`: representer-theorem solvers (coefficient, RKHS and Krein penalties; Nystroem landmarks).
- :mod:`rkbs.estimators`: the scikit-learn estimators.
- :mod:`rkbs.model_selection`: cross-validation splitters for pairwise data (the four settings).
- :mod:`rkbs.datasets`: pairwise data sets (a synthetic generator, the nuclear-receptor drug-target data).
"""

from . import datasets, estimators, kernels, model_selection, operators, solvers
from .estimators import BinaryKernelLearner, BinaryKernelRidge, RKBSClassifier, RKBSRegressor
from .kernels import AttentionKernel, get_kernel, list_kernels
from .operators import KernelOperator
from .solvers import ConditioningWarning

__all__ = [
    "RKBSRegressor",
    "RKBSClassifier",
    "BinaryKernelRidge",
    "BinaryKernelLearner",
    "KernelOperator",
    "ConditioningWarning",
    "AttentionKernel",
    "get_kernel",
    "list_kernels",
    "datasets",
    "model_selection",
    "estimators",
    "kernels",
    "operators",
    "solvers",
]
__version__ = "0.1.0"
