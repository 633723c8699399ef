"""Two-sided composition: the Transformer's asymmetric kernel kappa(x, y) = base(x W_q, y W_k)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ._base import Kernel
from ._validation import as_tensor, as_tensor_pair

__all__ = ["AttentionKernel"]


def _as_map(W: Any, name: str) -> np.ndarray | torch.Tensor | None:
    if W is None or isinstance(W, torch.Tensor):
        T = W
    else:
        T = np.asarray(W)
        if T.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be a numeric matrix, got dtype {T.dtype}")
    if T is not None and T.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix of shape (input_dim, d); got shape {tuple(T.shape)}")
    return T


class AttentionKernel(Kernel):
    """``kappa(x, y) = base(x @ query_map, y @ key_map)``: a binary kernel between two domains.

    With different maps on the two sides the kernel is in general asymmetric and indefinite even when the base
    kernel is Mercer: the standard Transformer's kernel is ``AttentionKernel(EDP(), W_q, W_k)``. For a base of
    ``q.k`` only (edp, linear, polynomial, sigmoid, tanh) it is symmetric exactly when ``W_q W_k^T`` is, and
    Mercer when ``W_q W_k^T`` is moreover positive semi-definite (``symmetric``, ``positive_definite``). The two domains
    may have different dimensions; only the maps' output dimension ``d`` must agree.

    Parameters
    ----------
    base : Kernel
        A kernel of the catalogue, evaluated on the mapped points (its ``None`` defaults resolve with ``d``).
    query_map : array-like or torch.Tensor of shape (d_x, d), default=None
        Applied on the right of query-side inputs; ``None`` is the identity.
    key_map : array-like or torch.Tensor of shape (d_y, d), default=None
        Applied on the right of key-side inputs; ``None`` is the identity.

    Examples
    --------
    >>> import numpy as np
    >>> from rkbs.kernels import EDP
    >>> AttentionKernel(EDP(), np.eye(2), 2 * np.eye(2)).positive_definite   # W_q W_k^T = 2 I
    True
    >>> AttentionKernel(EDP(), np.eye(2), np.array([[1.0, 1.0], [0.0, 1.0]])).symmetric
    False
    """

    name = "attention"
    formula = "base(W_q^T x, W_k^T y)"
    cross_domain = True

    def __init__(self, base: Kernel, query_map=None, key_map=None):
        self.base = base
        self.query_map = query_map
        self.key_map = key_map
        self._check()

    def _check(self) -> tuple[Any, Any]:
        if not isinstance(self.base, Kernel) or isinstance(self.base, AttentionKernel):
            raise TypeError(f"base must be a catalogue kernel, got {type(self.base).__name__}")
        Wq, Wk = _as_map(self.query_map, "query_map"), _as_map(self.key_map, "key_map")
        if Wq is not None and Wk is not None and Wq.shape[1] != Wk.shape[1]:
            raise ValueError(
                f"query_map maps to dimension {Wq.shape[1]} but key_map to {Wk.shape[1]}; they must agree"
            )
        return Wq, Wk

    @property
    def family(self) -> str:  # type: ignore[override]
        return self.base.family

    @property
    def has_log_kernel(self) -> bool:  # type: ignore[override]
        return self.base.has_log_kernel

    @property
    def _same_maps(self) -> bool:
        Wq, Wk = self._check()
        if Wq is None or Wk is None:
            return Wq is None and Wk is None
        if type(Wq) is not type(Wk) or Wq.shape != Wk.shape:
            return False
        return bool((Wq == Wk).all())

    def _products(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(W_q W_k^T, W_q W_q^T, W_k W_k^T)`` in float64 (None when the two domains differ in dimension)."""
        Wq, Wk = self._check()
        Wq = None if Wq is None else np.asarray(torch.as_tensor(Wq).detach().cpu().double())
        Wk = None if Wk is None else np.asarray(torch.as_tensor(Wk).detach().cpu().double())
        if Wq is None and Wk is None:
            return None
        Wq = np.eye(Wk.shape[1]) if Wq is None else Wq
        Wk = np.eye(Wq.shape[1]) if Wk is None else Wk
        if Wq.shape[0] != Wk.shape[0]:
            return None
        return Wq @ Wk.T, Wq @ Wq.T, Wk @ Wk.T

    @staticmethod
    def _equal(A: np.ndarray, B: np.ndarray) -> bool:
        return bool(np.allclose(A, B, rtol=1e-10, atol=1e-12 * max(np.abs(A).max(), np.abs(B).max(), 1e-300)))

    @property
    def symmetric(self) -> bool:
        """Whether kappa(x, y) == kappa(y, x).

        A base that depends only on ``q.k`` sees ``x^T W_q W_k^T y``: symmetric exactly when ``W_q W_k^T`` is
        symmetric. A base that also reads the norms (rbf, laplacian, cosine) needs in addition
        ``W_q W_q^T = W_k W_k^T``. Other bases are symmetric when the maps are equal.
        """
        if not self.base.symmetric:
            return False
        if self._same_maps:
            return True
        prods = self._products()
        if prods is None or self.base.depends_on == "points":
            return False
        M, Gq, Gk = prods
        return self._equal(M, M.T) and (self.base.depends_on == "dot" or self._equal(Gq, Gk))

    @property
    def positive_definite(self) -> bool:
        """Whether the kernel is Mercer: a Mercer base on one map, ``x -> x L`` with ``W_q W_k^T = L L^T``.

        For a base of ``q.k`` only, that is ``W_q W_k^T`` symmetric positive semi-definite; for rbf, laplacian
        and cosine, ``W_q W_q^T = W_k W_k^T = W_q W_k^T``.
        """
        if not self.base.positive_definite or not self.symmetric:
            return False
        if self._same_maps:
            return True
        M, Gq, _ = self._products()
        if self.base.depends_on == "dot_and_norms":
            return self._equal(M, Gq)
        eig = np.linalg.eigvalsh((M + M.T) / 2)
        return bool(eig.min() >= -1e-10 * max(np.abs(eig).max(), 1e-300))

    @property
    def positive_valued(self) -> bool:
        return self.base.positive_valued

    @property
    def has_features(self) -> bool:
        return self.base.has_features

    @property
    def exact_features(self) -> bool:
        return self.base.exact_features

    def _out_dim(self, d: int) -> int:
        Wq, Wk = self._check()
        if Wq is not None:
            return Wq.shape[1]
        return Wk.shape[1] if Wk is not None else d

    def feature_dim(self, d: int) -> int | float:
        return self.base.feature_dim(self._out_dim(d))

    def resolved_params(self, d: int) -> dict[str, Any]:
        return self.base.resolved_params(self._out_dim(d))

    def _map(self, x: torch.Tensor, W: Any) -> torch.Tensor:
        if W is None:
            return x
        return x @ torch.as_tensor(W, dtype=x.dtype, device=x.device)

    def map_x(self, x: torch.Tensor) -> torch.Tensor:
        """Query-side map ``x @ query_map`` (tensor level)."""
        return self._map(x, self._check()[0])

    def map_y(self, y: torch.Tensor) -> torch.Tensor:
        """Key-side map ``y @ key_map`` (tensor level)."""
        return self._map(y, self._check()[1])

    def evaluate(self, x, y):
        return self.base.evaluate(self.map_x(x), self.map_y(y))

    def log_evaluate(self, x, y):
        return self.base.log_evaluate(self.map_x(x), self.map_y(y))

    @property
    def softcap_target(self) -> str | None:  # type: ignore[override]
        return self.base.softcap_target

    def softcap_evaluate(self, x, y, softcap):
        return self.base.softcap_evaluate(self.map_x(x), self.map_y(y), softcap)

    def feature_map_x(self, x):
        return self.base.feature_map_x(self.map_x(x))

    def feature_map_y(self, y):
        return self.base.feature_map_y(self.map_y(y))

    def _check_side(self, T: torch.Tensor, W: Any, name: str, map_name: str) -> None:
        if W is not None and T.shape[-1] != W.shape[0]:
            raise ValueError(
                f"{name} has {T.shape[-1]} features but {map_name} expects {W.shape[0]} (its number of rows)"
            )

    def _check_dims(self, X, Y):
        Wq, Wk = self._check()
        self._check_side(X, Wq, "X", "query_map")
        self._check_side(Y, Wk, "Y", "key_map")
        if self._out_dim(X.shape[-1]) != (Wk.shape[1] if Wk is not None else Y.shape[-1]):
            raise ValueError(
                f"the mapped dimensions differ: X maps to {self._out_dim(X.shape[-1])} features, Y to "
                f"{Wk.shape[1] if Wk is not None else Y.shape[-1]}"
            )

    def _check_feature_input(self, T, name):
        Wq, Wk = self._check()
        self._check_side(T, Wq if name == "X" else Wk, name, "query_map" if name == "X" else "key_map")

    def __call__(self, X, Y=None):
        if Y is None and not self._same_maps:
            # one point set on both sides of an asymmetric kernel: still a valid (non-symmetric) Gram matrix
            Xt, back = as_tensor(X, "X")
            self._check_dims(Xt, Xt)
            return back(self.evaluate(Xt, Xt))
        return super().__call__(X, Y)

    def log_kernel(self, X, Y=None):
        if self.has_log_kernel:
            Xt, Yt, back = as_tensor_pair(X, Y)
            self._check_dims(Xt, Yt)
            return back(self.log_evaluate(Xt, Yt))
        return super().log_kernel(X, Y)
