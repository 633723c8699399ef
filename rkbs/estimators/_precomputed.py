"""``kernel="precomputed"`` for the unary estimators: a kernel matrix as the kernel.

The solvers evaluate kernels on points. A precomputed kernel is turned into one by an encoding: a point is its
row of kernel values against the n training points, followed by one slot holding its training index (-1 for a
new point), and kappa(a, b) = a[index of b]. Training inputs and centers are then (K, arange(n)), so
K(X, C) = K and the RKHS penalty's K(C, C) = K[L, L] for any landmark subset L, and new points
(K(x, X_train), -1) give K(x, C). No copy of the n x n matrix beyond one column.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils.validation import check_array

from ..kernels import Kernel

__all__ = ["PrecomputedKernel", "is_precomputed", "precomputed_train", "precomputed_test"]

_SYMMETRY_RTOL = 1e-10
_PSD_RTOL = 1e-8


def is_precomputed(kernel) -> bool:
    return isinstance(kernel, str) and kernel == "precomputed"


class PrecomputedKernel(Kernel):
    """The kernel of a precomputed training matrix, on the encoded points described in the module docstring.

    Parameters
    ----------
    n_train : int
        Number of training points (columns of every kernel matrix).
    symmetric : bool
    positive_definite : bool
    positive_valued : bool
        Properties of the training matrix, which decide the penalties that apply.
    """

    name = "precomputed"
    family = "precomputed"
    formula = "K[x, y]"

    def __init__(self, n_train: int = 1, symmetric: bool = False, positive_definite: bool = False,
                 positive_valued: bool = False):
        self.n_train = n_train
        self._flags = (bool(symmetric), bool(positive_definite), bool(positive_valued))

    def get_params(self, deep=True):  # the flags shadow the base class's metadata properties
        return {"n_train": self.n_train, "symmetric": self._flags[0], "positive_definite": self._flags[1],
                "positive_valued": self._flags[2]}

    @property
    def symmetric(self) -> bool:
        return self._flags[0]

    @property
    def positive_definite(self) -> bool:
        return self._flags[1]

    @property
    def positive_valued(self) -> bool:
        return self._flags[2]

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        idx = y[..., self.n_train].round().long()
        if bool((idx < 0).any()):
            raise ValueError("a precomputed kernel's centers must be training points")
        return x[..., : self.n_train].index_select(-1, idx)

    def _check_dims(self, X, Y):
        if X.shape[-1] != self.n_train + 1 or Y.shape[-1] != self.n_train + 1:
            raise ValueError(f"encoded precomputed points have {self.n_train + 1} columns")


def precomputed_train(K) -> tuple[np.ndarray, PrecomputedKernel]:
    """Encode a square training kernel matrix (n, n); returns the encoded points and the kernel."""
    K = check_array(K, dtype=np.float64, input_name="X")
    n = K.shape[0]
    if K.shape[1] != n:
        raise ValueError(f"with kernel='precomputed', X must be the square training kernel matrix (n, n); got "
                         f"shape {K.shape}")
    scale = max(float(np.abs(K).max()), 1e-300)
    symmetric = bool(np.allclose(K, K.T, rtol=0, atol=_SYMMETRY_RTOL * scale))
    psd = False
    if symmetric:
        lam = np.linalg.eigvalsh((K + K.T) / 2)
        psd = bool(lam[0] >= -_PSD_RTOL * max(lam[-1], 1e-300))
    kernel = PrecomputedKernel(n, symmetric=symmetric, positive_definite=psd, positive_valued=bool((K >= 0).all()))
    return np.hstack([K, np.arange(n, dtype=np.float64)[:, None]]), kernel


def precomputed_test(K, n_train: int) -> np.ndarray:
    """Encode the kernel between new points and the training points (n_new, n_train)."""
    K = np.asarray(K, dtype=np.float64)
    if K.ndim != 2 or K.shape[1] != n_train:
        raise ValueError(f"with kernel='precomputed', X must be the kernel between the new points and the "
                         f"{n_train} training points, of shape (n_samples, {n_train}); got shape {K.shape}")
    return np.hstack([K, np.full((K.shape[0], 1), -1.0)])
