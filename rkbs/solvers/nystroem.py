"""Nystroem landmark solvers for large n: direct normal equations and Falkon-style preconditioned CG.

With m landmarks C and A = K(X, C) (n x m, never formed), the two penalties are

- ``"rkhs"``: (A^T A + alpha K_mm) beta = A^T Z, scikit-learn's ``Nystroem`` features + ``Ridge``;
- ``"coef"``: (A^T A + alpha I) beta = A^T Z, for any kernel (asymmetric, indefinite, ``normalize=True``).

Both are solved from passes over the rows, one block of ``block_size`` rows at a time (memory
O(m^2 + block * m)), so the rows can be a numpy memory map or a chunk iterable (:mod:`rkbs.rows`), and the
passes are all-reduced across processes inside :func:`rkbs.distributed.data_parallel`.

``solver="cholesky"`` accumulates A^T A in one pass (O(n m^2) work). The rkhs system is solved, as
scikit-learn's ``Nystroem`` does, in the range of K_mm: beta = W w with W = U_r diag(lam_r^{-1/2}) over the
eigenvalues of K_mm above m * eps * lam_max (a pseudo-inverse), so repeated or near-duplicate landmarks, which
make K_mm and the system in beta singular for every alpha, never fail.

``solver="falkon"`` is conjugate gradients on the same systems with O(n m) work per iteration (Rudi, Carratino
and Rosasco, "FALKON", NeurIPS 2017), preconditioned by the same system on a uniform sketch of n_s rows:
A^T A ~ (n / n_s) S^T S with S = K(X_s, C) the design rows of the sketch, and the preconditioner is
((n / n_s) S^T S + alpha P)^{-1} (P = K_mm for rkhs, in the W coordinates above; I for coef), factored once in
float64 (O(n_s m^2)). Falkon's own preconditioner is the case X_s = C (n_s = m, S = K_mm). That sketch is
accurate only where the ridge dominates the landmarks' sampling error, alpha / n >~ 1 / m: at the small alpha
that fits smooth targets best it is not (n = 10^5, m = 1,000, alpha = 1e-2: the preconditioned system's
condition number is 3.5e3 and CG still misses the direct solution by 4% in prediction after 40 iterations),
while n_s = 10 m rows give a condition number of 7.7 and 3e-4 in 10 iterations. Kernel blocks are computed in
the rows' dtype (float32 on request), every sum and the CG recurrences in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.utils import check_random_state

from ..distributed import ProcessGroup
from ..kernels import Kernel
from ..operators import _checked_product, _rows_per_block, kernel_block
from ..rows import RowSource
from ._linalg import cholesky_solve, warn_condition, warn_not_converged

__all__ = ["NystroemProblem", "LANDMARK_METHODS", "select_centers", "solve_nystroem"]

LANDMARK_METHODS = ("uniform", "leverage")
# Candidates per landmark whose approximate leverage scores are computed (the pool is drawn uniformly).
_LEVERAGE_POOL = 3
_HINT = "Increase alpha, or use fewer landmarks (n_components)."
# Rows of the preconditioner's sketch per landmark (capped at n): n_s = 4 m / 10 m / 25 m gave preconditioned
# condition numbers 26 / 7.7 / 3.5 at n = 10^5, m = 1,000, alpha = 1e-2, for CG's ~15 / 10 / 7 iterations;
# each m rows cost about m^3 flops (a fraction of a pass over the rows at n >> m).
SKETCH_PER_LANDMARK = 10


@dataclass
class NystroemProblem:
    """``f(x) = K(x, C) @ beta`` with landmarks ``C`` fitted to the rows of ``rows``.

    Attributes
    ----------
    kernel : Kernel
    rows : RowSource
        This process's rows and targets.
    C : torch.Tensor of shape (m, d)
        Landmarks, float64 on the computation device (the kernel blocks are cast to ``dtype``).
    alpha : float
    penalty : {"rkhs", "coef"}
    dtype : torch.dtype
        Dtype of the kernel blocks (float32 or float64).
    normalize : bool
    tol : float
    max_iter : int or None
        ``None``: 100 iterations (each is a pass over the rows).
    block_size : int or None
    group : ProcessGroup or None
        All-reduce every sum over rows across this group.
    sample_weight : numpy.ndarray of shape (rows.n,) or None
        Weights of this process's rows: the rows of A and Z are scaled by sqrt(w) (the landmarks keep the
        unweighted penalty, as in :mod:`rkbs.solvers._weighting`).
    random_state : int, RandomState instance or None
        Draws the rows of the falkon preconditioner's sketch.
    sketch_size : int or None
        Rows of the falkon preconditioner's sketch (``None``: 10 m, at most the number of rows).
    """

    kernel: Kernel
    rows: RowSource
    C: torch.Tensor
    alpha: float
    penalty: str
    dtype: torch.dtype = torch.float64
    normalize: bool = False
    tol: float = 1e-8
    max_iter: int | None = None
    block_size: int | None = None
    group: ProcessGroup | None = None
    sample_weight: np.ndarray | None = None
    random_state: Any = None
    sketch_size: int | None = None

    @property
    def m(self) -> int:
        return self.C.shape[0]

    @property
    def device(self) -> torch.device:
        return self.C.device

    def n_total(self) -> float:
        """Rows over all processes (the sum of the weights with sample_weight)."""
        if self.sample_weight is not None:
            w = torch.tensor([float(np.sum(self.sample_weight))], dtype=torch.float64, device=self.device)
            return float(self.reduce(w)[0])
        if self.group is None:
            return self.rows.n
        return sum(self.group.shard_sizes(self.rows.n, self.device))

    def reduce(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.group is None else self.group.all_reduce(t)

    def _blocks(self, with_targets: bool):
        # default blocks of ~512K kernel entries: they stay in cache between K @ V and K^T (K V) (measured
        # 1.7 ns per float32 entry for 256-1,024 rows against 4.9 ns for 4,096 rows, m = 2,000, one core)
        # (CPU); a GPU wants blocks of ~16M entries to fill it
        per_block = (1 << 24) if self.device.type == "cuda" else (1 << 19)
        rows = _rows_per_block(self.m, self.block_size) if self.block_size else max(1, per_block // self.m)
        Cd = self.C.to(self.dtype)
        r = None if self.sample_weight is None else torch.as_tensor(np.sqrt(self.sample_weight), device=self.device)
        for start, Xb, Zb in self.rows.blocks(rows, self.device, self.dtype, with_targets):
            Kb = kernel_block(self.kernel, Xb, Cd, self.normalize, check=False)
            if r is not None:
                rb = r[start : start + Xb.shape[0], None]
                Kb, Zb = Kb * rb.to(self.dtype), None if Zb is None else Zb * rb
            yield Kb, Zb

    def normal_product(self, V: torch.Tensor) -> torch.Tensor:
        """``A^T (A V)`` summed over every process's rows (one pass)."""
        out = torch.zeros(V.shape, dtype=torch.float64, device=self.device)
        Vd = V.to(self.dtype)
        for Kb, _ in self._blocks(False):
            out += (Kb.T @ (Kb @ Vd)).double()
        return self.reduce(_checked_product(out, self.kernel))

    def rhs(self) -> torch.Tensor:
        """``A^T Z`` (one pass)."""
        out = torch.zeros((self.m, self.rows.n_targets), dtype=torch.float64, device=self.device)
        for Kb, Zb in self._blocks(True):
            out += (Kb.T @ Zb.to(self.dtype)).double()
        return self.reduce(_checked_product(out, self.kernel))

    def normal_equations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A^T A, A^T Z)`` in float64 (one pass, O(n m^2) work)."""
        AtA = torch.zeros((self.m, self.m), dtype=torch.float64, device=self.device)
        AtZ = torch.zeros((self.m, self.rows.n_targets), dtype=torch.float64, device=self.device)
        for Kb, Zb in self._blocks(True):
            Kb = Kb.double()
            AtA += Kb.T @ Kb
            AtZ += Kb.T @ Zb
        return self.reduce(_checked_product(AtA, self.kernel)), self.reduce(AtZ)

    def landmark_gram(self) -> torch.Tensor:
        """K_mm = K(C, C) in float64 (the rkhs penalty's matrix)."""
        return kernel_block(self.kernel, self.C, self.C)

    def sketch_gram(self, Xs: torch.Tensor) -> torch.Tensor:
        """``S^T S`` in float64 for the design rows ``S = K(Xs, C)`` of the rows ``Xs`` (all on this process)."""
        Cd = self.C.to(self.dtype)
        out = torch.zeros((self.m, self.m), dtype=torch.float64, device=self.device)
        step = max(1, (1 << 22) // self.m)
        for i in range(0, Xs.shape[0], step):
            Sb = kernel_block(self.kernel, Xs[i : i + step].to(self.dtype), Cd, self.normalize, check=False)
            out += Sb.double().T @ Sb.double()
        return _checked_product(out, self.kernel)


# ---------------------------------------------------------------------------------------------- landmarks
def _gather_rows(rows: RowSource, global_idx: np.ndarray, group: ProcessGroup | None,
                 device: torch.device) -> np.ndarray:
    """The rows at sorted global indices of the union of the shards, identical on every process."""
    if group is None:
        return rows.take(global_idx)
    sizes = group.shard_sizes(rows.n, device)
    lo = sum(sizes[: group.rank])
    mine = (global_idx >= lo) & (global_idx < lo + rows.n)
    out = torch.zeros((len(global_idx), rows.n_features), dtype=torch.float64, device=device)
    out[torch.as_tensor(np.flatnonzero(mine), device=device)] = torch.as_tensor(
        rows.take(global_idx[mine] - lo), device=device)
    return group.all_reduce(out).cpu().numpy()


def _common_indices(idx: np.ndarray, group: ProcessGroup | None, device: torch.device) -> np.ndarray:
    """Rank 0's draw on every process (``random_state=None`` draws differently on each)."""
    if group is None:
        return idx
    return group.broadcast(torch.as_tensor(idx, dtype=torch.int64, device=device)).cpu().numpy()


def _leverage_scores(kernel: Kernel, P: torch.Tensor, D: torch.Tensor, lam: float) -> np.ndarray:
    """Approximate ridge leverage scores of the points ``P`` from a uniform dictionary ``D``:
    (k(x, x) - k(x, D) (K_DD + lam I)^{-1} k(D, x)) / lam, clipped at 0 (Rudi et al., "On fast leverage score
    sampling and optimal learning", NeurIPS 2018, with uniform dictionary weights)."""
    K_DD = kernel_block(kernel, D, D)
    K_DD.diagonal().add_(lam)
    L = torch.linalg.cholesky(K_DD)
    out = np.empty(P.shape[0])
    step = max(1, (1 << 20) // max(D.shape[0], 1))
    for i in range(0, P.shape[0], step):
        Pb = P[i : i + step]
        diag = torch.stack([kernel_block(kernel, p[None], p[None])[0, 0] for p in Pb])
        Y = torch.linalg.solve_triangular(L, kernel_block(kernel, D, Pb), upper=False)
        out[i : i + step] = ((diag - (Y * Y).sum(0)) / lam).clamp_min(0.0).cpu().numpy()
    return out


def select_centers(rows: RowSource, n_components: int, *, random_state=None, method: str = "uniform",
                   kernel: Kernel | None = None, alpha: float = 1.0, group: ProcessGroup | None = None,
                   device: torch.device | str = "cpu") -> np.ndarray:
    """Nystroem landmarks drawn from the rows (of every process in ``group``), as a float64 array.

    Parameters
    ----------
    rows : RowSource
    n_components : int
        Number of landmarks m (at most the number of rows).
    random_state : int, RandomState instance or None
    method : {"uniform", "leverage"}
        ``"uniform"``: without replacement, exactly :func:`rkbs.solvers.select_landmarks` on the concatenated
        rows. ``"leverage"``: a uniform pool of 3 m rows is scored by approximate ridge leverage scores at
        ``alpha`` (needs a symmetric positive definite ``kernel``) and m of them are drawn proportionally.
    kernel : Kernel, default=None
        Needed for ``method="leverage"``.
    alpha : float, default=1.0
        Ridge parameter of the leverage scores (the estimator's alpha).
    group : ProcessGroup, default=None
    device : torch.device or str, default="cpu"

    Returns
    -------
    numpy.ndarray of shape (m, n_features)
    """
    from . import select_landmarks

    if method not in LANDMARK_METHODS:
        raise ValueError(f"landmarks must be one of {LANDMARK_METHODS}, got {method!r}")
    device = torch.device(device)
    n = rows.n if group is None else sum(group.shard_sizes(rows.n, device))
    rng = check_random_state(random_state)
    if method == "uniform" or n_components >= n:
        idx = _common_indices(select_landmarks(n, n_components, rng), group, device)
        return _gather_rows(rows, idx, group, device)
    if kernel is None or not (kernel.symmetric and kernel.positive_definite):
        raise ValueError("landmarks='leverage' scores rows by ridge leverage, which needs a symmetric positive "
                         "definite (Mercer) kernel; use landmarks='uniform'")
    pool_idx = _common_indices(select_landmarks(n, _LEVERAGE_POOL * n_components, rng), group, device)
    P = torch.as_tensor(_gather_rows(rows, pool_idx, group, device), device=device)
    D = P[torch.as_tensor(np.sort(rng.choice(P.shape[0], n_components, replace=False)), device=device)]
    lam = max(alpha * n_components / n, 1e-10 * float(kernel_block(kernel, D[:1], D[:1])[0, 0]))
    scores = _leverage_scores(kernel, P, D, lam)
    scores = np.maximum(scores, scores.max() * 1e-6 if scores.max() > 0 else 1.0)
    chosen = np.sort(rng.choice(P.shape[0], n_components, replace=False, p=scores / scores.sum()))
    chosen = _common_indices(chosen, group, device)
    return P[torch.as_tensor(chosen, device=device)].cpu().numpy()


# ------------------------------------------------------------------------------------------------- solvers
def _range_basis(Kmm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``W = U_r diag(lam_r^{-1/2})`` over the eigenvalues of K_mm above m * eps * lam_max, and ``lam_r``."""
    lam, U = torch.linalg.eigh(Kmm)
    keep = lam > lam.max().clamp_min(0.0) * Kmm.shape[0] * torch.finfo(torch.float64).eps
    if not bool(keep.any()):
        raise ValueError("the landmark Gram matrix K_mm is zero: the kernel vanishes on the landmarks")
    return U[:, keep] / lam[keep].sqrt(), lam[keep]


def _spd_solve(M: torch.Tensor, B: torch.Tensor, what: str) -> torch.Tensor:
    """``M^{-1} B`` for symmetric positive semi-definite ``M``: Cholesky, else its pseudo-inverse by eigh."""
    try:
        return torch.as_tensor(cholesky_solve(M.cpu().numpy().copy(), B.cpu().numpy(), what, _HINT),
                               device=M.device)
    except ValueError:
        mu, Q = torch.linalg.eigh(M)
        cut = mu.max().clamp_min(0.0) * M.shape[0] * torch.finfo(torch.float64).eps
        if float(mu.max()) <= 0:
            raise ValueError(f"{what} is zero; {_HINT}") from None
        warn_condition(math.inf, f"{what} (Cholesky failed; solved by its pseudo-inverse)", _HINT)
        inv = torch.where(mu > cut, 1.0 / mu, torch.zeros_like(mu))
        return Q @ (inv[:, None] * (Q.T @ B))


def _direct(p: NystroemProblem) -> tuple[torch.Tensor, dict]:
    AtA, AtZ = p.normal_equations()
    what = ("the Nystroem system K_nm^T K_nm + alpha K_mm" if p.penalty == "rkhs"
            else "the normal equations K^T K + alpha I")
    if p.penalty == "coef":
        M = AtA.clone()
        M.diagonal().add_(p.alpha)
        return _spd_solve(M, AtZ, what), {"n_iter": None}
    # Solved in the range of K_mm, as scikit-learn's Nystroem + Ridge: (W^T A^T A W + alpha I) w = W^T A^T Z,
    # beta = W w. Repeated landmarks make K_mm (and the system in beta) singular for every alpha; in W's
    # coordinates the system is well posed, and its condition number is that of the ridge problem.
    W, _ = _range_basis(p.landmark_gram())
    G = W.T @ AtA @ W
    G.diagonal().add_(p.alpha)
    return W @ _spd_solve(G, W.T @ AtZ, what + " in the range of K_mm"), {"n_iter": None}


def _pcg(op: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor,
         precond: Callable[[torch.Tensor], torch.Tensor], tol: float,
         max_iter: int) -> tuple[torch.Tensor, int, float]:
    """Preconditioned CG for every column of ``b`` at once (one ``op`` call per iteration); returns the
    solution, the iterations and the largest recursive relative residual."""
    x = torch.zeros_like(b)
    r = b.clone()
    b_norm = b.norm(dim=0)
    done = b_norm == 0
    z = precond(r)
    d = z.clone()
    rz = (r * z).sum(0)
    it = 0
    while it < max_iter and not bool(done.all()):
        Hd = op(d)
        it += 1
        dHd = (d * Hd).sum(0)
        a = torch.where(done | (dHd <= 0), torch.zeros_like(rz), rz / torch.where(dHd > 0, dHd, 1.0))
        x += a * d
        r -= a * Hd
        done = done | (r.norm(dim=0) <= tol * b_norm) | (dHd <= 0)
        z = precond(r)
        rz_new = (r * z).sum(0)
        d = z + torch.where(done, torch.zeros_like(rz), rz_new / torch.where(rz != 0, rz, 1.0)) * d
        rz = rz_new
    return x, it, float((r.norm(dim=0) / b_norm.clamp_min(1e-300)).max())


def _sketch_factor(p: NystroemProblem, to_range: torch.Tensor | None) -> torch.Tensor:
    """Lower Cholesky factor of the preconditioner (n / n_s) S^T S + alpha I (in the W coordinates
    ``to_range`` for rkhs) from n_s uniform rows, drawn identically on every process of the group."""
    n_s = p.sketch_size if p.sketch_size is not None else SKETCH_PER_LANDMARK * p.m
    Xs = torch.as_tensor(select_centers(p.rows, n_s, random_state=p.random_state, group=p.group,
                                        device=p.device), device=p.device)
    G = p.sketch_gram(Xs) * (p.n_total() / Xs.shape[0])
    if to_range is not None:
        G = to_range.T @ G @ to_range
    G.diagonal().add_(p.alpha)
    # alpha = 0 leaves G singular where the sketch is: a jitter of eps * m * max(diag) and up keeps it factorable
    jitter = float(G.diagonal().max()) * p.m * torch.finfo(torch.float64).eps
    for _ in range(20):  # the jitter reaches max(diag) within ~13 steps
        L, info = torch.linalg.cholesky_ex(G)
        if int(info) == 0 and bool(torch.isfinite(L).all()):
            return L
        if not jitter > 0 or not math.isfinite(jitter):
            break
        G.diagonal().add_(jitter)
        jitter *= 10
    raise ValueError(f"the falkon preconditioner is not positive definite (its largest diagonal entry is "
                     f"{float(G.diagonal().max()):.3g}); {_HINT}")


def _falkon(p: NystroemProblem) -> tuple[torch.Tensor, dict]:
    if p.penalty == "rkhs":
        W, _ = _range_basis(p.landmark_gram())
        to_beta, from_beta = (lambda u: W @ u), (lambda v: W.T @ v)
        L = _sketch_factor(p, W)
    else:
        to_beta = from_beta = (lambda u: u)
        L = _sketch_factor(p, None)

    def precond(r):
        y = torch.linalg.solve_triangular(L, r, upper=False)
        return torch.linalg.solve_triangular(L.T, y, upper=True)

    def op(u):
        return from_beta(p.normal_product(to_beta(u))) + p.alpha * u

    b = from_beta(p.rhs())
    max_iter = 100 if p.max_iter is None else p.max_iter
    u, n_iter, res = _pcg(op, b, precond, p.tol, max_iter)
    if res <= p.tol:
        # confirmed by the true residual (one more pass): the recursive one drifts from it, by float32 round-off
        # in particular
        res = float(((op(u) - b).norm(dim=0) / b.norm(dim=0).clamp_min(1e-300)).max())
    if not math.isfinite(res) or res > 10 * p.tol:
        warn_not_converged("falkon", n_iter, res)
    return to_beta(u), {"n_iter": n_iter}


def solve_nystroem(p: NystroemProblem, solver: str) -> tuple[np.ndarray, dict]:
    """Coefficients ``beta`` of shape (m, n_targets) (float64 numpy) and an info dict (``n_iter``).

    Parameters
    ----------
    p : NystroemProblem
    solver : {"cholesky", "falkon"}
        Direct normal equations (O(n m^2)) or preconditioned CG (O(n m) per iteration).
    """
    if p.penalty not in ("rkhs", "coef"):
        raise ValueError(f"the Nystroem solvers handle penalty='rkhs' and 'coef', got {p.penalty!r}")
    if p.rows.n_targets == 0:
        raise ValueError("the rows carry no targets (y)")
    if solver == "cholesky":
        beta, info = _direct(p)
    elif solver == "falkon":
        beta, info = _falkon(p)
    else:
        raise ValueError(f"solver must be 'cholesky' or 'falkon' for the Nystroem solvers, got {solver!r}")
    return beta.cpu().numpy(), info
