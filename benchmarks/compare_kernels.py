"""Which attention kernel, and does infinite feature dimension matter? Trained models against known optima.

Models that are identical except for the attention kernel (same architecture, same initialisation and the same
training batches for a given seed) are trained on each task. The learning rate of every (task, kernel) is chosen
from ``--lr-grid`` on a validation set with the first seed; the other seeds reuse it. Reported per task: the
metric, its gap to the oracle (belief propagation, the Bayes predictor, perfect recall) or to the best baseline,
and the 95% confidence interval (t, paired over seeds) of each kernel's difference from EDP. Two ladders of finite
approximations of EDP (``taylor_edp`` degree 1..6, positive random features m = 4..1024) are plotted against their
feature dimension, with EDP as the asymptote and the number of keys marked. A swap test evaluates each trained
EDP model with every approximation in place of EDP. Two analyses need no training: the SNR gain per layer of
subspace denoising (MSSA with each kernel) and the descent of the attention energy under each kernel's step.

    python benchmarks/compare_kernels.py --quick          # a small real run, about 1.5 CPU-minutes
    python benchmarks/compare_kernels.py --plan           # times a few steps of every full task, prints the total
    nice python benchmarks/compare_kernels.py             # the full run (resumable: rerun to continue)

Writes ``benchmarks/results/compare_kernels[_quick].{json,csv,md}``, ``..._ladder.png``, ``..._swap.png`` and
``..._icl.png``.
"""

from __future__ import annotations

import math
import time

import _harness
import numpy as np
import torch
from _compare_report import plot_icl, plot_ladder, plot_swap, write_markdown
from _kernel_tasks import ALL_KERNELS, LADDER, feature_dim, make_kernel, make_tasks

FULL = dict(
    kernels=ALL_KERNELS,
    tasks=("root-k0", "mlm-k0", "mlm-k2", "mlm-k3", "recall-4", "recall-16", "recall-64", "text", "digits",
           *(f"icl-{p}-L{d}-{b}" for p in ("gaussian", "tree") for d in (1, 2, 4, 8) for b in ("attn", "mlp"))),
    analyses=("subspace", "energy"), seeds=(0, 1, 2, 3, 4), lr_grid=(1e-3, 3e-3, 1e-2),
    cfg=dict(depth=3, n_symbols=4, grammar_seed=0, dim=48, layers=3, heads=4, recall_vocab=64, context=256,
             icl_dim=8, icl_context=8, icl_noise=0.25, icl_branching=4),
    steps={"root": 3000, "mlm": 6000, "recall": 4000, "text": 3000, "digits": 1500, "icl": 4000},
    batch={"root": 128, "mlm": 128, "recall": 64, "text": 16, "digits": 64, "icl": 256}, n_eval=2000,
)
QUICK = dict(
    kernels=("edp", "linear", "taylor_edp-2", "prf-4", "prf-16"),
    tasks=("root-k0", "digits", "icl-tree-L2-attn"), analyses=("subspace", "energy"), seeds=(0, 1),
    lr_grid=(3e-3, 1e-2),
    cfg=dict(depth=3, n_symbols=4, grammar_seed=0, dim=32, layers=2, heads=1, recall_vocab=16, context=64,
             icl_dim=8, icl_context=8, icl_noise=0.25, icl_branching=4),
    steps={"root": 300, "mlm": 300, "recall": 300, "text": 100, "digits": 300, "icl": 300},
    batch={"root": 64, "mlm": 64, "recall": 64, "text": 16, "digits": 64, "icl": 128}, n_eval=500,
)


def _family(task_name: str) -> str:
    return task_name.split("-")[0]


def train(task, kernel_id, lr, seed, steps, batch, swap_kernels=()):
    """Train one model; return validation and test metric, seconds, and (for EDP) the swap-test metrics."""
    model = task.build(kernel_id, seed)
    rng = np.random.RandomState(seed)  # the same batches for every kernel
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(steps, 2),
                                                   pct_start=0.1)
    start, cpu_start = time.perf_counter(), time.process_time()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        loss = task.loss(model, task.sample(batch, rng))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    row = dict(validation=task.score(model, task.validation), test=task.score(model, task.test),
               final_train_loss=loss.item(), seconds=seconds, cpu_seconds=cpu_seconds, steps=steps, batch=batch)
    if swap_kernels and hasattr(model, "encoder"):
        swaps = {}
        for other in swap_kernels:
            kernel, normalize = make_kernel(other, seed)
            model.encoder.set_kernel(kernel, normalize)
            swaps[other] = task.score(model, task.test)
        row["swap"] = swaps
    return row


# ------------------------------------------------------------------------------------------------ analyses
def subspace_gain(kernel_id, seed, n_layers=3, eta=0.5):
    """Mean SNR gain per layer of ``Z + eta MSSA(Z)`` with the true subspaces (no training, no LayerNorm)."""
    from attention_kernels.testbeds.datasets import make_subspace_tokens, subspace_snr
    from attention_kernels.testbeds.models import AttentionOnlyTransformer

    kernel, normalize = make_kernel(kernel_id, seed)
    if not (normalize and kernel.positive_valued):
        return dict(value=None, note="MSSA row-normalizes: needs a normalized positive kernel")
    Z, labels, bases = make_subspace_tokens(4, 16, 100, delta=0.2, random_state=seed)
    model = AttentionOnlyTransformer(Z.shape[1], n_layers, 4, 16, kernel=kernel, step_size=eta,
                                     layer_norm=False).double()
    z = torch.from_numpy(Z).unsqueeze(0)
    ratios = []
    with torch.no_grad():
        for block in model.blocks:
            block.bases.copy_(torch.from_numpy(bases))
            before = subspace_snr(z[0], bases, labels)
            z = z + eta * block(z)
            ratios.append(float(np.mean(subspace_snr(z[0], bases, labels) / before)))
    return dict(value=float(np.exp(np.mean(np.log(ratios)))), per_layer=ratios)


def energy_descent(kernel_id, seed, n_steps=8, n_tokens=50, dim=16):
    """Relative decrease per step of the attention energy under ``Y <- attention(Y, Y, Y)`` with this kernel."""
    from attention_kernels.functional import kernel_attention
    from attention_kernels.testbeds.energy import attention_energy

    kernel, normalize = make_kernel(kernel_id, seed)
    g = torch.Generator().manual_seed(seed)
    Y = torch.randn(n_tokens, dim, generator=g, dtype=torch.float64)
    energies = [float(attention_energy(Y))]
    for _ in range(n_steps):
        out = kernel_attention(Y[None, None], Y[None, None], Y[None, None], kernel=kernel, normalize=normalize)[0, 0]
        Y = out if normalize else out / n_tokens
        if not torch.isfinite(Y).all():
            return dict(value=None, note="diverged", energies=energies)
        energies.append(float(attention_energy(Y)))
    e = np.array(energies)
    rate = float((e[0] - e[-1]) / (n_steps * abs(e[0])))
    return dict(value=rate, monotone=bool(np.all(np.diff(e) <= 1e-12 * abs(e[0]))), energies=energies)


# ------------------------------------------------------------------------------------------------ statistics
def paired_ci(a, b, level=0.95):
    """Mean and t confidence interval of ``a - b`` over paired seeds (``None`` bounds with fewer than 2 pairs)."""
    from scipy import stats

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    mean = float(d.mean())
    if len(d) < 2:
        return mean, None, None
    half = float(stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return mean, mean - half, mean + half


def summarize(results, tasks, kernels_of, seeds, lr_grid):
    """Per task and kernel: chosen lr (within ``lr_grid``), mean metric and gap over seeds, paired difference
    from EDP, time."""
    table = {}
    for name, task in tasks.items():
        per_kernel = {}
        for kernel in kernels_of(task):
            rows = results.select(task=name, kernel=kernel)
            first = [r for r in rows if r["seed"] == seeds[0] and r["lr"] in lr_grid and r.get("test") is not None]
            if not first:
                continue
            pick = max if task.higher_is_better else min
            lr = pick(first, key=lambda r: r["validation"])["lr"]
            chosen = {r["seed"]: r for r in rows if r["lr"] == lr and r["seed"] in seeds}
            per_kernel[kernel] = dict(lr=lr, seeds=sorted(chosen), test={s: r["test"] for s, r in chosen.items()},
                                      seconds_per_step=float(np.median([r["seconds"] / r["steps"]
                                                                        for r in chosen.values()])),
                                      swap=chosen[min(chosen)].get("swap"))
        if not per_kernel:
            continue
        means = {k: float(np.mean(list(v["test"].values()))) for k, v in per_kernel.items()}
        best = (max if task.higher_is_better else min)(means.values())
        edp = per_kernel.get("edp")
        for kernel, entry in per_kernel.items():
            entry["mean"] = means[kernel]
            entry["gap"] = task.gap(means[kernel], best)
            if edp is not None and kernel != "edp":
                common = sorted(set(entry["test"]) & set(edp["test"]))
                if common:
                    entry["diff_vs_edp"] = paired_ci([entry["test"][s] for s in common],
                                                     [edp["test"][s] for s in common])
            entry["feature_dim"] = feature_dim(kernel, task.head_dim) if task.kernels is None else None
        table[name] = dict(metric=task.metric, higher_is_better=task.higher_is_better, oracle=task.oracle,
                           oracle_name=task.oracle_name, floor=task.floor, baselines=task.baselines,
                           n_keys=task.n_keys, best=best, kernels=per_kernel)
    return table


def plan(args):
    """Time a few training steps of EDP on every full task and print (and store) the cost of the full run.

    Steps are timed in CPU seconds of this process (``time.process_time``), which on a shared machine estimates
    the wall time of the same single-threaded run on a quiet one.
    """
    tasks = make_tasks(FULL["tasks"], FULL["cfg"], 200)
    total, lines = 0.0, []
    for name, task in tasks.items():
        family = _family(name)
        n_kernels = len(task.kernels or FULL["kernels"])
        n_runs = n_kernels * (len(FULL["lr_grid"]) + len(FULL["seeds"]) - 1)
        probe = train(task, "edp" if task.kernels is None else task.kernels[0], 1e-3, 0, 5, FULL["batch"][family])
        per_step = probe["cpu_seconds"] / 5
        hours = per_step * FULL["steps"][family] * n_runs / 3600
        total += hours
        lines.append(f"{name:22s} {n_runs:4d} trainings x {FULL['steps'][family]} steps x {per_step * 1e3:7.1f} "
                     f"ms = {hours:7.1f} h")
        _harness.log(lines[-1])
    run = _harness.run_info()
    lines += [f"total: about {total:.0f} CPU-hours (EDP's step time for every kernel; single-threaded)",
              f"measured {run['started']} by `{run['command']}` at commit {run['git_commit']}, "
              f"load average {run['machine']['load_average']}"]
    print("\n".join(lines[-2:]))
    out = args.out / "compare_kernels_plan.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return total


def main(argv=None):
    parser = _harness.make_parser(__doc__, name="compare_kernels", seeds=FULL["seeds"])
    parser.add_argument("--kernels", nargs="+", default=None, help=f"kernel ids (default: all {len(ALL_KERNELS)})")
    parser.add_argument("--tasks", nargs="+", default=None, help="task names (default: every task)")
    parser.add_argument("--lr-grid", type=float, nargs="+", default=None, help="learning rates tried per kernel")
    parser.add_argument("--steps", type=int, default=None, help="training steps of every task (default: per task)")
    parser.add_argument("--plan", action="store_true", help="only time the full run and print its cost")
    parser.set_defaults(threads=1)
    args = parser.parse_args(argv)
    _harness.setup(args)
    if args.plan:
        plan(args)
        return None
    spec = QUICK if args.quick else FULL
    if args.seeds == list(FULL["seeds"]) and args.quick:
        args.seeds = list(QUICK["seeds"])
    kernels = tuple(args.kernels or spec["kernels"])
    for k in kernels:
        make_kernel(k)  # unknown ids fail before any training
    task_names = tuple(args.tasks or (*spec["tasks"], *spec["analyses"]))
    lr_grid = tuple(args.lr_grid or spec["lr_grid"])
    if args.steps is not None:
        if args.steps < 2:
            raise SystemExit(f"--steps must be >= 2, got {args.steps}")
        spec = dict(spec, steps={family: args.steps for family in spec["steps"]})
    config = dict(cfg=spec["cfg"], steps=spec["steps"], batch=spec["batch"], n_eval=spec["n_eval"])
    results = _harness.Results.open(args, key=("task", "kernel", "lr", "seed"), config=config)
    trained = tuple(t for t in task_names if t not in ("subspace", "energy"))
    tasks = make_tasks(trained, spec["cfg"], spec["n_eval"])
    swap = tuple(k for k in kernels if k in LADDER)

    def kernels_of(task):
        return task.kernels or kernels

    start = time.perf_counter()
    for name, task in tasks.items():
        family = _family(name)
        steps, batch = spec["steps"][family], spec["batch"][family]
        for kernel in kernels_of(task):
            grid = [dict(task=name, kernel=kernel, lr=lr, seed=args.seeds[0]) for lr in lr_grid]
            for key in results.pending(grid, desc=f"{name} {kernel} lr"):
                row = train(task, kernel, key["lr"], key["seed"], steps, batch, swap if kernel == "edp" else ())
                results.add(dict(key, **row))
            first = results.select(task=name, kernel=kernel, seed=args.seeds[0])
            first = [r for r in first if r["lr"] in lr_grid]
            lr = (max if task.higher_is_better else min)(first, key=lambda r: r["validation"])["lr"]
            others = [dict(task=name, kernel=kernel, lr=lr, seed=s) for s in args.seeds[1:]]
            for key in results.pending(others, desc=f"{name} {kernel} seeds"):
                row = train(task, kernel, lr, key["seed"], steps, batch, swap if kernel == "edp" else ())
                results.add(dict(key, **row))
            tests = [r["test"] for r in results.select(task=name, kernel=kernel, lr=lr)]
            _harness.log(f"{name:18s} {kernel:24s} lr={lr:g} test={np.mean(tests):.4f} over {len(tests)} seed(s)")
    for analysis, fn in (("subspace", subspace_gain), ("energy", energy_descent)):
        if analysis in task_names:
            keys = [dict(task=analysis, kernel=k, lr=None, seed=s) for k in kernels for s in args.seeds]
            for key in results.pending(keys, desc=analysis):
                results.add(dict(key, **fn(key["kernel"], key["seed"])))
    table = summarize(results, tasks, kernels_of, args.seeds, lr_grid)
    analyses = {a: {k: [r.get("value") for r in results.select(task=a, kernel=k)] for k in kernels}
                for a in ("subspace", "energy") if a in task_names}
    results.set_summary(tasks=table, analyses=analyses, seconds_this_run=time.perf_counter() - start)
    stem = results.path.with_suffix("")
    caption = _harness.provenance_caption(results)
    write_markdown(table, analyses, results, stem.with_suffix(".md"))
    plot_ladder(table, stem.parent / f"{stem.name}_ladder.png", caption)
    plot_swap(table, stem.parent / f"{stem.name}_swap.png", caption)
    plot_icl(table, stem.parent / f"{stem.name}_icl.png", caption)
    print(f"wrote {stem}.json/.csv/.md and the ladder and swap plots ({time.perf_counter() - start:.0f} s)")
    results.close()  # the rows stay readable; the file is free for the next run
    return results


if __name__ == "__main__":
    main()
