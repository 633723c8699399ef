"""The exact kernel ridge fit beside scikit-learn's ``KernelRidge``, side by side in one process.

For each n (2,000 / 5,000 / 10,000 by default; d = 10, RBF gamma = 0.05, alpha = 1e-2, the data of
``rkbs_scaling.py``), ``KernelRidge(kernel="rbf")`` and ``RKBSRegressor(penalty="rkhs", solver="cholesky")`` are
fitted alternately over ``--rounds`` rounds after one warm-up fit each (the order flips every round), so both
see the same machine load; the table reports the median fit times, their ratio (KernelRidge / rkbs: above 1 means
rkbs is faster), the largest prediction difference, and each fit's peak resident memory above the data, measured
once per fit in a fresh spawned process (its own ``VmHWM``).

Usage: ``python benchmarks/rkbs_exact.py [--quick] [--out DIR] [--sizes N ...] [--rounds R] [--threads 2]``;
resumable per n, summary in ``<out>/rkbs_exact.md``. About 2 minutes on a quiet 2-core machine.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness  # noqa: E402

import numpy as np  # noqa: E402

D, GAMMA, ALPHA, TEST = 10, 0.05, 1e-2, 2000
METHODS = ("sklearn KernelRidge", "rkbs rkhs cholesky")


def _data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n + TEST, D))
    y = np.sin(X[:, 0]) + np.cos(X[:, 1]) * X[:, 2] + 0.1 * rng.normal(size=n + TEST)
    return X[:n], y[:n], X[n:], y[n:]


def _model(method: str):
    from sklearn.kernel_ridge import KernelRidge

    from rkbs.estimators import RKBSRegressor

    if method == "sklearn KernelRidge":
        return KernelRidge(kernel="rbf", gamma=GAMMA, alpha=ALPHA)
    return RKBSRegressor(kernel="rbf", kernel_params={"gamma": GAMMA}, alpha=ALPHA, penalty="rkhs", solver="cholesky")


def _peak_child(method: str, n: int, seed: int, threads: int, queue) -> None:
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    X, y, _, _ = _data(n, seed)
    with threadpool_limits(limits=threads):
        _model(method).fit(X[:200], y[:200])  # lazy library set-up outside the measured peak
        base = _harness.peak_rss_mib()
        _model(method).fit(X, y)
    queue.put(_harness.peak_rss_mib() - base)


def _peak_mib(method: str, n: int, seed: int, threads: int) -> float:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_child, args=(method, n, seed, threads, queue))
    proc.start()
    peak = queue.get()
    proc.join()
    return round(float(peak), 1)


def _side_by_side(n: int, seed: int, rounds: int, threads: int) -> dict:
    import warnings

    from sklearn.metrics import r2_score
    from threadpoolctl import threadpool_limits

    X, y, Xt, yt = _data(n, seed)
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    models = {}
    # numpy's BLAS (KernelRidge) gets the same threads as torch (rkbs)
    with warnings.catch_warnings(), threadpool_limits(limits=threads):
        warnings.simplefilter("ignore")  # a ConditioningWarning is the same for both: same system
        for m in METHODS:
            _model(m).fit(X[:200], y[:200])
        for r in range(rounds):
            for m in (METHODS if r % 2 == 0 else METHODS[::-1]):
                model = _model(m)
                t0 = time.perf_counter()
                model.fit(X, y)
                times[m].append(time.perf_counter() - t0)
                models[m] = model
    pred = {m: models[m].predict(Xt) for m in METHODS}
    kr, ours = (float(np.median(times[m])) for m in METHODS)
    return {"kernel_ridge_s": round(kr, 3), "rkbs_s": round(ours, 3), "speed_ratio": round(kr / ours, 3),
            "kernel_ridge_times": [round(t, 3) for t in times[METHODS[0]]],
            "rkbs_times": [round(t, 3) for t in times[METHODS[1]]],
            "max_abs_pred_diff": float(np.abs(pred[METHODS[0]] - pred[METHODS[1]]).max()),
            "test_r2": round(float(r2_score(yt, pred[METHODS[1]])), 5)}


def main(argv=None) -> None:
    parser = _harness.make_parser(__doc__, name="rkbs_exact")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="n (default: 2000 5000 10000)")
    parser.add_argument("--rounds", type=int, default=None, help="timed fits per method (default: 3)")
    args = parser.parse_args(argv)
    import torch

    threads = args.threads or 2
    torch.set_num_threads(threads)
    sizes = args.sizes or ([500, 1000] if args.quick else [2000, 5000, 10_000])
    rounds = args.rounds or (2 if args.quick else 3)
    results = _harness.Results.open(args, key=("n", "seed"),
                                    config={"d": D, "gamma": GAMMA, "alpha": ALPHA, "rounds": rounds,
                                            "threads": threads})
    for key in results.pending([dict(n=n, seed=s) for n in sizes for s in args.seeds]):
        row = _side_by_side(key["n"], key["seed"], rounds, threads)
        row["kernel_ridge_peak_mib"] = _peak_mib(METHODS[0], key["n"], key["seed"], threads)
        row["rkbs_peak_mib"] = _peak_mib(METHODS[1], key["n"], key["seed"], threads)
        _harness.log(f"{key}: {row}")
        results.add({**key, **row})
    lines = [f"Side by side in one process, {threads} threads, median of {rounds} interleaved fits; peak resident "
             "memory above the data in a fresh process per fit (0: below the process's peak before the fit). "
             "Re-run on a quiet machine: `python benchmarks/rkbs_exact.py --out benchmarks/results/quiet`.", "",
             "| n | KernelRidge (s) | rkbs Cholesky (s) | KernelRidge / rkbs | peak MiB KernelRidge / rkbs | "
             "max prediction difference | test R^2 |", "|---:|---:|---:|---:|---|---:|---:|"]
    for r in sorted(results.rows, key=lambda r: (r["n"], r["seed"])):
        lines.append(f"| {r['n']:,} | {r['kernel_ridge_s']} | {r['rkbs_s']} | {r['speed_ratio']:.2f}x | "
                     f"{r['kernel_ridge_peak_mib']} / {r['rkbs_peak_mib']} | {r['max_abs_pred_diff']:.1e} | "
                     f"{r['test_r2']} |")
    out = _harness.results_path(args).with_suffix(".md")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
