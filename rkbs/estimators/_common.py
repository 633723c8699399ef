"""Shared pieces of the estimators: kernel and device resolution, parameter checks, the coefficient fit."""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import numpy as np
import scipy.sparse
import torch
from sklearn.base import clone
from sklearn.utils.validation import _check_sample_weight

from ..kernels import Kernel
from ..kernels import resolve_kernel as _resolve
from ..operators import check_normalizable
from ..distributed import current_group
from ..rows import as_row_source
from ..solvers import (RepresenterProblem, check_penalty, choose_solver, select_centers, select_landmarks,
                       solve_representer)
from ._precomputed import is_precomputed, precomputed_test, precomputed_train

from ._sparse import fit_sparse_embedding

__all__ = ["accepts_sparse", "resolve_kernel", "resolve_device", "as_device_tensor", "check_scalar_param",
           "check_sample_weight", "fit_representer", "prepare_representer", "predict_expansion", "output_dtype"]


def resolve_kernel(kernel: Any, kernel_params: dict | None, name: str = "kernel") -> Kernel:
    """A fresh kernel object (estimators never share a kernel with their parameters) from ``kernel`` and the
    estimator's ``kernel_params`` dict, through the catalogue's :func:`rkbs.kernels.resolve_kernel`."""
    if kernel_params is not None and not isinstance(kernel_params, dict):
        raise TypeError(f"{name}_params must be a dict or None, got {type(kernel_params).__name__}")
    k = _resolve(kernel, name=name, **(kernel_params or {}))
    return clone(k) if k is kernel else k


def resolve_device(device: Any) -> tuple[torch.device, torch.dtype]:
    """The torch device of a ``device`` parameter and its computation dtype (float64 on CPU, float32 on CUDA)."""
    try:
        dev = torch.device(device)
    except (TypeError, RuntimeError) as exc:
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or a torch.device, got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available; use device='cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be a CPU or CUDA device, got {device!r}")
    return dev, (torch.float64 if dev.type == "cpu" else torch.float32)


def as_device_tensor(A: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Copy an array onto the device (a copy: the input may be a read-only memory map)."""
    return torch.tensor(np.asarray(A), dtype=dtype, device=device)


def check_scalar_param(name: str, value: Any, *, minimum: float, integer: bool = False,
                       allow_none: bool = False, strict: bool = False) -> Any:
    """A real (or integral) parameter >= minimum (> minimum with ``strict``), or None when allowed."""
    if value is None and allow_none:
        return None
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be {'an integer' if integer else 'a real number'}, got {value!r}")
    if not np.isfinite(value) or value < minimum or (strict and value == minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value!r}")
    return int(value) if integer else float(value)


def accepts_sparse(est: Any) -> bool:
    """The ``input_tags.sparse`` of a unary estimator: sparse X is taken for the symmetric dot-family kernels."""
    if is_precomputed(est.kernel):
        return False
    try:
        kernel = resolve_kernel(est.kernel, est.kernel_params)
    except (TypeError, ValueError):  # an invalid kernel parameter is reported by fit, not by the tags
        return False
    return kernel.family == "dot" and kernel.symmetric


def check_sample_weight(sample_weight: Any, X: np.ndarray) -> np.ndarray | None:
    """Validated non-negative float64 weights of shape (n_samples,), or None for None or all ones."""
    if sample_weight is None:
        return None
    sw = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
    if not sw.sum() > 0:
        raise ValueError("sample_weight sums to 0: at least one sample needs a positive weight")
    return None if np.all(sw == 1.0) else sw


def _check_alpha(alpha: Any, n_targets: int) -> float | np.ndarray:
    """A scalar alpha >= 0, or an array of one alpha >= 0 per target (as KernelRidge's)."""
    if np.ndim(alpha) == 0:
        return check_scalar_param("alpha", alpha, minimum=0.0)
    a = np.asarray(alpha, dtype=np.float64)
    if a.ndim != 1 or a.shape[0] != n_targets:
        raise ValueError(f"alpha must be a number or an array of shape (n_targets,) = ({n_targets},), got "
                         f"shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"alpha must be >= 0 and finite, got {alpha!r}")
    return a


def prepare_representer(est: Any, X: np.ndarray, Z: np.ndarray,
                        sample_weight: np.ndarray | None = None) -> RepresenterProblem:
    """Check ``est``'s parameters and build the problem for f(x) = K(x, C) @ beta with targets ``Z`` (n, t).

    Sets ``kernel_``, ``centers_``, ``penalty_``, ``solver_`` on ``est``. ``problem.alpha`` is a float, or an
    array of one alpha per target (:func:`fit_representer` solves one problem per distinct value).
    """
    if is_precomputed(est.kernel):
        if est.kernel_params is not None:
            raise ValueError("kernel='precomputed' takes no kernel_params")
        X, kernel = precomputed_train(X)
    else:
        kernel = resolve_kernel(est.kernel, est.kernel_params)
    device, dtype = resolve_device(est.device)
    if X.dtype == np.float32:  # float32 in, kernel products in float32 (the solves accumulate in float64)
        dtype = torch.float32
    alpha = _check_alpha(est.alpha, Z.shape[1])
    tol = check_scalar_param("tol", est.tol, minimum=0.0, strict=True)
    max_iter = check_scalar_param("max_iter", est.max_iter, minimum=1, integer=True, allow_none=True)
    n_components = check_scalar_param("n_components", est.n_components, minimum=1, integer=True,
                                       allow_none=True)
    block_size = check_scalar_param("block_size", est.block_size, minimum=1, integer=True, allow_none=True)
    if not isinstance(est.normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be a bool, got {est.normalize!r}")
    if est.normalize:
        check_normalizable(kernel)
    group = current_group()  # inside rkbs.distributed.data_parallel: X is this process's shard of the rows
    n = X.shape[0] if group is None else sum(group.shard_sizes(X.shape[0], device))
    square = n_components is None or n_components >= n
    landmarks = getattr(est, "landmarks", "uniform")
    if square and group is not None:
        raise ValueError("inside rkbs.distributed.data_parallel, set n_components (Nystroem landmarks) below "
                         f"the total number of rows ({n}): the exact solvers need every row in one process")
    if square:
        centers = X
    elif group is None and landmarks == "uniform":  # among the samples that count (all without weights)
        pool = np.arange(n) if sample_weight is None else np.flatnonzero(sample_weight > 0)
        centers = X[pool[select_landmarks(pool.shape[0], n_components, est.random_state)]]
    else:
        if scipy.sparse.issparse(X) or sample_weight is not None:
            raise ValueError("landmarks='leverage' and rkbs.distributed.data_parallel take dense X without "
                             "sample_weight; use landmarks='uniform' outside data_parallel")
        centers = select_centers(as_row_source(X), n_components, random_state=est.random_state, group=group,
                                 device=device, method=landmarks, kernel=kernel, alpha=float(np.max(alpha)))
    sparse_input = scipy.sparse.issparse(X)
    if sparse_input:  # dense coordinates with the same inner products (rkbs.estimators._sparse)
        X_sparse, centers_sparse = X, centers
        kernel, X, emb = fit_sparse_embedding(kernel, X_sparse, centers_sparse)
        centers = X if square else emb.centers_embedded
    kernel(X[:2], centers[:2])  # the catalogue's checks: domain dimensions, maps
    penalty = check_penalty(kernel, est.penalty, normalize=bool(est.normalize), square=square,
                            spectrum=est.spectrum)
    solver = choose_solver(est.solver, penalty, kernel, m=centers.shape[0], normalize=bool(est.normalize),
                           spectrum=est.spectrum, n=n)
    if sparse_input and X_sparse.dtype == np.float32:
        dtype = torch.float32
    Xt = as_device_tensor(X, device, dtype)
    problem = RepresenterProblem(
        kernel=kernel, X=Xt, C=Xt if square else as_device_tensor(centers, device, dtype), Z=Z,
        alpha=alpha, square=square, normalize=bool(est.normalize), tol=tol, max_iter=max_iter,
        block_size=block_size, sample_weight=sample_weight, random_state=est.random_state,
    )
    if sparse_input:
        est.kernel_, est.centers_, est._sparse_embedding = kernel, centers_sparse.copy(), emb
    else:
        est.kernel_, est.centers_ = kernel, np.array(centers, dtype=X.dtype)
        est.__dict__.pop("_sparse_embedding", None)
    est.penalty_, est.solver_ = penalty, solver
    return problem


def _solve(est: Any, problem: RepresenterProblem) -> tuple[np.ndarray, int | None]:
    """Solve for every target, one problem per distinct alpha; the most iterations of any solve."""
    alpha = np.asarray(problem.alpha, dtype=np.float64)
    if alpha.ndim == 0:
        beta, info = solve_representer(problem, est.penalty_, est.solver_, est.spectrum)
        return beta, info["n_iter"]
    beta, n_iter = np.empty((problem.m, problem.Z.shape[1])), None
    for a in np.unique(alpha):
        cols = np.flatnonzero(alpha == a)
        sub = dataclasses.replace(problem, Z=problem.Z[:, cols], alpha=float(a))
        beta[:, cols], info = solve_representer(sub, est.penalty_, est.solver_, est.spectrum)
        if info["n_iter"] is not None:
            n_iter = max(n_iter or 0, info["n_iter"])
    return beta, n_iter


def fit_representer(est: Any, X: np.ndarray, Z: np.ndarray, sample_weight: np.ndarray | None = None,
                    fit_intercept: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Fit f(x) = K(x, C) @ beta + b by weighted penalized least squares.

    Sets ``kernel_``, ``centers_``, ``penalty_``, ``solver_``, ``n_iter_`` on ``est`` (``n_iter_`` counts
    Krylov iterations, the most over targets; a direct factorization counts as 1). Returns beta of shape
    (n_centers, n_targets) and the intercepts b of shape (n_targets,) (zeros unless ``fit_intercept``).

    The intercept is unpenalized: for fixed b the coefficients are beta(Z - b) = beta(Z) - b beta(1), a linear
    map of the targets, so one solve with the extra target 1 gives both, and b makes the weighted residual
    sum to zero: b = sum_i w_i (z_i - f_Z(x_i)) / sum_i w_i (1 - f_1(x_i)). This holds for every penalty,
    solver and Nystroem, as the partial derivative in b vanishes at the optimum.
    """
    if not isinstance(fit_intercept, (bool, np.bool_)):
        raise TypeError(f"fit_intercept must be a bool, got {fit_intercept!r}")
    t = Z.shape[1]
    if fit_intercept:
        Z = np.hstack([Z, np.ones((Z.shape[0], 1))])
    problem = prepare_representer(est, X, Z[:, :t], sample_weight)
    if fit_intercept:
        alpha = problem.alpha
        if np.ndim(alpha) == 0:
            problem = dataclasses.replace(problem, Z=Z)
            beta, n_iter = _solve(est, problem)
            ones = beta[:, [t] * t]
        else:  # the constant target once per distinct alpha
            beta, n_iter = _solve(est, dataclasses.replace(problem, Z=np.hstack([Z[:, :t], np.ones((len(Z), t))]),
                                                           alpha=np.concatenate([alpha, alpha])))
            ones = beta[:, t:]
        from ..operators import kernel_matmul

        F = kernel_matmul(problem.kernel, problem.X, problem.C,
                          torch.as_tensor(np.hstack([beta[:, :t], ones]), dtype=problem.X.dtype,
                                          device=problem.X.device),
                          normalize=problem.normalize, block_size=problem.block_size).double().cpu().numpy()
        w = np.ones(Z.shape[0]) if sample_weight is None else sample_weight
        num = w @ (Z[:, :t] - F[:, :t])
        den = w @ (1.0 - F[:, t:])
        # den ~ 0: the model already fits constants at no cost, so the intercept is not identifiable; keep 0
        b = np.divide(num, den, out=np.zeros(t), where=np.abs(den) > 1e-12 * w.sum())
        beta = beta[:, :t] - ones * b[None, :]
    else:
        beta, n_iter = _solve(est, problem)
        b = np.zeros(t)
    est.n_iter_ = 1 if n_iter is None else max(int(n_iter), 1)
    return beta, b


def output_dtype(X: np.ndarray, est: Any) -> np.dtype:
    """float32 when the model was fitted on float32 and is applied to float32 input, else float64."""
    return np.result_type(X.dtype, est.centers_.dtype, np.float32)


def predict_expansion(est: Any, X: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``K(X, centers_) @ coef`` (row-normalized with ``est.normalize``) as numpy, block by block; float32 when
    both ``X`` and the fitted centers are float32 (as KernelRidge), else float64. ``X`` may be sparse."""
    from ..operators import kernel_matmul

    device, dtype = resolve_device(est.device)
    out_dtype = output_dtype(X, est)
    if out_dtype == np.float32:
        dtype = torch.float32
    if is_precomputed(est.kernel):
        X = precomputed_test(X, est.kernel_.n_train)
    emb = getattr(est, "_sparse_embedding", None)
    if emb is not None:  # fitted on sparse X: every input through the same embedding
        X, C = emb.transform(X), emb.centers_embedded
    else:
        # a model fitted on dense X has dense centers; a sparse X meets them one block of rows at a time
        C = est.centers_
    block = max(1, (1 << 21) // max(1, X.shape[1])) if scipy.sparse.issparse(X) else X.shape[0]
    parts = []
    for i in range(0, X.shape[0], max(block, 1)):
        Xi = X[i : i + block]
        Xi = Xi.toarray() if scipy.sparse.issparse(Xi) else Xi
        parts.append(kernel_matmul(
            est.kernel_,
            as_device_tensor(Xi, device, dtype),
            as_device_tensor(C, device, dtype),
            as_device_tensor(coef.reshape(coef.shape[0], -1), device, dtype),
            normalize=bool(est.normalize),
            block_size=est.block_size,
        ).double().cpu().numpy())
    out = np.concatenate(parts) if parts else np.empty((0, coef.reshape(coef.shape[0], -1).shape[1]))
    return out.astype(out_dtype, copy=False)
