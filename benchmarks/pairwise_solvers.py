"""The solvers of a partially observed pair grid: iterations, time and error against the exact dual.

``BinaryKernelRidge`` fits responses observed on some pairs of a grid by a Krylov solver (LSQR in the two-sided
mode, preconditioned in the SVD basis of the cross-domain Gram matrix K with Jacobi scaling; CG with the vec
trick in Kronecker mode) or exactly through the dual (``solver="cholesky"``). This benchmark runs each of them,
and the two-sided LSQR without the preconditioner (the solver before it, re-implemented here as the baseline),
on random grids with a fraction of the pairs observed, for cross-domain kernels ``AttentionKernel(base, W_q,
W_k)`` with Gaussian maps scaled by 1/sqrt(d) (``rbf`` and ``edp`` bases) and unscaled (``rbf``), and for a
Kronecker pair of RBF kernels, over alphas from 0.1 to 1e-5. The error is the largest difference of the fitted
responses K C K from the Cholesky solution's, relative to its largest response; Krylov solvers stop at
``tol=1e-8`` or at ``max_iter``.

    python benchmarks/pairwise_solvers.py            # writes benchmarks/results/pairwise_solvers.{json,csv,png}
    python benchmarks/pairwise_solvers.py --quick    # one small grid

``--seeds`` draws the grids, maps and responses.
"""

from __future__ import annotations

import time
import warnings

import _harness
import numpy as np
import scipy.sparse
from scipy.sparse.linalg import LinearOperator, lsqr

from rkbs.estimators import BinaryKernelRidge
from rkbs.kernels import AttentionKernel, get_kernel

ALPHAS = (1e-1, 1e-3, 1e-5)
KERNELS = ("rbf/sqrt(d)", "edp/sqrt(d)", "rbf/1", "kronecker-rbf")
MAX_ITER = 20000


def _plain_lsqr(K, a, b, z, alpha):
    """The two-sided LSQR without preconditioning: the operator C -> (K C K)[a, b] with LSQR's own damping."""
    nx, ny = K.shape

    def matvec(c):
        return np.einsum("ij,ji->i", (K @ c.reshape(ny, nx))[a], K[:, b])

    def rmatvec(r):
        return (K.T @ (scipy.sparse.coo_matrix((r, (a, b)), shape=K.shape).tocsr() @ K.T)).ravel()

    out = lsqr(LinearOperator((z.size, nx * ny), matvec=matvec, rmatvec=rmatvec, dtype=np.float64), z,
               damp=np.sqrt(alpha), atol=1e-8, btol=1e-8, iter_lim=MAX_ITER)
    return out[0].reshape(ny, nx), int(out[2]), out[1] != 7


def _problem(kernel: str, nx: int, ny: int, fraction: float, seed: int):
    """Features, the Gram matrix the responses are fitted through, the observed pairs and their responses."""
    rng = np.random.default_rng(seed)
    Xx, Xy = rng.normal(size=(nx, 6)), rng.normal(size=(ny, 5))
    observed = rng.random((nx, ny)) < fraction
    observed[0, 0] = True
    a, b = np.nonzero(observed)
    z = rng.normal(size=a.size)
    if kernel == "kronecker-rbf":
        params = dict(kernel="rbf", kernel_params={"gamma": 1 / 6}, kernel_y="rbf", kernel_y_params={"gamma": 1 / 5},
                      mode="kronecker")
        return Xx, Xy, observed, a, b, z, params, None
    base, scale = kernel.split("/")
    wq, wk = rng.normal(size=(6, 4)), rng.normal(size=(5, 4))
    if scale == "sqrt(d)":
        wq, wk = wq / np.sqrt(6), wk / np.sqrt(5)
    kappa = AttentionKernel(get_kernel("rbf", gamma=0.5) if base == "rbf" else get_kernel("edp"), wq, wk)
    return Xx, Xy, observed, a, b, z, dict(kernel=kappa, mode="two_sided"), kappa(Xx, Xy)


def _fit(params, Xx, Xy, Z, alpha, solver):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        model = BinaryKernelRidge(alpha=alpha, solver=solver, max_iter=MAX_ITER, **params).fit_grid(Xx, Xy, Z)
        seconds = time.perf_counter() - start
    converged = not any("did not converge" in str(w.message) for w in caught)
    return model, seconds, converged


def main(argv=None) -> None:
    args = _harness.make_parser(__doc__, name="pairwise_solvers").parse_args(argv)
    _harness.setup(args)
    grids = [(40, 30, 0.3)] if args.quick else [(40, 30, 0.3), (120, 80, 0.3), (120, 80, 0.7)]
    results = _harness.Results.open(args, key=("n_x", "n_y", "fraction", "kernel", "alpha", "solver", "seed"),
                                    config={"max_iter": MAX_ITER, "tol": 1e-8})
    keys = [dict(n_x=nx, n_y=ny, fraction=f, kernel=k, alpha=alpha, seed=seed)
            for seed in args.seeds for nx, ny, f in grids for k in KERNELS for alpha in ALPHAS]
    for key in _harness.progress(keys, desc="problems", disable=args.no_progress):
        solvers = ("cholesky", "cg") if key["kernel"] == "kronecker-rbf" else ("cholesky", "lsqr", "plain-lsqr")
        if all(results.done(**key, solver=s) for s in solvers):
            continue
        Xx, Xy, observed, a, b, z, params, K = _problem(key["kernel"], key["n_x"], key["n_y"], key["fraction"],
                                                        key["seed"])
        Z = np.where(observed, 0.0, np.nan)
        Z[a, b] = z
        exact, seconds, _ = _fit(params, Xx, Xy, Z, key["alpha"], "cholesky")
        H = exact.predict_grid(Xx, Xy)
        scale = max(np.abs(H).max(), 1e-300)
        results.add(dict(key, solver="cholesky", n_obs=int(a.size), iterations=1, seconds=seconds, converged=True,
                         relative_error=0.0))
        for solver in solvers[1:]:
            if solver == "plain-lsqr":
                start = time.perf_counter()
                C, iterations, converged = _plain_lsqr(K, a, b, z, key["alpha"])
                seconds, fitted = time.perf_counter() - start, K @ C @ K
            else:
                model, seconds, converged = _fit(params, Xx, Xy, Z, key["alpha"], solver)
                iterations, fitted = model.n_iter_, model.predict_grid(Xx, Xy)
            results.add(dict(key, solver=solver, n_obs=int(a.size), iterations=iterations, seconds=seconds,
                             converged=converged, relative_error=float(np.abs(fitted - H).max() / scale)))
            _harness.log(f"{key['n_x']}x{key['n_y']} {key['fraction']:.0%} {key['kernel']:14s} "
                         f"alpha={key['alpha']:.0e} {solver:10s} {iterations:6d} it {seconds:6.2f} s")
    _plot(results, args)
    results.close()


def _plot(results, args) -> None:
    """Iterations of the preconditioned LSQR against the plain one, per problem (both capped at MAX_ITER)."""
    plt = _harness.pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for kernel, marker in zip(KERNELS[:3], "os^"):
        pairs = [(p["iterations"], q["iterations"]) for p in results.select(kernel=kernel, solver="plain-lsqr")
                 for q in results.select(**{k: p[k] for k in results.key if k != "solver"}, solver="lsqr")]
        if pairs:
            x, y = np.array(pairs).T
            ax.scatter(x, y, marker=marker, label=kernel)
    ax.plot([1, MAX_ITER], [1, MAX_ITER], "k:", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="plain LSQR iterations", ylabel="preconditioned LSQR iterations",
           title="two-sided fits of observed pairs")
    ax.legend()
    _harness.save_figure(fig, _harness.results_path(args).with_suffix(".png"),
                         caption=_harness.provenance_caption(results))


if __name__ == "__main__":
    main()
