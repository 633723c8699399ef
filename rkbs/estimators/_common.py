"""Shared pieces of the estimators: kernel and device resolution, parameter checks, the coefficient fit."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch
from sklearn.base import clone

from ..kernels import Kernel, get_kernel
from ..operators import check_normalizable
from ..distributed import current_group
from ..rows import as_row_source
from ..solvers import RepresenterProblem, check_penalty, choose_solver, select_centers, solve_representer

__all__ = ["resolve_kernel", "resolve_device", "as_device_tensor", "check_scalar_param", "fit_representer",
           "prepare_representer", "predict_expansion"]


def resolve_kernel(kernel: Any, kernel_params: dict | None, name: str = "kernel") -> Kernel:
    """A fresh kernel object from a catalogue name or a Kernel object plus ``kernel_params``."""
    if kernel_params is not None and not isinstance(kernel_params, dict):
        raise TypeError(f"{name}_params must be a dict or None, got {type(kernel_params).__name__}")
    if not isinstance(kernel, (str, Kernel)):
        raise TypeError(f"{name} must be a catalogue name (str) or a rkbs.kernels.Kernel object, got "
                        f"{type(kernel).__name__}")
    k = get_kernel(kernel, **(kernel_params or {}))
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


def prepare_representer(est: Any, X: np.ndarray, Z: np.ndarray) -> RepresenterProblem:
    """Check ``est``'s parameters and build the problem for f(x) = K(x, C) @ beta with targets ``Z`` (n, t).

    Sets ``kernel_``, ``centers_``, ``penalty_``, ``solver_`` on ``est``.
    """
    kernel = resolve_kernel(est.kernel, est.kernel_params)
    device, dtype = resolve_device(est.device)
    alpha = check_scalar_param("alpha", est.alpha, minimum=0.0)
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
    if square and group is not None:
        raise ValueError("inside rkbs.distributed.data_parallel, set n_components (Nystroem landmarks) below "
                         f"the total number of rows ({n}): the exact solvers need every row in one process")
    centers = X if square else select_centers(
        as_row_source(X), n_components, random_state=est.random_state, group=group, device=device,
        method=getattr(est, "landmarks", "uniform"), kernel=kernel, alpha=alpha)
    kernel(X[:2], centers[:2])  # the catalogue's checks: domain dimensions, maps
    penalty = check_penalty(kernel, est.penalty, normalize=bool(est.normalize), square=square,
                            spectrum=est.spectrum)
    solver = choose_solver(est.solver, penalty, kernel, m=centers.shape[0], normalize=bool(est.normalize),
                           spectrum=est.spectrum, n=n)
    Xt = as_device_tensor(X, device, dtype)
    problem = RepresenterProblem(
        kernel=kernel, X=Xt, C=Xt if square else as_device_tensor(centers, device, dtype), Z=Z,
        alpha=alpha, square=square, normalize=bool(est.normalize), tol=tol, max_iter=max_iter,
        block_size=block_size,
    )
    est.kernel_, est.centers_ = kernel, np.array(centers, dtype=np.float64)
    est.penalty_, est.solver_ = penalty, solver
    return problem


def fit_representer(est: Any, X: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """Fit f(x) = K(x, C) @ beta: sets ``kernel_``, ``centers_``, ``penalty_``, ``solver_``, ``n_iter_`` on
    ``est`` and returns beta of shape (n_centers, n_targets)."""
    problem = prepare_representer(est, X, Z)
    beta, info = solve_representer(problem, est.penalty_, est.solver_, est.spectrum)
    est.n_iter_ = info["n_iter"]
    return beta


def predict_expansion(est: Any, X: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``K(X, centers_) @ coef`` (row-normalized with ``est.normalize``) as float64 numpy, block by block."""
    from ..operators import kernel_matmul

    device, dtype = resolve_device(est.device)
    out = kernel_matmul(
        est.kernel_,
        as_device_tensor(X, device, dtype),
        as_device_tensor(est.centers_, device, dtype),
        as_device_tensor(coef.reshape(coef.shape[0], -1), device, dtype),
        normalize=bool(est.normalize),
        block_size=est.block_size,
    )
    return out.double().cpu().numpy()
