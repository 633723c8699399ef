"""The fitting problem a representer-theorem solver receives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator

from ..kernels import Kernel
from ..operators import KernelOperator

__all__ = ["RepresenterProblem"]


@dataclass
class RepresenterProblem:
    """``f(x) = K(x, C) @ beta`` fitted to targets ``Z`` at inputs ``X``.

    Attributes
    ----------
    kernel : Kernel
    X : torch.Tensor of shape (n, d_x)
        Training inputs (query side), on the computation device.
    C : torch.Tensor of shape (m, d_y)
        Centers: ``X`` itself (``square=True``) or Nystroem landmarks.
    Z : numpy.ndarray of shape (n, n_targets)
        Float64 targets.
    alpha : float
        Regularization strength (>= 0).
    square : bool
        Whether the centers are the training inputs (the Gram matrix is square).
    normalize : bool
        Row-normalized (attention) design matrix ``K / K.sum(1)``.
    tol : float
        Relative tolerance of the iterative solvers.
    max_iter : int or None
        Iteration cap of the iterative solvers (``None``: scipy's default).
    block_size : int or None
        Rows per block of the kernel operators.
    sample_weight : numpy.ndarray of shape (n,) or None
        Non-negative weights of the training rows (None: all ones); see :mod:`rkbs.solvers._weighting`.
    random_state : int, RandomState instance or None
        Draws the rows of the falkon preconditioner's sketch (:mod:`rkbs.solvers.nystroem`).
    """

    kernel: Kernel
    X: torch.Tensor
    C: torch.Tensor
    Z: np.ndarray
    alpha: float
    square: bool
    normalize: bool = False
    tol: float = 1e-8
    max_iter: int | None = None
    block_size: int | None = None
    sample_weight: np.ndarray | None = None
    random_state: Any = None

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def m(self) -> int:
        return self.C.shape[0]

    def torch_Z(self) -> torch.Tensor:
        """The targets as a float64 tensor on the computation device."""
        return torch.tensor(self.Z, dtype=torch.float64, device=self.X.device)  # a copy: Z may be read-only

    def design(self) -> KernelOperator:
        """``A = K(X, C)`` as a matrix-free operator."""
        return KernelOperator(self.kernel, self.X, self.C, normalize=self.normalize, block_size=self.block_size)

    def center_gram_operator(self) -> LinearOperator:
        """``K(C, C)`` as a matrix-free operator (the RKHS penalty's matrix)."""
        return KernelOperator(self.kernel, self.C, self.C, block_size=self.block_size)
