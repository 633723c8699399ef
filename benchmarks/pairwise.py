"""Learning from pairs: every binary kernel machine in the four cross-validation settings, and Kronecker speed.

Three parts (``--part``):

- ``synthetic``: ``rkbs.datasets.make_pairwise_regression`` (80 x 60 pairs, 20 and 16 features, asymmetric
  non-separable interaction plus row and column effects), R^2 on the test pairs of each fold of each setting
  (pairs, rows, columns, both new; ``rkbs.model_selection.PairwiseKFold``, 3 folds, 9 for "both", per seed).
- ``nr``: the nuclear-receptor drug-target data (54 x 26, 90 interactions), AUC per fold, with the standard drug
  and target folds for the new-drug, new-target and both-new settings and 3 random folds of the pairs. Kronecker
  mode is checked against an independent closed form (numpy solve with the explicit Kronecker Gram matrix).
- ``speed``: Kronecker ``fit_grid`` with RBF kernels beside a numpy eigendecomposition closed form (KronRLS),
  interleaved in one process, median of rounds.

Methods: ``mean`` (the training mean), ``concat_krr`` (scikit-learn ``KernelRidge`` with an RBF kernel on the
concatenated features, alpha and gamma by 3-fold grid search), ``kronecker`` (``BinaryKernelRidge``, two RBF
kernels or the two similarity matrices as precomputed kernels), ``two_sided`` (the two-sided closed form with an
``AttentionKernel`` of random maps), ``learned`` (``BinaryKernelLearner`` end to end: an ensemble of 5 learners
of 8 exponential heads), ``learned_rbf`` (an ensemble of 5 learners of 4 RBF heads) and ``learned_two_stage``
(the ``learned`` kernel in the two-sided closed form); ``--methods search-...`` adds the learner variants of the
search behind these settings (``SEARCH``). The learner validates (early stopping) on held-out pairs, rows,
columns or both, as the setting does. Alphas of the closed forms are chosen for the setting: new pairs on a
full training grid by the exact leave-one-pair-out path (``alphas=``); otherwise on a held-out fifth of the
training pairs grouped as the setting groups them (held-out rows for new rows), every alpha from one path fit
when the inner training pairs fill a grid, else from iterative fits of a coarse grid (at most 1,000 LSQR or CG
steps each, which bounds the time; such stops are recorded with their warning).

Usage: ``python benchmarks/pairwise.py [--quick] [--part synthetic nr speed] [--settings ...] [--methods ...]
[--report-only]``; writes ``benchmarks/results/pairwise_{synthetic,nr,speed}.{json,csv,png}`` and the tables
``pairwise_{synthetic,nr}.md``. Resumable per result, so ``--methods`` / ``--settings`` split a long run into
several commands writing one file, or into parallel shards (each with its own ``--out``) whose files ``--merge``
adds to the results files.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import _harness
import numpy as np

ALPHAS = np.logspace(-4, 2, 13)
# the learner's validation split is the setting's (new rows are held out to stop where new rows are predicted best)
# the settings of docs/pairs.md's search (5 seeds x 3 folds per setting): an ensemble of 5 averages away much of
# the variance between initializations and validation splits; 8 exponential heads at learning rate 0.01 were best
# for new rows and columns together, RBF heads train 2-3x faster at 0.03
_COMMON = dict(head_dim=4, max_iter=2000, n_iter_no_change=100, alpha=1e-2, validation_fraction=0.2, ensemble_size=5)
LEARNERS = {"learned": dict(_COMMON, n_heads=8, learning_rate=0.01),
            "learned_rbf": dict(_COMMON, n_heads=4, learning_rate=0.03, head="rbf")}
# "learned_two_stage" right after "learned": they share its fitted learner (one is cached)
METHODS = ("mean", "concat_krr", "kronecker", "two_sided", "learned", "learned_two_stage", "learned_rbf")
# the search behind LEARNERS (docs/pairs.md), run on request (``--methods search-...``): single learners of 4
# heads as the benchmark had them (learning rate 0.03), at 0.01, with RBF heads, and ensembles of them
_SINGLE = dict(_COMMON, ensemble_size=1, n_heads=4)
SEARCH = {"search-exp-lr0.03": dict(_SINGLE, learning_rate=0.03),
          "search-exp-lr0.01": dict(_SINGLE, learning_rate=0.01),
          "search-rbf-lr0.03": dict(_SINGLE, learning_rate=0.03, head="rbf"),
          "search-exp-lr0.01-ens5": dict(_SINGLE, learning_rate=0.01, ensemble_size=5)}  # ensembled RBF: learned_rbf
_ALL_METHODS = METHODS + tuple(SEARCH)
SETTINGS = ("pairs", "rows", "columns", "both")
# a seed draws the folds and the learner's initialization: one seed's 3 folds cannot separate methods whose R^2
# differ by less than ~0.2 (docs/pairs.md), five seeds' 15 give a paired interval
SEEDS = (0, 1, 2, 3, 4)
_LSQR_ITER = 1000  # bounds the benchmark's time; a fit that stops there is recorded with its ConvergenceWarning
_LEARNED: dict = {}


# ------------------------------------------------------------------------------------------ model selection
def _complete_block(train):
    """Rows and columns of a training mask that is a full sub-grid, or None."""
    rows, cols = train.any(1), train.any(0)
    return (rows, cols) if train[np.ix_(rows, cols)].all() and train.sum() == rows.sum() * cols.sum() else None


def _fit_ridge(make, Xx, Xy, Z, train, seed, setting="pairs", precomputed=False):
    """A BinaryKernelRidge fitted on ``train`` with alpha chosen for the setting: (model, block, error).

    New pairs on a full training grid: the exact leave-one-pair-out path. Otherwise one held-out fold of the
    training pairs grouped as the setting groups them (new rows are chosen on held-out rows), scored for every
    alpha from one path fit when the inner training pairs fill a grid, else by iterative fits of a few alphas.
    The block is the (rows, columns) of the model's training points; the error is the chosen alpha's
    selection error (to compare kernels).
    """
    from rkbs.model_selection import PairwiseKFold

    def points(r, c, rt=None, ct=None):  # fit_grid / predict_grid arguments of rows rt (r) and columns ct (c)
        rt, ct = (r, c) if rt is None else (rt, ct)
        return (Xx[np.ix_(rt, r)], Xy[np.ix_(ct, c)]) if precomputed else (Xx[rt], Xy[ct])

    block = _complete_block(train)
    if block is not None and setting == "pairs":
        model = make(alphas=ALPHAS).fit_grid(*points(*block), Z[np.ix_(*block)])
        return model, block, float(np.min(model.loo_mse_))
    # another seed than the outer folds' (the same permutation would hold out only outer test rows); the first
    # inner fold that holds out training pairs
    inner, held = next((tr, te) for tr, te in PairwiseKFold(setting, 5, random_state=seed + 1).split_grid(
        Z.shape, train) if te.any() and tr.any())
    inner_block = _complete_block(inner)
    hr, hc = held.any(1), held.any(0)
    if inner_block is not None:
        path = make(alphas=ALPHAS).fit_grid(*points(*inner_block), Z[np.ix_(*inner_block)])
        L, R = path._sides(*points(*inner_block, hr, hc))
        alphas = ALPHAS
        preds = [L @ coef @ R for coef in path.dual_coef_path_]
    else:
        alphas = ALPHAS[::4]  # iterative fits (missing pairs): a coarse grid and at most _LSQR_ITER steps each
        full = np.ones(len(Xx), dtype=bool), np.ones(len(Xy), dtype=bool)
        preds = [make(alpha=a, max_iter=_LSQR_ITER).fit_grid(*points(*full), Z, inner).predict_grid(
            *points(*full, hr, hc)) for a in alphas]
    target, keep = Z[np.ix_(hr, hc)], held[np.ix_(hr, hc)]
    errors = [np.mean((P - target)[keep] ** 2) for P in preds]
    best, error = float(alphas[int(np.argmin(errors))]), float(np.min(errors))
    if block is not None:
        return make(alpha=best).fit_grid(*points(*block), Z[np.ix_(*block)]), block, error
    full = np.ones(len(Xx), dtype=bool), np.ones(len(Xy), dtype=bool)
    return make(alpha=best, max_iter=3 * _LSQR_ITER).fit_grid(*points(*full), Z, train), full, error


def _predict_all(model, block, Xx, Xy, precomputed=False):
    """Predictions on the whole grid of a model trained on the points of ``block``."""
    r, c = block
    return model.predict_grid(Xx[:, r], Xy[:, c]) if precomputed else model.predict_grid(Xx, Xy)


def _predict(method, Xx, Xy, Z, train, seed, kx=None, ky=None, setting="pairs"):
    """Predictions on the whole grid of a method trained on the pairs of ``train``."""
    from rkbs.estimators import BinaryKernelLearner, BinaryKernelRidge
    from rkbs.kernels import AttentionKernel, get_kernel

    if method == "mean":
        return np.full(Z.shape, Z[train].mean()), {}
    if method == "concat_krr":
        from sklearn.kernel_ridge import KernelRidge
        from sklearn.model_selection import GridSearchCV

        a, b = np.nonzero(train)
        rows = np.hstack([Xx[a], Xy[b]])
        g = 1.0 / rows.shape[1]
        search = GridSearchCV(KernelRidge(kernel="rbf"), {"alpha": [1e-2, 1e-1, 1.0], "gamma": [g / 3, g]},
                              cv=2).fit(rows, Z[a, b])
        A, B = np.meshgrid(np.arange(len(Xx)), np.arange(len(Xy)), indexing="ij")
        return search.predict(np.hstack([Xx[A.ravel()], Xy[B.ravel()]])).reshape(Z.shape), search.best_params_
    if method == "kronecker":
        if kx is not None:  # precomputed similarity matrices
            def make(**kw):
                return BinaryKernelRidge(kernel="precomputed", mode="kronecker", **kw)
            model, block, _ = _fit_ridge(make, kx, ky, Z, train, seed, setting, precomputed=True)
            return _predict_all(model, block, kx, ky, precomputed=True), {"alpha": model.alpha_}
        best = None
        for scale in (0.3, 1.0, 3.0):
            def make(scale=scale, **kw):
                return BinaryKernelRidge(kernel="rbf", kernel_params={"gamma": scale / Xx.shape[1]}, kernel_y="rbf",
                                         kernel_y_params={"gamma": scale / Xy.shape[1]}, mode="kronecker", **kw)
            model, _, err = _fit_ridge(make, Xx, Xy, Z, train, seed, setting)
            if best is None or err < best[1]:
                best = (model, err, scale)
        return best[0].predict_grid(Xx, Xy), {"alpha": best[0].alpha_, "gamma_scale": best[2]}
    if method == "two_sided":
        rng = np.random.default_rng(seed)
        kappa = AttentionKernel(get_kernel("rbf", gamma=0.5), rng.normal(size=(Xx.shape[1], 8)) / np.sqrt(Xx.shape[1]),
                                rng.normal(size=(Xy.shape[1], 8)) / np.sqrt(Xy.shape[1]))
        model, _, _ = _fit_ridge(lambda **kw: BinaryKernelRidge(kernel=kappa, mode="two_sided", **kw), Xx, Xy, Z,
                                 train, seed, setting)
        return model.predict_grid(Xx, Xy), {"alpha": model.alpha_}
    learner_name = "learned" if method == "learned_two_stage" else method
    params = {**LEARNERS, **SEARCH}[learner_name]
    cache_key = (learner_name, Z.shape, train.tobytes(), seed, setting)
    if cache_key not in _LEARNED:  # "learned" and "learned_two_stage" share one learner per fold
        _LEARNED.clear()
        _LEARNED[cache_key] = BinaryKernelLearner(**params, validation_split=setting, random_state=seed).fit_grid(
            Xx, Xy, Z, train)
    learner = _LEARNED[cache_key]
    info = {"n_iter": [m.n_iter_ for m in learner.estimators_],
            "best_iter": [m.best_iter_ for m in learner.estimators_]}
    if method != "learned_two_stage":
        return learner.predict_grid(Xx, Xy), {**info, "params": params}
    model, _, _ = _fit_ridge(lambda **kw: BinaryKernelRidge(kernel=learner.kernel_, mode="two_sided", **kw), Xx,
                             Xy, Z, train, seed, setting)
    return model.predict_grid(Xx, Xy), {**info, "alpha": model.alpha_}


# ------------------------------------------------------------------------------------------ data and folds
def _synthetic(quick):
    from rkbs.datasets import make_pairwise_regression

    n_x, n_y = (40, 30) if quick else (80, 60)
    return make_pairwise_regression(n_x, n_y, 20, 16, random_state=0)


def _synthetic_folds(shape, seed):
    from rkbs.model_selection import PairwiseKFold

    for setting in SETTINGS:
        for fold, (train, test) in enumerate(PairwiseKFold(setting, 3, random_state=seed).split_grid(shape)):
            yield setting, fold, train, test


def _nr_folds(nr, seed):
    from rkbs.model_selection import PairwiseKFold

    shape = nr.Y.shape
    for fold, (train, test) in enumerate(PairwiseKFold("pairs", 3, random_state=seed).split_grid(shape)):
        yield "pairs", fold, train, test
    rows = [np.isin(np.arange(shape[0]), f)[:, None] for f in nr.drug_folds]
    cols = [np.isin(np.arange(shape[1]), f)[None, :] for f in nr.target_folds]
    full = np.ones(shape, dtype=bool)
    for fold, r in enumerate(rows):
        yield "rows", fold, full & ~r, full & r
    for fold, c in enumerate(cols):
        yield "columns", fold, full & ~c, full & c
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            yield "both", 3 * i + j, full & ~r & ~c, full & r & c


def _nr_kronecker_check(nr):
    """Kronecker mode against the explicit Kronecker Gram matrix solved by numpy, on a new-drug split."""
    from rkbs.estimators import BinaryKernelRidge

    kd, kt = (nr.drug_similarity + nr.drug_similarity.T) / 2, nr.target_similarity
    test = np.isin(np.arange(kd.shape[0]), nr.drug_folds[0])
    train = ~test
    Ztr, alpha = nr.Y[train], 0.3
    model = BinaryKernelRidge(kernel="precomputed", alpha=alpha).fit_grid(kd[np.ix_(train, train)], kt, Ztr)
    G = np.kron(kt, kd[np.ix_(train, train)])  # column-major vec: vec(Kx A Ky) = (Ky kron Kx) vec(A)
    A = np.linalg.solve(G + alpha * np.eye(G.shape[0]), Ztr.ravel(order="F")).reshape(Ztr.shape, order="F")
    expected = kd[np.ix_(test, train)] @ A @ kt
    got = model.predict_grid(kd[np.ix_(test, train)], kt)
    # partially observed: the pairs setting's CG against the same Gram matrix restricted to the observed pairs
    obs = np.random.default_rng(0).random(nr.Y.shape) < 0.7
    cg = BinaryKernelRidge(kernel="precomputed", alpha=alpha, solver="cg", tol=1e-14, max_iter=10000).fit_grid(
        kd, kt, nr.Y, obs)
    Gfull = np.kron(kt, kd)
    o = obs.ravel(order="F")
    coef = np.linalg.solve(Gfull[np.ix_(o, o)] + alpha * np.eye(o.sum()), nr.Y.ravel(order="F")[o])
    expected_cg = (Gfull[:, o] @ coef).reshape(nr.Y.shape, order="F")
    return {"closed_form_max_abs_diff": float(np.abs(got - expected).max()),
            "cg_max_abs_diff": float(np.abs(cg.predict_grid(kd, kt) - expected_cg).max())}


def run_accuracy(args, data_name):
    from sklearn.metrics import r2_score, roc_auc_score

    quick = args.quick
    results = _harness.Results(args.out / f"pairwise{'_quick' if quick else ''}_{data_name}.json",
                               key=("setting", "method", "fold", "seed"), config={"learners": LEARNERS,
                                                                                   "alphas": ALPHAS.tolist()},
                               fresh=args.fresh, run=_harness.run_info(), progress=not args.no_progress)
    if data_name == "synthetic":
        data = _synthetic(quick)
        Xx, Xy, Z = data.X_x, data.X_y, data.Z
        kx = ky = None
        score, metric = r2_score, "r2"
    else:
        from rkbs.datasets import load_nuclear_receptor

        data = load_nuclear_receptor()
        kx, ky = (data.drug_similarity + data.drug_similarity.T) / 2, data.target_similarity
        Xx, Xy, Z = kx, ky, data.Y  # similarity rows as features for the non-precomputed methods
        score, metric = roc_auc_score, "auc"
        if not args.report_only:
            results.set_summary(kronecker_check=_nr_kronecker_check(data))
    methods = [m for m in _ALL_METHODS if m in args.methods]
    for seed in [] if args.report_only else args.seeds:
        folds = list(_synthetic_folds(Z.shape, seed) if data_name == "synthetic" else _nr_folds(data, seed))
        keys = [dict(setting=s, method=m, fold=f, seed=seed) for s, f, _, _ in folds for m in methods
                if s in args.settings]
        lookup = {(s, f): (tr, te) for s, f, tr, te in folds}
        for key in results.pending(keys, desc=f"{data_name} seed {seed}"):
            train, test = lookup[(key["setting"], key["fold"])]
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                P, info = _predict(key["method"], Xx, Xy, Z, train, seed, kx, ky, key["setting"])
            if np.unique(Z[test]).size < 2 and metric == "auc":
                value = None  # a fold without both classes has no AUC
            else:
                value = float(score(Z[test], P[test]))
            results.add({**key, metric: value, "seconds": time.perf_counter() - start, "n_train": int(train.sum()),
                         "n_test": int(test.sum()), "warnings": sorted({str(w.category.__name__) for w in caught}),
                         **info})
    table = _table(results, metric)
    results.set_summary(metric=metric, table=table)
    (results.path.with_suffix(".md")).write_text(_markdown(table, metric, data_name, results))
    present = [m for m in _ALL_METHODS if any(f"{s}/{m}" in table for s in SETTINGS)]
    _plot(results, metric, [m for m in present if m in METHODS] or present, data_name)  # search-only: its own
    return results


def _table(results, metric):
    """Per setting and method: mean and std over every (seed, fold), and the paired difference from Kronecker.

    The difference's 95% t interval pairs each (seed, fold) of a method with Kronecker's on the same test pairs;
    folds of one seed share training data, so read the interval as indicative, not exact."""
    table = {}
    for s in SETTINGS:
        ref = {(r["seed"], r["fold"]): r[metric] for r in results.select(setting=s, method="kronecker")
               if r.get(metric) is not None}
        for m in _ALL_METHODS:
            rows = [r for r in results.select(setting=s, method=m) if r.get(metric) is not None]
            if not rows:
                continue
            vals = [r[metric] for r in rows]
            entry = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "folds": len(vals),
                     "seeds": len({r["seed"] for r in rows})}
            common = [(r[metric], ref[(r["seed"], r["fold"])]) for r in rows if (r["seed"], r["fold"]) in ref]
            if m != "kronecker" and len(common) >= 2:
                entry["vs_kronecker"] = _harness.paired_ci(*zip(*common))
            table[f"{s}/{m}"] = entry
    return table


def _markdown(table, metric, data_name, results):
    """The table as Markdown: mean ± std (folds), and the paired difference from Kronecker with its 95% CI."""
    lines = [f"# Learning from pairs: {data_name} ({metric.upper()} on the test pairs)", "",
             _harness.provenance_caption(results), "",
             "Each cell: mean ± std over every fold of every seed (number of folds); below it, the mean paired "
             "difference from Kronecker on the same folds with its 95% t interval.", "",
             "| method | " + " | ".join(f"new {s}" for s in SETTINGS) + " |", "|---" * (len(SETTINGS) + 1) + "|"]
    for m in _ALL_METHODS:
        cells = []
        for s in SETTINGS:
            e = table.get(f"{s}/{m}")
            if e is None:
                cells.append("")
                continue
            cell = f"{e['mean']:.3f} ± {e['std']:.3f} ({e['folds']})"
            if e.get("vs_kronecker") and e["vs_kronecker"][1] is not None:
                d, lo, hi = e["vs_kronecker"]
                cell += f"<br>{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"
            cells.append(cell)
        if any(cells):
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plot(results, metric, methods, data_name):
    plt = _harness.pyplot()
    table = results.summary["table"]
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        means = [table.get(f"{s}/{m}", {}).get("mean", np.nan) for s in SETTINGS]
        stds = [table.get(f"{s}/{m}", {}).get("std", 0.0) for s in SETTINGS]
        ax.bar(np.arange(4) + i * width, means, width, yerr=stds, label=m, capsize=2)
    ax.set_xticks(np.arange(4) + 0.4 - width / 2, [f"new {s}" if s != "pairs" else "new pairs" for s in SETTINGS])
    ax.set_ylabel(f"test {metric.upper()} (mean, std over folds)")
    ax.set_ylim(0.4 if metric == "auc" else -0.5, 1.0)
    ax.legend(fontsize=7, ncol=3)
    ax.set_title(f"Learning from pairs: {data_name}")
    _harness.save_figure(fig, results.path.with_suffix(".png"), caption=_harness.provenance_caption(results))


# ------------------------------------------------------------------------------------------ Kronecker speed
def run_speed(args):
    import torch
    from sklearn.metrics.pairwise import rbf_kernel

    from rkbs.estimators import BinaryKernelRidge

    sizes = [(400, 600)] if args.quick else [(1000, 1000), (2000, 3000)]
    rounds = 3
    results = _harness.Results(args.out / f"pairwise_speed{'_quick' if args.quick else ''}.json",
                               key=("n_x", "n_y", "round"), config={"rounds": rounds}, fresh=args.fresh,
                               run=_harness.run_info(), progress=not args.no_progress)
    for nx, ny in [] if args.report_only else sizes:
        rng = np.random.default_rng(0)
        Xx, Xy, Z = rng.normal(size=(nx, 10)), rng.normal(size=(ny, 12)), rng.normal(size=(nx, ny))

        def numpy_closed_form():
            Kx, Ky = rbf_kernel(Xx, gamma=0.1), rbf_kernel(Xy, gamma=0.1)
            lx, Qx = np.linalg.eigh(Kx)
            ly, Qy = np.linalg.eigh(Ky)
            return Qx @ ((Qx.T @ Z @ Qy) / (np.outer(lx, ly) + 1.0)) @ Qy.T

        def rkbs_fit_grid():
            return BinaryKernelRidge(kernel="rbf", kernel_params={"gamma": 0.1}, alpha=1.0).fit_grid(
                Xx, Xy, Z).dual_coef_

        for key in results.pending([dict(n_x=nx, n_y=ny, round=r) for r in range(rounds)], desc="speed"):
            times, outs = {}, {}
            order = [("numpy", numpy_closed_form), ("rkbs", rkbs_fit_grid)]
            for name, fn in order if key["round"] % 2 == 0 else order[::-1]:  # interleaved, alternating order
                t = time.perf_counter()
                outs[name] = fn()
                times[name] = time.perf_counter() - t
            results.add({**key, "numpy_s": times["numpy"], "rkbs_s": times["rkbs"],
                         "ratio": times["rkbs"] / times["numpy"], "torch_threads": torch.get_num_threads(),
                         "max_abs_diff": float(np.abs(outs["numpy"] - outs["rkbs"]).max())})
    summary = {}
    for nx, ny in sizes:
        rows = results.select(n_x=nx, n_y=ny)
        if not rows:
            continue
        summary[f"{nx}x{ny}"] = {**{k: float(np.median([r[k] for r in rows])) for k in ("numpy_s", "rkbs_s", "ratio")},
                                 "rounds": len(rows)}
    results.set_summary(median=summary, note="ratios of runs interleaved in one process (medians); the provenance's "
                                             "load average says whether the machine was shared")
    return results


def main(argv=None):
    parser = _harness.make_parser(__doc__, name="pairwise", seeds=SEEDS)
    parser.add_argument("--part", nargs="+", default=["synthetic", "nr", "speed"],
                        choices=["synthetic", "nr", "speed"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=_ALL_METHODS,
                        help="the methods to run (the table and plot summarize all stored ones)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS,
                        help="the cross-validation settings to run (the table summarizes all stored ones)")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                        help="only add these files' results (parallel shards written with --out) to the results files")
    parser.add_argument("--report-only", action="store_true",
                        help="summarize and plot the stored results without running the pending ones")
    args = parser.parse_args(argv)
    if args.merge:
        for target, added in _harness.merge_results(args.merge, args.out):
            _harness.log(f"{added} result(s) added to {target}; rebuild its table with --report-only")
        return
    _harness.setup(args)
    for part in args.part:
        res = run_speed(args) if part == "speed" else run_accuracy(args, part)
        _harness.log(f"{part}: {res.path}")
        for k, v in res.summary.items():
            _harness.log(f"  {k}: {v}")


if __name__ == "__main__":
    main()
