"""Out-of-core fits and predictions: the estimators on a numpy memory map or a :class:`rkbs.rows.RowChunks`.

The rows are read one block at a time by the Nystroem solvers (:mod:`rkbs.solvers.nystroem`), so memory stays
O(m^2 + block * m) beside the data, which stays on disk. A float32 memory map or float32 chunks are computed in
float32 (every sum in float64).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..distributed import current_group
from ..operators import _rows_per_block, check_normalizable, kernel_block
from ..rows import RowSource, as_row_source
from ..solvers import NystroemProblem, check_penalty, choose_solver, select_centers, solve_nystroem
from ._common import check_scalar_param, resolve_device, resolve_kernel

__all__ = ["is_streamed", "fit_streamed", "predict_streamed"]


def is_streamed(X: Any, est: Any, sample_weight: Any = None) -> bool:
    """Whether ``X`` is read block by block instead of copied to memory: a RowChunks, or a numpy memory map
    for a Nystroem model (``n_components`` below its rows) without sample weights, intercept or precomputed
    kernel (the other memory maps are loaded as before)."""
    if isinstance(X, RowSource):
        return True
    return (isinstance(X, np.memmap) and X.ndim == 2 and isinstance(est.n_components, int)
            and est.n_components < X.shape[0] and sample_weight is None
            and not getattr(est, "fit_intercept", False) and est.kernel != "precomputed"
            and "_sparse_embedding" not in est.__dict__)


def _rows(X: Any, y: Any) -> RowSource:
    if isinstance(X, RowSource):
        if y is not None:
            raise ValueError("y must be None when X is a RowChunks: its chunks carry the targets")
        return X
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must be a non-empty 2-d array, got shape {X.shape}")
    if X.dtype.kind not in "fiu":
        raise ValueError(f"X must be numeric, got dtype {X.dtype}")
    if y is None:
        return as_row_source(X)
    Z = np.asarray(y, dtype=np.float64)
    Z = Z.reshape(Z.shape[0], -1) if Z.ndim else Z
    if Z.ndim != 2 or Z.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has shape {np.shape(y)}")
    if not np.isfinite(Z).all():
        raise ValueError("y contains NaN or infinity")
    return as_row_source(X, Z)


def _dtype(rows: RowSource, device: torch.device, default: torch.dtype) -> torch.dtype:
    X, _ = next(iter(rows.chunks()))
    return torch.float32 if device.type == "cpu" and X.dtype in (np.float32, torch.float32) else default


def fit_streamed(est: Any, X: Any, y: Any, sample_weight: Any = None) -> np.ndarray:
    """Fit ``est`` (Nystroem landmarks) on rows read block by block; returns beta of shape (m, n_targets).

    Sets ``kernel_``, ``centers_``, ``penalty_``, ``solver_``, ``n_iter_`` and ``n_features_in_``.
    """
    if sample_weight is not None or getattr(est, "fit_intercept", False) or est.kernel == "precomputed":
        raise ValueError("fitting on a memory map or RowChunks takes no sample_weight, fit_intercept=False and "
                         "a kernel other than 'precomputed'; load the data to use them")
    rows = _rows(X, y)
    if rows.n_targets == 0:
        raise ValueError("no targets: pass y, or (X, y) pairs from the RowChunks factory")
    kernel = resolve_kernel(est.kernel, est.kernel_params)
    device, default_dtype = resolve_device(est.device)
    alpha = check_scalar_param("alpha", est.alpha, minimum=0.0)
    tol = check_scalar_param("tol", est.tol, minimum=0.0, strict=True)
    max_iter = check_scalar_param("max_iter", est.max_iter, minimum=1, integer=True, allow_none=True)
    m = check_scalar_param("n_components", est.n_components, minimum=1, integer=True, allow_none=True)
    block_size = check_scalar_param("block_size", est.block_size, minimum=1, integer=True, allow_none=True)
    if not isinstance(est.normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be a bool, got {est.normalize!r}")
    group = current_group()
    n = rows.n if group is None else sum(group.shard_sizes(rows.n, device))
    if m is None or m >= n:
        raise ValueError(f"fitting on a memory map or RowChunks reads the rows block by block and needs Nystroem "
                         f"landmarks: set n_components below the number of rows ({n})")
    if est.normalize:
        check_normalizable(kernel)
    centers = select_centers(rows, m, random_state=est.random_state, group=group, device=device,
                             method=getattr(est, "landmarks", "uniform"), kernel=kernel, alpha=alpha)
    kernel(centers[:2], centers[:2])  # the catalogue's checks: domain dimensions, maps
    penalty = check_penalty(kernel, est.penalty, normalize=bool(est.normalize), square=False,
                            spectrum=est.spectrum)
    solver = choose_solver(est.solver, penalty, kernel, m=m, normalize=bool(est.normalize),
                           spectrum=est.spectrum, n=n)
    if penalty == "krein" or solver not in ("cholesky", "cg", "falkon"):
        raise ValueError(f"fitting on a memory map or RowChunks supports penalty='rkhs' or 'coef' with solver "
                         f"'cholesky', 'cg' (rkhs) or 'falkon'; got penalty={penalty!r}, solver={solver!r}")
    problem = NystroemProblem(
        kernel=kernel, rows=rows, C=torch.tensor(centers, dtype=torch.float64, device=device), alpha=alpha,
        penalty=penalty, dtype=_dtype(rows, device, default_dtype), normalize=bool(est.normalize), tol=tol,
        max_iter=max_iter, block_size=block_size, group=group, random_state=est.random_state)
    beta, info = solve_nystroem(problem, "cholesky" if solver == "cholesky" else "falkon")
    est.kernel_, est.centers_, est.penalty_, est.solver_ = kernel, centers, penalty, solver
    est.n_iter_ = 1 if info["n_iter"] is None else max(int(info["n_iter"]), 1)
    est.n_features_in_ = rows.n_features
    return beta


def predict_streamed(est: Any, X: Any, coef: np.ndarray) -> np.ndarray:
    """``K(X, centers_) @ coef`` (row-normalized with ``normalize``) for rows read block by block, as float64
    numpy of shape (n, n_targets)."""
    rows = _rows(X, None) if not isinstance(X, RowSource) else X
    if rows.n_features != est.n_features_in_:
        raise ValueError(f"X has {rows.n_features} features, but the model was fitted with {est.n_features_in_}")
    device, default_dtype = resolve_device(est.device)
    dtype = _dtype(rows, device, default_dtype)
    C = torch.tensor(est.centers_, dtype=dtype, device=device)
    B = torch.tensor(coef.reshape(coef.shape[0], -1), dtype=dtype, device=device)
    out = np.empty((rows.n, B.shape[1]))
    for start, Xb, _ in rows.blocks(_rows_per_block(C.shape[0], est.block_size), device, dtype, False):
        Kb = kernel_block(est.kernel_, Xb, C, bool(est.normalize))
        out[start : start + Xb.shape[0]] = (Kb @ B).double().cpu().numpy()
    return out
