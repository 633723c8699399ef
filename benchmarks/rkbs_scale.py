"""rkbs at scale: Nystroem fits from n = 10^4 to 10^7 (in memory, out of core, 1 and 2 processes).

Every fit runs in a fresh spawned process, so its peak resident memory (``ru_maxrss``) is its own; the table
reports the peak minus the process's resident memory once the data is loaded (the memory "above the data"), the
fit time, and the held-out R^2 (d = 10, y = sin(x0) + cos(x1) x2 + noise, RBF gamma = 0.05, alpha = 1e-2).

methods:

- ``sklearn``: scikit-learn's ``Nystroem`` + ``Ridge(fit_intercept=False)`` (the n x m feature matrix, so up to
  n = 200,000);
- ``direct``: rkbs ``solver="cholesky"``, float64 (normal equations accumulated block by block, O(n m^2));
- ``falkon64`` / ``falkon32``: rkbs ``solver="falkon"`` (preconditioned CG over row blocks) in float64 or float32;
- ``falkon32-memmap``: the same, the rows read from a float32 ``.npy`` memory map (out of core);
- ``falkon32-2proc``: two processes (gloo, one thread each) inside ``rkbs.distributed.data_parallel``;
- ``exact``: rkbs exact kernel ridge (n x n Cholesky) at n = 10,000, for the dense path's peak memory.

The Falkon library itself is not a peer here: ``pip index versions falkon`` finds no distribution on the package
index this machine reaches (Falkon ships its wheels, built per torch and CUDA version, from its own index).

Usage: ``python benchmarks/rkbs_scale.py [--quick] [--max-n 10000000] [--threads 2] [--sizes N ...]
[--methods M ...]``; resumable (each finished
fit is stored in ``benchmarks/results/rkbs_scale.{json,csv}``; ``--fresh`` starts over), summary in
``rkbs_scale.md``. Timings on a shared machine are pessimistic: re-run on a quiet one.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness  # noqa: E402

import numpy as np  # noqa: E402

D, GAMMA, ALPHA, TEST = 10, 0.05, 1e-2, 20_000
MAX_ITER, TOL = 30, 1e-4


def _write_data(path: Path, n: int, seed: int, dtype) -> None:
    """Training rows in ``.npy`` files, written in chunks (never n x d in memory), and a held-out set."""
    if (path / "done").exists():
        return
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    X = np.lib.format.open_memmap(path / "X.npy", mode="w+", dtype=dtype, shape=(n, D))
    y = np.lib.format.open_memmap(path / "y.npy", mode="w+", dtype=np.float64, shape=(n,))
    for i in range(0, n, 1 << 20):
        c = min(1 << 20, n - i)
        Xc = rng.normal(size=(c, D))
        X[i : i + c] = Xc
        y[i : i + c] = np.sin(Xc[:, 0]) + np.cos(Xc[:, 1]) * Xc[:, 2] + 0.1 * rng.normal(size=c)
    X.flush()
    y.flush()
    Xt = rng.normal(size=(TEST, D))
    np.save(path / "Xt.npy", Xt)
    np.save(path / "yt.npy", np.sin(Xt[:, 0]) + np.cos(Xt[:, 1]) * Xt[:, 2] + 0.1 * rng.normal(size=TEST))
    (path / "done").write_text("ok")


def _model(method: str, m: int):
    from rkbs.estimators import RKBSRegressor

    if method == "exact":
        return RKBSRegressor(kernel_params={"gamma": GAMMA}, alpha=ALPHA, solver="cholesky")
    solver = "cholesky" if method == "direct" else "falkon"
    return RKBSRegressor(kernel_params={"gamma": GAMMA}, alpha=ALPHA, n_components=m, solver=solver,
                         random_state=0, tol=TOL, max_iter=MAX_ITER)


def _fit_child(method: str, path: str, m: int, threads: int, queue, rank: int = 0, world: int = 1) -> None:
    import warnings

    import torch
    from sklearn.metrics import r2_score

    torch.set_num_threads(threads)
    path = Path(path)
    mmap = "memmap" in method or world > 1
    X = np.load(path / "X.npy", mmap_mode="r")
    y = np.load(path / "y.npy", mmap_mode="r")
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo", init_method=f"file://{path}/rendezvous-{os.getppid()}", rank=rank,
                                world_size=world)
        shard = np.array_split(np.arange(len(X)), world)[rank]
        X, y = X[shard[0] : shard[-1] + 1], y[shard[0] : shard[-1] + 1]
    if not mmap:
        X, y = np.array(X, dtype=np.float64 if method != "falkon32" else np.float32), np.array(y)
    base = _harness.peak_rss_mib()
    model = _model(method, m)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        if method == "sklearn":
            from sklearn.kernel_approximation import Nystroem
            from sklearn.linear_model import Ridge
            from sklearn.pipeline import make_pipeline

            model = make_pipeline(Nystroem(gamma=GAMMA, n_components=m, random_state=0),
                                  Ridge(alpha=ALPHA, fit_intercept=False)).fit(X, y)
        elif world > 1:
            from rkbs.distributed import data_parallel

            with data_parallel():
                model.fit(X, y)
        else:
            model.fit(X, y)
        fit_s = time.perf_counter() - t0
    peak = _harness.peak_rss_mib() - base
    if world > 1:
        import torch.distributed as dist

        peaks = torch.tensor([peak], dtype=torch.float64)
        dist.all_reduce(peaks, op=dist.ReduceOp.MAX)
        peak = float(peaks[0])
        dist.barrier()
        dist.destroy_process_group()
        if rank != 0:
            return
    r2 = float(r2_score(np.load(path / "yt.npy"), model.predict(np.load(path / "Xt.npy"))))
    queue.put({"fit_s": round(fit_s, 2), "peak_above_data_mib": round(peak, 1), "test_r2": round(r2, 5),
               "n_iter": getattr(model, "n_iter_", None), "threads": threads,
               "warnings": sorted({type(w.message).__name__ for w in caught})})


def _run(method: str, path: Path, m: int, threads: int, world: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_fit_child, args=(method, str(path), m, max(1, threads // world), queue, r, world))
             for r in range(world)]
    for p in procs:
        p.start()
    result = queue.get()
    for p in procs:
        p.join()
    return result


def main(argv=None) -> None:
    parser = _harness.make_parser(__doc__, name="rkbs_scale")
    parser.add_argument("--max-n", type=int, default=10_000_000, help="largest n (default: %(default)s)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="only these n (default: all)")
    parser.add_argument("--methods", nargs="+", default=None, help="only these methods, in this order")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "rkbs_scale_data",
                        help="where the .npy data files are written once (default: %(default)s)")
    args = parser.parse_args(argv)
    threads = args.threads or 2
    m = 200 if args.quick else 2000
    plan = [(10_000, "exact", 1)]
    for n in (10_000, 100_000, 1_000_000, 10_000_000):
        if n > (100_000 if args.quick else args.max_n):
            continue
        if n <= 200_000:
            plan.append((n, "sklearn", 1))
        if n <= 1_000_000:
            plan += [(n, "direct", 1), (n, "falkon64", 1)]
        if n < 10_000_000:
            plan.append((n, "falkon32", 1))
        plan += [(n, "falkon32-memmap", 1), (n, "falkon32-2proc", 2)]
    if args.sizes:
        plan = [p for p in plan if p[0] in args.sizes]
    if args.methods:
        plan = sorted((p for p in plan if p[1] in args.methods), key=lambda p: (p[0], args.methods.index(p[1])))
    results = _harness.Results.open(args, key=("n", "method", "seed"),
                                    config={"d": D, "m": m, "gamma": GAMMA, "alpha": ALPHA, "tol": TOL,
                                            "max_iter": MAX_ITER, "falkon_preconditioner": "sketch of 10 m rows"})
    for key in results.pending([dict(n=n, method=meth, seed=s) for n, meth, _ in plan for s in args.seeds]):
        world = 2 if key["method"].endswith("2proc") else 1
        dtype = np.float32 if "32" in key["method"] else np.float64
        path = args.data_dir / f"n{key['n']}_s{key['seed']}_{np.dtype(dtype).name}"
        _harness.log(f"{key}: data")
        _write_data(path, key["n"], key["seed"], dtype)
        row = _run(key["method"], path, m if key["method"] != "exact" else None, threads, world)
        _harness.log(f"{key}: {row}")
        results.add({**key, "m": m, "processes": world, **row})
    _report(results, args)


def _report(results, args) -> None:
    rows = sorted(results.rows, key=lambda r: (r["n"], r["method"]))
    direct = {r["n"]: r["test_r2"] for r in rows if r["method"] == "direct"}
    machine = ("Quiet machine." if args.out.name == "quiet" else
               "Shared 2-core machine (timings pessimistic; re-run `python benchmarks/rkbs_scale.py --out "
               "benchmarks/results/quiet` on a quiet one).")
    lines = [machine, "", "| n | method | processes | fit (s) | peak above data (MiB) | test R^2 | R^2 - direct | "
             "iterations |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gap = f"{r['test_r2'] - direct[r['n']]:+.4f}" if r["n"] in direct else "-"
        lines.append(f"| {r['n']:,} | {r['method']} | {r['processes']} | {r['fit_s']} | {r['peak_above_data_mib']} | "
                     f"{r['test_r2']} | {gap} | {r['n_iter']} |")
    out = _harness.results_path(args).with_suffix(".md")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
