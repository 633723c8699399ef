"""Fit time, peak memory and accuracy of the rkbs estimators beside scikit-learn's kernel methods.

Three parts, all on the CPU with two threads:

1. scaling: fit time and peak resident memory against n for each solver -- exact (penalty="rkhs",
   Cholesky; penalty="coef", normal equations) beside ``sklearn.kernel_ridge.KernelRidge`` up to n = 10,000,
   and Nystroem landmarks (Cholesky on the landmark system, CG, and matrix-free LSQR for penalty="coef")
   beside ``Nystroem + Ridge`` up to n = 100,000 (d = 10, RBF). Every fit runs in a fresh spawned process so
   its peak RSS (``ru_maxrss``) is its own; the table reports the peak minus the process's RSS after imports.
2. accuracy on data sets bundled with scikit-learn (digits, breast cancer, diabetes; nothing is downloaded)
   for Mercer and indefinite kernels (rbf, polynomial, tanh, sigmoid, an asymmetric AttentionKernel), alpha
   chosen by 3-fold GridSearchCV.
3. BinaryKernelLearner: held-out error of H heads of exp(<W_q x, W_k y>/sqrt(d)) fitted to catalogue kernels on
   the unit sphere, for growing H and d.
4. logistic loss: 5-fold cross-validation time of ``RKBSClassifier(loss="logistic")`` against
   ``LogisticRegression`` and ``SVC`` on digits and breast cancer, measured side by side in this process,
   interleaved over rounds (median per estimator), reported as ratios.

Usage: ``python benchmarks/rkbs_scaling.py [--quick] [--out DIR] [--fresh]`` (the shared harness, resumable per
result); writes benchmarks/results/rkbs_scaling[_quick].{json,csv,md,png}.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from pathlib import Path

THREADS = 2
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, str(THREADS))

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness  # noqa: E402


# --------------------------------------------------------------------------------------------- scaling part
def _make_regression(n: int, d: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n + 2000, d))
    y = np.sin(X[:, 0]) + np.cos(X[:, 1]) * X[:, 2] + 0.1 * rng.normal(size=n + 2000)
    return X[:n], y[:n], X[n:], y[n:]


def _build(method: str, m: int):
    from sklearn.kernel_approximation import Nystroem
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline

    from rkbs.estimators import RKBSRegressor

    gamma, alpha = 0.05, 1e-2
    common = dict(kernel="rbf", kernel_params={"gamma": gamma}, alpha=alpha)
    return {
        "sklearn KernelRidge": lambda: KernelRidge(kernel="rbf", gamma=gamma, alpha=alpha),
        "rkbs rkhs cholesky": lambda: RKBSRegressor(penalty="rkhs", solver="cholesky", **common),
        "rkbs coef cholesky": lambda: RKBSRegressor(penalty="coef", solver="cholesky", **common),
        "sklearn Nystroem+Ridge": lambda: make_pipeline(
            Nystroem(kernel="rbf", gamma=gamma, n_components=m, random_state=0), Ridge(alpha=alpha)),
        "rkbs Nystroem rkhs cholesky": lambda: RKBSRegressor(penalty="rkhs", solver="cholesky", n_components=m,
                                                             random_state=0, **common),
        "rkbs Nystroem rkhs cg": lambda: RKBSRegressor(penalty="rkhs", solver="cg", n_components=m,
                                                       random_state=0, tol=1e-6, max_iter=300, **common),
        "rkbs Nystroem coef lsqr": lambda: RKBSRegressor(penalty="coef", solver="lsqr", n_components=m,
                                                         random_state=0, tol=1e-6, max_iter=300, **common),
    }[method]()


def _fit_child(method: str, n: int, m: int, queue) -> None:
    import warnings

    import torch

    torch.set_num_threads(THREADS)
    X, y, Xt, yt = _make_regression(n)
    # one small fit first, so the timed fit measures steady state rather than first-call set-up (lazy library
    # initialization) -- the same for scikit-learn's estimators and ours
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _build(method, min(m, 100)).fit(X[:200], y[:200])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # sub-second fits are timed three times (median): single runs of 50 ms fits are dominated by noise
    times = []
    for _ in range(3 if n <= 5000 else 1):
        model = _build(method, m)
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(X, y)
        times.append(time.perf_counter() - t0)
    fit_s = float(np.median(times))
    pred = model.predict(Xt)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r2 = 1 - np.mean((pred - yt) ** 2) / np.var(yt)
    queue.put({"method": method, "n": n, "n_components": m, "fit_s": fit_s, "peak_rss_mib": peak / 1024,
               "peak_over_baseline_mib": (peak - base) / 1024, "test_r2": float(r2),
               "n_iter": getattr(model, "n_iter_", None),
               "warnings": sorted({type(w.message).__name__ for w in caught}), "pred_head": pred[:50].tolist()})


def _run_isolated(method: str, n: int, m: int, timeout: float = 300.0) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_fit_child, args=(method, n, m, queue))
    proc.start()
    try:
        row = queue.get(timeout=timeout)
    except Exception:  # noqa: BLE001 -- a timed-out or crashed fit is recorded, not fatal
        row = {"method": method, "n": n, "n_components": m, "error": "timeout or crash"}
    proc.join(10)
    if proc.is_alive():
        proc.kill()
    return row


def scaling(quick: bool, results) -> list[dict]:
    exact_ns = [500, 1000, 2000] if quick else [1000, 2000, 5000, 10000]
    large_ns = [10_000, 30_000] if quick else [10_000, 30_000, 100_000]
    m = 1000
    jobs = [(meth, n) for n in exact_ns for meth in ("sklearn KernelRidge", "rkbs rkhs cholesky")]
    jobs += [("rkbs coef cholesky", n) for n in exact_ns if n <= 5000]
    jobs += [(meth, n) for n in large_ns for meth in ("sklearn Nystroem+Ridge", "rkbs Nystroem rkhs cholesky")]
    # the Krylov solvers pay one kernel pass (or two) per iteration: measured up to 30,000 to keep the run short
    jobs += [(meth, n) for n in large_ns if n <= 30_000 for meth in ("rkbs Nystroem rkhs cg",
                                                                     "rkbs Nystroem coef lsqr")]
    keys = [{"part": "scaling", "case": f"{meth} n={n}"} for meth, n in jobs]
    for key, (meth, n) in zip(keys, jobs):
        if not results.done(**key):
            results.add({**key, **_run_isolated(meth, n, m)})
    rows = [results.get(**key) for key in keys]
    # exactness: our RKHS predictions against KernelRidge's on the same data
    for n in exact_ns:
        kr = next(r for r in rows if r["method"] == "sklearn KernelRidge" and r["n"] == n)
        ours = next(r for r in rows if r["method"] == "rkbs rkhs cholesky" and r["n"] == n)
        if "pred_head" in kr and "pred_head" in ours:
            ours["max_abs_diff_vs_kernel_ridge"] = float(np.abs(np.subtract(kr["pred_head"],
                                                                            ours["pred_head"])).max())
            ours["speed_ratio_vs_kernel_ridge"] = kr["fit_s"] / ours["fit_s"]
    return rows


# -------------------------------------------------------------------------------------------- accuracy part
def accuracy(quick: bool, results) -> list[dict]:
    import warnings

    import torch
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from tqdm import tqdm

    from rkbs.estimators import RKBSClassifier, RKBSRegressor
    from rkbs.kernels import AttentionKernel, get_kernel

    torch.set_num_threads(THREADS)
    data = {"digits": load_digits(return_X_y=True), "breast_cancer": load_breast_cancer(return_X_y=True),
            "diabetes": load_diabetes(return_X_y=True)}
    configs = [
        ("rbf", "rkhs", {}), ("polynomial", "rkhs", {"degree": 3}), ("tanh", "coef", {}), ("tanh", "krein", {}),
        ("sigmoid", "coef", {}), ("sigmoid (normalized)", "coef", {}), ("attention edp W_q != W_k", "coef", {}),
    ]
    alphas = [1e-2, 1e-1] if quick else [1e-3, 1e-2, 1e-1, 1.0]
    for name, (X, y) in tqdm(data.items(), desc="data sets"):
        if results.done(part="accuracy", case=name):
            continue
        rows = []
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0)
        scaler = StandardScaler().fit(Xtr)
        Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
        regression = name == "diabetes"
        if regression:
            mu, sd = ytr.mean(), ytr.std()
            ytr_fit = (ytr - mu) / sd
        d = X.shape[1]
        rng = np.random.default_rng(0)
        # maps with entries N(0, 1/d^2): logits <x W_q, y W_k> / sqrt(d) stay O(1) on standardized inputs, where
        # N(0, 1/d) entries put the kernel's values between 1e-15 and 1e23 on digits (a ConditioningWarning)
        Wq, Wk = rng.normal(size=(d, d)) / d, rng.normal(size=(d, d)) / d
        for label, penalty, params in configs:
            if label.startswith("attention"):
                kernel, extra = AttentionKernel(get_kernel("edp"), Wq, Wk), {}
            else:
                kernel, extra = label.split(" ")[0], {"kernel_params": params or None}
            normalize = "normalized" in label
            Est = RKBSRegressor if regression else RKBSClassifier
            est = Est(kernel=kernel, penalty=penalty, normalize=normalize, **extra)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                search = GridSearchCV(est, {"alpha": alphas}, cv=3, error_score="raise")
                search.fit(Xtr, ytr_fit if regression else ytr)
            if regression:
                pred = search.predict(Xte) * sd + mu
                score = 1 - np.mean((pred - yte) ** 2) / np.var(yte)
            else:
                score = search.score(Xte, yte)
            rows.append({"dataset": name, "model": f"rkbs {label}", "penalty": penalty,
                         "metric": "R2" if regression else "accuracy", "score": float(score),
                         "alpha": search.best_params_["alpha"], "seconds": time.perf_counter() - t0})
        ref = (GridSearchCV(KernelRidge(kernel="rbf", gamma=1 / (2 * np.sqrt(d))), {"alpha": alphas}, cv=3)
               if regression else GridSearchCV(SVC(kernel="rbf"), {"C": [0.1, 1, 10, 100]}, cv=3))
        t0 = time.perf_counter()
        ref.fit(Xtr, ytr_fit if regression else ytr)
        score = (1 - np.mean((ref.predict(Xte) * sd + mu - yte) ** 2) / np.var(yte)) if regression else \
            ref.score(Xte, yte)
        rows.append({"dataset": name, "model": "sklearn KernelRidge rbf" if regression else "sklearn SVC rbf",
                     "penalty": "-", "metric": "R2" if regression else "accuracy", "score": float(score),
                     "alpha": None, "seconds": time.perf_counter() - t0})
        results.add({"part": "accuracy", "case": name, "rows": rows})
    return [r for name in data for r in results.get(part="accuracy", case=name)["rows"]]


# ------------------------------------------------------------------------------------------ kernel learning
def kernel_learning(quick: bool, results) -> list[dict]:
    import torch
    from tqdm import tqdm

    from rkbs.estimators import BinaryKernelLearner
    from rkbs.kernels import get_kernel

    torch.set_num_threads(THREADS)
    rng = np.random.default_rng(0)
    Xx, Xy = rng.normal(size=(90, 4)), rng.normal(size=(90, 4))
    Xx /= np.linalg.norm(Xx, axis=1, keepdims=True)
    Xy /= np.linalg.norm(Xy, axis=1, keepdims=True)
    targets = {"laplacian(gamma=1)": get_kernel("laplacian", gamma=1.0),
               "tanh(scale=2)": get_kernel("tanh", scale=2.0),
               "polynomial(degree=3, scale=1)": get_kernel("polynomial", degree=3, scale=1.0)}
    shapes = [(1, 1), (1, 4), (4, 4)] if quick else [(1, 1), (1, 4), (2, 2), (4, 4), (8, 8)]
    rows = []
    for name, k in tqdm(targets.items(), desc="kernel learning"):
        Z = k(Xx, Xy)
        for H, d in shapes:
            key = {"part": "kernel_learning", "case": f"{name} H={H} d={d}"}
            if results.done(**key):
                rows.append(results.get(**key))
                continue
            model = BinaryKernelLearner(n_heads=H, head_dim=d, max_iter=1000, learning_rate=0.03,
                                        random_state=0).fit_grid(Xx[:60], Xy[:60], Z[:60, :60])
            err = np.mean((model.predict_grid(Xx[60:], Xy[60:]) - Z[60:, 60:]) ** 2) / np.var(Z)
            rows.append({**key, "target": name, "n_heads": H, "head_dim": d, "n_iter": model.n_iter_,
                         "train_rel_mse": model.loss_curve_[-1] / float(np.var(Z)), "test_rel_mse": float(err)})
            results.add(rows[-1])
    return rows


# ------------------------------------------------------------------------------------------- logistic loss
def logistic(quick: bool, results) -> list[dict]:
    """5-fold CV time of the logistic RKBSClassifier beside LogisticRegression and SVC, interleaved rounds."""
    import warnings

    import torch
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from rkbs.estimators import RKBSClassifier

    torch.set_num_threads(THREADS)
    data = {"digits": load_digits(return_X_y=True), "breast_cancer": load_breast_cancer(return_X_y=True)}
    models = {"rkbs logistic": lambda: RKBSClassifier(loss="logistic"),
              "sklearn LogisticRegression": lambda: LogisticRegression(),
              "sklearn SVC": lambda: SVC()}
    rounds = 1 if quick else 3
    rows = []
    for name, (X, y) in data.items():
        key = {"part": "logistic", "case": name}
        if not results.done(**key):
            times = {m: [] for m in models}
            scores = {}
            for _ in range(rounds):  # interleaved: a burst of load from other processes hits every model alike
                for label, make in models.items():
                    t0 = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # LogisticRegression's max_iter=100 stop on raw digits
                        scores[label] = float(cross_val_score(make_pipeline(StandardScaler(), make()), X, y,
                                                              cv=5).mean())
                    times[label].append(time.perf_counter() - t0)
            med = {m: float(np.median(t)) for m, t in times.items()}
            results.add({**key, "cv_seconds": med, "cv_accuracy": scores, "rounds": rounds,
                         "ratio_vs_logistic_regression": med["rkbs logistic"] / med["sklearn LogisticRegression"],
                         "ratio_vs_svc": med["rkbs logistic"] / med["sklearn SVC"]})
        rows.append(results.get(**key))
    return rows


# ---------------------------------------------------------------------------------------------- reporting
def _plot(scaling_rows, learning_rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    methods = sorted({r["method"] for r in scaling_rows})
    for meth in methods:
        pts = sorted((r["n"], r["fit_s"], r["peak_over_baseline_mib"]) for r in scaling_rows
                     if r["method"] == meth and "fit_s" in r)
        if not pts:
            continue
        style = "--" if meth.startswith("sklearn") else "-"
        axes[0].plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", label=meth)
        axes[1].plot([p[0] for p in pts], [p[2] for p in pts], style, marker="o", label=meth)
    for ax, title, ylabel in ((axes[0], "fit time (2 shared CPU threads)", "seconds"),
                              (axes[1], "peak memory above baseline", "MiB")):
        ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel("n (training points, d = 10)")
        ax.set_ylabel(ylabel), ax.set_title(title), ax.grid(True, which="both", alpha=0.3)
    axes[0].axhline(60, color="grey", lw=0.8), axes[1].axhline(2048, color="grey", lw=0.8)
    axes[0].legend(fontsize=7)
    for target in sorted({r["target"] for r in learning_rows}):
        pts = [r for r in learning_rows if r["target"] == target]
        axes[2].plot([f"H={r['n_heads']},d={r['head_dim']}" for r in pts], [r["test_rel_mse"] for r in pts],
                     marker="o", label=target)
    axes[2].set_yscale("log"), axes[2].set_title("BinaryKernelLearner: held-out relative MSE")
    axes[2].legend(fontsize=7), axes[2].grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _markdown(result) -> str:
    lines = [f"Machine: {result['machine']}; {THREADS} threads. Each fit runs in its own process after a small "
             "warm-up fit; fits of n <= 5,000 are the median of 3 runs. The machine may have been shared: compare "
             "ratios measured side by side.", ""]
    if result["scaling"]:
        lines += ["| method | n | fit (s) | peak RSS above baseline (MiB) | test R^2 | vs KernelRidge |",
                  "|---|---:|---:|---:|---:|---|"]
    for r in result["scaling"]:
        if "fit_s" not in r:
            lines.append(f"| {r['method']} | {r['n']} | {r.get('error')} | | | |")
            continue
        vs = ""
        if "speed_ratio_vs_kernel_ridge" in r:
            vs = f"{r['speed_ratio_vs_kernel_ridge']:.2f}x speed, max diff {r['max_abs_diff_vs_kernel_ridge']:.1e}"
        m = f" (m={r['n_components']})" if "Nystroem" in r["method"] else ""
        lines.append(f"| {r['method']}{m} | {r['n']:,} | {r['fit_s']:.2f} | {r['peak_over_baseline_mib']:.0f} | "
                     f"{r['test_r2']:.3f} | {vs} |")
    if result["accuracy"]:
        lines += ["", "| data set | model | penalty | metric | score | alpha |", "|---|---|---|---|---:|---:|"]
    for r in result["accuracy"]:
        lines.append(f"| {r['dataset']} | {r['model']} | {r['penalty']} | {r['metric']} | {r['score']:.3f} | "
                     f"{r['alpha'] if r['alpha'] is not None else '-'} |")
    if result["kernel_learning"]:
        lines += ["", "| target kernel | H | d | held-out relative MSE | train relative MSE |",
                  "|---|---:|---:|---:|---:|"]
    for r in result["kernel_learning"]:
        lines.append(f"| {r['target']} | {r['n_heads']} | {r['head_dim']} | {r['test_rel_mse']:.4f} | "
                     f"{r['train_rel_mse']:.4f} |")
    if result["logistic"]:
        lines += ["", "5-fold cross-validation (StandardScaler + model), median of interleaved rounds:", "",
                  "| data set | rkbs logistic (s) | LogisticRegression (s) | SVC (s) | rkbs / LR | rkbs / SVC | "
                  "accuracy rkbs / LR / SVC |", "|---|---:|---:|---:|---:|---:|---|"]
    for r in result["logistic"]:
        t, a = r["cv_seconds"], r["cv_accuracy"]
        lines.append(f"| {r['case']} | {t['rkbs logistic']:.2f} | {t['sklearn LogisticRegression']:.2f} | "
                     f"{t['sklearn SVC']:.2f} | {r['ratio_vs_logistic_regression']:.2f}x | {r['ratio_vs_svc']:.2f}x | "
                     f"{a['rkbs logistic']:.3f} / {a['sklearn LogisticRegression']:.3f} / {a['sklearn SVC']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = _harness.make_parser(__doc__, name="rkbs_scaling")
    parser.add_argument("--parts", nargs="+", default=["scaling", "accuracy", "kernel_learning", "logistic"],
                        choices=["scaling", "accuracy", "kernel_learning", "logistic"], help="parts to run")
    args = parser.parse_args(argv)
    _harness.setup(args)
    results = _harness.Results.open(args, key=("part", "case"), config={"threads": THREADS})
    t0 = time.perf_counter()
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible"}
    for part, run in (("scaling", scaling), ("accuracy", accuracy), ("kernel_learning", kernel_learning),
                      ("logistic", logistic)):
        result[part] = run(args.quick, results) if part in args.parts else []
    results.set_summary(total_seconds=time.perf_counter() - t0, logistic=[
        {k: r[k] for k in ("case", "ratio_vs_logistic_regression", "ratio_vs_svc")} for r in result["logistic"]])
    stem = _harness.results_path(args).with_suffix("")
    stem.with_suffix(".md").write_text(_markdown(result))
    if result["scaling"] and result["kernel_learning"]:
        _plot(result["scaling"], result["kernel_learning"], stem.with_suffix(".png"))
    print(_markdown(result))
    return result


if __name__ == "__main__":
    main()
