"""Representer-theorem solvers: f(x) = sum_j beta_j kappa(x, c_j) fitted by regularized least squares.

=============  ===================================================  ==========================================
penalty        problem                                              solvers
=============  ===================================================  ==========================================
``"coef"``     min |K beta - z|^2 + alpha |beta|^2 (any kernel)     ``cholesky`` (normal eq.), ``lstsq``
                                                                    (SVD), ``lsqr`` (matrix-free)
``"rkhs"``     min |K beta - z|^2 + alpha beta^T K beta (Mercer;    ``cholesky``, ``cg``, ``eigh`` (with
               indefinite symmetric with ``spectrum``)              ``spectrum`` clip / flip / shift)
``"krein"``    (K + alpha I) beta = z, K indefinite or asymmetric   ``lu``, ``gmres``, ``minres`` (symmetric)
=============  ===================================================  ==========================================

With Nystroem landmarks the centers are m < n training points and K is the n x m matrix K(X, C); the
``"coef"`` and ``"rkhs"`` problems then also have ``falkon`` (preconditioned CG, O(n m) per iteration, see
:mod:`rkbs.solvers.nystroem`), and ``cholesky`` / ``cg`` for ``"rkhs"`` run through the same module.
"""

from __future__ import annotations

import contextlib

import numpy as np
from sklearn.utils import check_random_state
from threadpoolctl import threadpool_limits

from ..kernels import Kernel
from ._linalg import ConditioningWarning
from ._problem import RepresenterProblem
from ..distributed import current_group
from ..rows import as_row_source
from .coef import solve_coef
from .nystroem import LANDMARK_METHODS, NystroemProblem, select_centers, solve_nystroem
from .square import SPECTRUM_TRANSFORMS, solve_square, transform_spectrum

__all__ = [
    "PENALTIES",
    "SOLVERS",
    "ConditioningWarning",
    "LANDMARK_METHODS",
    "NystroemProblem",
    "RepresenterProblem",
    "SPECTRUM_TRANSFORMS",
    "check_penalty",
    "choose_solver",
    "select_centers",
    "select_landmarks",
    "solve_nystroem",
    "solve_representer",
    "transform_spectrum",
]

PENALTIES = ("coef", "rkhs", "krein")
SOLVERS = {
    "coef": ("cholesky", "lstsq", "lsqr", "falkon"),
    "rkhs": ("cholesky", "cg", "eigh", "falkon"),
    "krein": ("lu", "gmres", "minres"),
}
_KRYLOV = ("lsqr", "cg", "gmres", "minres")
# Largest number of centers for which "auto" picks a dense factorization (an m x m float64 matrix: ~1.2 GB).
DENSE_MAX = 12_000
# Nystroem: "auto" accumulates the normal equations (n m^2 flops) up to this cost, then picks falkon (CG, about
# 2 n m flops and n m kernel evaluations per iteration); 2e11 is a few seconds on two cores.
NYSTROEM_DIRECT_MAX = 2e11
# Solvers that run on the rows of every process inside rkbs.distributed.data_parallel.
DISTRIBUTED = ("cholesky", "cg", "falkon")


def check_penalty(kernel: Kernel, penalty: str, *, normalize: bool, square: bool, spectrum: str | None) -> str:
    """Resolve ``penalty="auto"`` and refuse combinations that are not well posed, with a pointer to one that is."""
    if penalty == "auto":
        mercer = kernel.positive_definite and kernel.symmetric and not normalize
        penalty = "rkhs" if (mercer or (spectrum is not None and kernel.symmetric and not normalize)) else "coef"
    if penalty not in PENALTIES:
        raise ValueError(f"penalty must be 'auto' or one of {PENALTIES}, got {penalty!r}")
    if spectrum is not None:
        if spectrum not in SPECTRUM_TRANSFORMS:
            raise ValueError(f"spectrum must be one of {SPECTRUM_TRANSFORMS} or None, got {spectrum!r}")
        if penalty != "rkhs":
            raise ValueError(f"spectrum={spectrum!r} makes the Gram matrix positive semi-definite for "
                             f"penalty='rkhs'; it does not apply to penalty={penalty!r}")
        if not square:
            raise ValueError(f"spectrum={spectrum!r} needs the full Gram matrix; set n_components=None")
    if penalty == "rkhs":
        if normalize:
            raise ValueError("penalty='rkhs' needs a symmetric Gram matrix, but normalize=True makes it "
                             "row-stochastic and asymmetric; use penalty='coef'")
        if not kernel.symmetric:
            raise ValueError(f"penalty='rkhs' needs a symmetric (Mercer) kernel, but kernel {kernel.name!r} "
                             "is asymmetric; use penalty='coef' (any kernel) or penalty='krein'")
        if not kernel.positive_definite and spectrum is None:
            raise ValueError(f"penalty='rkhs' needs a positive definite (Mercer) kernel, but kernel "
                             f"{kernel.name!r} is indefinite; use penalty='coef' (any kernel), "
                             "penalty='krein' (solver 'lu' / 'gmres' / 'minres'), or spectrum='clip' / "
                             "'flip' / 'shift'")
    if penalty == "krein" and not square and not (kernel.symmetric and not normalize):
        raise ValueError("penalty='krein' with Nystroem landmarks needs a symmetric kernel and "
                         "normalize=False; use penalty='coef' or n_components=None")
    return penalty


def choose_solver(solver: str, penalty: str, kernel: Kernel, *, m: int, normalize: bool,
                  spectrum: str | None, n: int | None = None) -> str:
    """Resolve ``solver="auto"`` by the number of centers (and rows ``n`` with Nystroem landmarks, ``n > m``)
    and the kernel's metadata; check the pairing."""
    valid = SOLVERS[penalty]
    nystroem = n is not None and n > m
    if solver == "auto":
        if spectrum is not None:
            return "eigh"
        if nystroem and penalty != "krein" and (m > DENSE_MAX or float(n) * m * m > NYSTROEM_DIRECT_MAX):
            return "falkon"
        if m <= DENSE_MAX:
            return valid[0]
        if penalty == "krein":
            return "minres" if kernel.symmetric and not normalize else "gmres"
        return valid[2] if penalty == "coef" else "cg"
    if solver not in valid:
        raise ValueError(f"solver={solver!r} does not apply to penalty={penalty!r}; choose 'auto' or one of "
                         f"{valid}")
    if solver == "falkon" and not nystroem:
        raise ValueError("solver='falkon' solves the Nystroem landmark system: set n_components below the "
                         "number of samples")
    if solver == "minres" and not (kernel.symmetric and not normalize):
        raise ValueError("solver='minres' needs a symmetric system; use solver='gmres' or 'lu' for an "
                         "asymmetric kernel or normalize=True")
    if spectrum is not None and solver != "eigh":
        raise ValueError(f"spectrum={spectrum!r} is solved in the eigenbasis: use solver='eigh' or 'auto'")
    return solver


def select_landmarks(n_samples: int, n_components: int, random_state=None) -> np.ndarray:
    """Indices of ``n_components`` Nystroem landmarks drawn uniformly without replacement (sorted)."""
    rng = check_random_state(random_state)
    return np.sort(rng.choice(n_samples, size=min(n_components, n_samples), replace=False))


def nystroem_problem(p: RepresenterProblem, penalty: str, group=None) -> NystroemProblem:
    """The in-memory problem ``p`` (Nystroem landmarks) as a :class:`NystroemProblem` over its rows."""
    return NystroemProblem(kernel=p.kernel, rows=as_row_source(p.X, p.Z), C=p.C.double(), alpha=p.alpha,
                           penalty=penalty, dtype=p.X.dtype, normalize=p.normalize, tol=p.tol,
                           max_iter=p.max_iter, block_size=p.block_size, group=group,
                           sample_weight=p.sample_weight, random_state=p.random_state)


def solve_representer(p: RepresenterProblem, penalty: str, solver: str,
                      spectrum: str | None = None) -> tuple[np.ndarray, dict]:
    """Solve a resolved problem: coefficients of shape (m, n_targets) and an info dict (``n_iter``)."""
    group = current_group()
    if group is not None and (p.square or penalty == "krein" or solver not in DISTRIBUTED):
        raise ValueError(f"inside rkbs.distributed.data_parallel, fits need Nystroem landmarks (n_components) "
                         f"and penalty='rkhs' or 'coef' with solver in {DISTRIBUTED}; got penalty={penalty!r}, "
                         f"solver={solver!r}, n_components={'None' if p.square else p.m}")
    if not p.square and (solver == "falkon" or (penalty == "rkhs" and solver in ("cholesky", "cg")) or group):
        return solve_nystroem(nystroem_problem(p, penalty, group), "cholesky" if solver == "cholesky" else "falkon")
    # Krylov iterations alternate torch kernel products with numpy vector updates; numpy's OpenBLAS threads,
    # woken for those small updates, fight torch's threads for the cores (CG measured 1.8x slower on 2 cores)
    limit = threadpool_limits(limits=1, user_api="blas") if solver in _KRYLOV else contextlib.nullcontext()
    with limit:
        if penalty == "coef":
            return solve_coef(p, solver)
        return solve_square(p, solver, spectrum)
