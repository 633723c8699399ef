"""scikit-learn estimators on the kernel catalogue: unary and binary (cross-domain) kernel machines."""

from .binary_learner import BinaryKernelLearner
from ._learned_kernel import LearnedAttentionKernel
from .binary_ridge import BinaryKernelRidge
from .classifier import RKBSClassifier
from .regressor import RKBSRegressor

__all__ = ["RKBSRegressor", "RKBSClassifier", "BinaryKernelRidge", "BinaryKernelLearner", "LearnedAttentionKernel"]
