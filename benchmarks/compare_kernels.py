"""Which attention kernel, and does infinite feature dimension matter? Trained models against known optima.

Models that are identical except for the attention kernel (same architecture, same initialisation and the same
training batches for a given seed) are trained on each task. The learning rate of every (task, kernel) is chosen
on a validation set by short probe runs (``probe_fraction`` of the steps, one per rate of ``--lr-grid``, first
seed); then every seed trains at that rate for the full steps. Reported per task: the metric, its gap to the
oracle (belief propagation, the Bayes predictor, perfect recall) or to the best baseline, and the 95% confidence
interval (t, paired over seeds) of each kernel's difference from EDP. Two ladders of finite approximations of EDP
(``taylor_edp`` degree 1..6, positive random features m = 4..1024) are plotted against their feature dimension,
with EDP as the asymptote and the number of keys marked. A swap test evaluates each trained EDP model with every
approximation in place of EDP. Two analyses need no training: the SNR gain per layer of subspace denoising (MSSA
with each kernel) and the descent of the attention energy under each kernel's step.

The run goes task by task (every kernel and seed of a task before the next task), so complete tasks accumulate;
the report marks a partial file ("n of m runs done"). On several cores, run disjoint ``--tasks`` subsets as
parallel shards, each with its own ``--out`` folder (holding a copy of the results file, to skip what is done),
and ``--merge`` their files into the results file.

    python benchmarks/compare_kernels.py --quick          # a small real run, about 1.5 CPU-minutes
    python benchmarks/compare_kernels.py --plan           # times a few steps of every kernel on every full task
    python benchmarks/compare_kernels.py --curves         # EDP learning curves of the full tasks (sets the steps)
    python benchmarks/compare_kernels.py --clip-sensitivity --tasks icl-tree-L4-mlp  # the rate per clipping factor
    nice python benchmarks/compare_kernels.py             # the full run (resumable: rerun to continue)
    python benchmarks/compare_kernels.py --merge a/compare_kernels.json b/compare_kernels.json  # add shards' results
    python benchmarks/compare_kernels.py --report benchmarks/results/compare_kernels.json --readme README.md

Writes ``benchmarks/results/compare_kernels[_quick].{json,csv,md}``, ``..._ladder.png``, ``..._swap.png`` and
``..._icl.png``.
"""

from __future__ import annotations

import time
from pathlib import Path

import _harness
import numpy as np
import torch
from _compare_plan import budget, learning_curve, plan
from _compare_report import history, plot_icl, plot_ladder, plot_swap, update_readme, write_markdown
from _compare_sensitivity import clip_sensitivity
from _compare_stats import chosen_lr, completed_runs, compares_at_full_length, expected_runs, finite, summarize
from _kernel_tasks import ALL_KERNELS, LADDER, make_kernel, make_tasks, selects_at_full_length

_HIER = ("root-k0", "mlm-k0", "mlm-k2", "mlm-k3")
_ICL = tuple(f"icl-{p}-L{d}-{b}" for p in ("gaussian", "tree") for d in (1, 2, 4, 8) for b in ("attn", "mlp"))
# Steps: where EDP's validation curve flattens (``--curves``; docs/kernel_comparison.md has the curves); batches
# and widths sized so that the whole run costs about 15 CPU-hours single-threaded (``--plan``).
FULL = dict(
    kernels=ALL_KERNELS,
    tasks=("recall-4", "recall-16", *_ICL, "recall-64", "root-k0", "mlm-k0", "mlm-k0-long", "root-k0-long", "text",
           "mlm-k2", "mlm-k3", "digits", "mlm-k3-long"),
    analyses=("subspace", "energy"), seeds=(0, 1, 2, 3, 4), lr_grid=(1e-3, 3e-3, 1e-2, 3e-2), probe_fraction=0.2,
    cfg=dict(depth=3, n_symbols=4, grammar_seed=0, dim=48, layers=3, heads=4, recall_vocab=64, recall_layers=1,
             context=256, text_dim=48, text_layers=2, text_heads=2, icl_dim=8, icl_context=8, icl_noise=0.25,
             icl_branching=4),
    steps={"root": 1500, "root-long": 3000, "mlm": 3000, "mlm-k2": 1500, "mlm-k3": 1500, "mlm-long": 12000,
           "recall": 1000, "text": 1000, "digits": 800, "icl": 3000},
    batch={"root": 64, "root-long": 64, "mlm": 64, "mlm-k2": 64, "mlm-k3": 64, "mlm-long": 128, "recall": 16,
           "text": 8, "digits": 64, "icl": 256}, n_eval=1000,
)
QUICK = dict(
    kernels=("edp", "linear", "taylor_edp-2", "prf-4", "prf-16"),
    tasks=("root-k0", "recall-16", "digits", "icl-tree-L2-attn"), analyses=("subspace", "energy"), seeds=(0, 1),
    lr_grid=(3e-3, 1e-2), probe_fraction=0.25,
    cfg=dict(depth=3, n_symbols=4, grammar_seed=0, dim=32, layers=2, heads=1, recall_vocab=16, recall_layers=1,
             context=64, icl_dim=8, icl_context=8, icl_noise=0.25, icl_branching=4),
    steps={"root": 300, "root-long": 300, "mlm": 300, "mlm-long": 300, "recall": 200, "text": 100, "digits": 300,
           "icl": 300},
    batch={"root": 64, "root-long": 64, "mlm": 64, "mlm-long": 64, "recall": 32, "text": 16, "digits": 64,
           "icl": 128}, n_eval=500,
)
_ANALYSES = ("subspace", "energy")
_RUN_KEY = ("task", "kernel", "phase", "lr", "seed")


def make_optimizer(model, lr: float, steps: int):
    """AdamW (weight decay 0.01) with a one-cycle schedule over ``steps`` (10% warm-up): one rule for every run."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    total = max(steps, 2)
    # OneCycleLR divides by its warm-up's length in steps minus one: a warm-up of exactly one step (10 steps in
    # all) gets one and a half instead
    pct_start = 0.1 if abs(0.1 * total - 1.0) > 1e-9 else 0.15
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total, pct_start=pct_start)
    return optimizer, schedule


def training_steps(task, model, lr: float, steps: int, batch: int, seed: int):
    """The one training loop of every run: the seed's batches (the same for every kernel), AdamW with the
    one-cycle schedule, gradients clipped at 1. Yields ``(step, loss, applied)`` after each step.

    A step whose loss or gradient norm is not finite is skipped (``applied=False``; the schedule still advances),
    as loss scaling skips overflowing steps: one overflowing batch would otherwise make every parameter NaN. Only
    the un-normalized deep in-context models meet such batches (their layers are cubic in the prompt, and a
    prompt from the inputs' Gaussian tail overflows float32); a run that never meets one is unchanged by it.
    """
    rng = np.random.RandomState(seed)
    optimizer, schedule = make_optimizer(model, lr, steps)
    for step in range(1, steps + 1):
        loss = task.loss(model, task.sample(batch, rng))
        optimizer.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        applied = bool(torch.isfinite(loss) and torch.isfinite(norm))
        if applied:
            optimizer.step()
        schedule.step()
        yield step, loss, applied


def train(task, kernel_id, lr, seed, steps, batch, swap_kernels=(), evaluate_test=True):
    """Train one model; return validation (and test) metric, seconds, and (for EDP) the swap-test metrics."""
    model = task.build(kernel_id, seed)
    start, cpu_start = time.perf_counter(), time.process_time()
    loss, skipped = torch.tensor(float("nan")), 0
    for _, loss, applied in training_steps(task, model, lr, steps, batch, seed):
        skipped += not applied
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    row = dict(validation=task.score(model, task.validation, statistic=task.selection),
               test=task.score(model, task.test) if evaluate_test else None,
               final_train_loss=loss.item(), seconds=seconds, cpu_seconds=cpu_seconds, steps=steps, batch=batch,
               skipped_steps=skipped)
    if task.metric == "mse" and evaluate_test:  # the typical prompt beside the mean (see Task.score)
        row["test_median"] = task.score(model, task.test, statistic="median")
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


_DIVERGED = 1e6  # an energy this many times its start (in absolute value) has diverged


def energy_rate(energies) -> float | None:
    """Relative decrease per step, ``(E_0 - E_T) / (T |E_0|)``, of an energy trajectory; ``None`` if it diverged.

    Diverged: a non-finite energy, or one ``_DIVERGED`` times its start in absolute value (an un-normalized map
    can grow without bound, as odd Taylor truncations do). The report applies it to stored trajectories too.
    """
    e = np.asarray(energies, dtype=float)
    if len(e) < 2 or not np.all(np.isfinite(e)) or np.max(np.abs(e)) > _DIVERGED * abs(e[0]):
        return None
    return float((e[0] - e[-1]) / ((len(e) - 1) * abs(e[0])))


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
        if energy_rate(energies) is None:
            return dict(value=None, note="diverged", energies=energies)
    e = np.array(energies)
    return dict(value=energy_rate(energies), monotone=bool(np.all(np.diff(e) <= 1e-12 * abs(e[0]))),
                energies=energies)


# ------------------------------------------------------------------------------------------------ stored description
def task_meta(task) -> dict:
    """What the report needs of a task, stored in the results file so that it can be rebuilt without the data."""
    return dict(metric=task.metric, higher_is_better=task.higher_is_better, oracle=task.oracle,
                oracle_name=task.oracle_name, floor=task.floor, baselines=task.baselines,
                baseline_medians=task.baseline_medians, n_keys=task.n_keys,
                head_dim=task.head_dim, kernels=None if task.kernels is None else list(task.kernels),
                selection=task.selection)


# ------------------------------------------------------------------------------------------------ report
def report(results_path, out_dir=None, readme=None):
    """Tables and plots (and optionally the README block) from a results file, complete or partial.

    Returns ``(table, progress)`` where ``progress = (runs done, runs of the complete run)``.
    """
    data = _harness.load_results(results_path)
    summary = data.get("summary", {})
    meta, plan_ = summary.get("task_meta"), summary.get("plan")
    if not meta or not plan_:
        raise ValueError(f"{results_path} has no task_meta/plan in its summary: not a compare_kernels file of "
                         "this layout (rerun compare_kernels.py on it to add them)")
    rows = data["results"]
    kernels, seeds, lr_grid = plan_["kernels"], plan_["seeds"], tuple(plan_["lr_grid"])
    table = summarize(rows, meta, kernels, seeds, lr_grid)
    analyses = {a: {k: [_analysis_value(r) for r in rows if r["task"] == a and r["kernel"] == k] for k in kernels}
                for a in plan_["analyses"]}
    analyses = {a: {k: v for k, v in vals.items() if v} for a, vals in analyses.items()}
    progress = (completed_runs(rows, meta, kernels, seeds, lr_grid, plan_["analyses"]),
                expected_runs(meta, kernels, len(seeds), lr_grid, plan_["analyses"]))
    path = Path(results_path)
    stem = (Path(out_dir) if out_dir else path.parent) / path.stem
    stem.parent.mkdir(parents=True, exist_ok=True)
    run = data["runs"][-1] if data["runs"] else {}
    caption = _caption(run, progress)
    provenance = history(data["runs"], rows)
    write_markdown(table, analyses, run, progress, stem.with_suffix(".md"), title=path.name, provenance=provenance)
    ladder = plot_ladder(table, stem.parent / f"{stem.name}_ladder.png", caption)
    plot_swap(table, stem.parent / f"{stem.name}_swap.png", caption)
    plot_icl(table, stem.parent / f"{stem.name}_icl.png", caption)
    if readme is not None:
        update_readme(readme, table, run, progress, ladder=ladder and ladder.name, results=path.name,
                      provenance=provenance)
    return table, progress


def _analysis_value(row):
    """A stored analysis value; energy rates are recomputed from the stored trajectory (one divergence rule)."""
    if row["task"] == "energy" and row.get("note") != "diverged" and row.get("energies"):
        return energy_rate(row["energies"])
    return row.get("value")


def _caption(run, progress):
    commit = (run.get("git_commit") or "?")[:10]
    machine = run.get("machine", {})
    done, total = progress
    status = "complete" if done >= total else f"PARTIAL: {done} of {total} runs done"
    return (f"{status}  |  {run.get('command')}  |  commit {commit}  |  {machine.get('processor')}, "
            f"{machine.get('usable_cpus')} CPUs")  # the status first: a long command is cut at the figure's edge


# ------------------------------------------------------------------------------------------------ main
def main(argv=None):
    parser = _harness.make_parser(__doc__, name="compare_kernels", seeds=FULL["seeds"])
    parser.add_argument("--kernels", nargs="+", default=None, help=f"kernel ids (default: all {len(ALL_KERNELS)})")
    parser.add_argument("--tasks", nargs="+", default=None, help="task names (default: every task)")
    parser.add_argument("--lr-grid", type=float, nargs="+", default=None, help="learning rates probed per kernel")
    parser.add_argument("--steps", type=int, default=None, help="training steps of every task (default: per task)")
    parser.add_argument("--plan", action="store_true", help="only time every kernel's steps and print the cost")
    parser.add_argument("--curves", action="store_true", help="only train EDP with validation checkpoints")
    parser.add_argument("--clip-sensitivity", action="store_true",
                        help="only retrain the in-context tasks' probes and record the rate each clipping factor "
                             "of the validation error would choose")
    parser.add_argument("--report", type=Path, default=None, metavar="JSON",
                        help="only rebuild tables and plots from a results file (complete or partial)")
    parser.add_argument("--readme", type=Path, default=None, help="with --report: update this README's block")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                        help="only add these files' results (parallel shards) to the results file")
    parser.set_defaults(threads=1)
    args = parser.parse_args(argv)
    if args.readme is not None and args.report is None:
        parser.error("--readme needs --report JSON (the README block is built from a results file)")
    if args.report is not None:
        table, (done, total) = report(args.report, None, args.readme)
        print(f"{args.report}: {done} of {total} runs done; {len(table)} task(s) with results")
        return table
    _harness.setup(args)
    spec = QUICK if args.quick else FULL
    if args.seeds == list(FULL["seeds"]) and args.quick:
        args.seeds = list(QUICK["seeds"])
    if args.steps is not None:
        if args.steps < 2:
            raise SystemExit(f"--steps must be >= 2, got {args.steps}")
        spec = dict(spec, steps={key: args.steps for key in spec["steps"]})
    if args.lr_grid:
        spec = dict(spec, lr_grid=tuple(args.lr_grid))
    kernels = tuple(args.kernels or spec["kernels"])
    for k in kernels:
        make_kernel(k)  # unknown ids fail before any training
    task_names = tuple(args.tasks or (*spec["tasks"], *spec["analyses"]))
    trained = tuple(t for t in task_names if t not in _ANALYSES)
    if args.merge:
        return merge(args, args.merge)
    if args.plan:
        return plan(spec, kernels, trained, len(args.seeds), args.out / f"{args.name}_plan",
                    progress=not args.no_progress)
    if args.curves:
        return curves(args, spec, trained)
    if args.clip_sensitivity:
        return clip_sensitivity(args, spec, trained)
    return run(args, spec, kernels, task_names, trained)


def curves(args, spec, trained):
    """EDP (or the task's fixed kernel) at the grid's middle rate, validation every 1/20 of the steps."""
    results = _harness.Results.open(_with_name(args, "_curves"), key=("task", "kernel", "lr", "seed"),
                                    config=dict(cfg=spec["cfg"], steps=spec["steps"], batch=spec["batch"]))
    lr = spec["lr_grid"][len(spec["lr_grid"]) // 2]
    for name, task in make_tasks(trained, spec["cfg"], spec["n_eval"]).items():
        kernel = (task.kernels or ("edp",))[0]
        steps, batch = budget(spec, name)
        for key in results.pending([dict(task=name, kernel=kernel, lr=lr, seed=s) for s in args.seeds[:1]]):
            row = learning_curve(task, kernel, lr, key["seed"], steps, batch, max(1, steps // 20))
            results.add(dict(key, **row, steps=steps, batch=batch, oracle=task.oracle, floor=task.floor))
            _harness.log(f"{name}: " + ", ".join(f"{s}:{v:.4f}" for s, v, _ in row["curve"]))
    results.close()
    return results


def _with_name(args, suffix):
    """A copy of the parsed flags writing to ``<name><suffix>``."""
    import argparse

    return argparse.Namespace(**dict(vars(args), name=args.name + suffix))


def _run_config(spec) -> dict:
    """What every stored result of a run shares: resuming or merging under another config is refused.

    The step and batch budgets are not in it: each row stores its own, and :func:`_check_budget` compares them
    task by task, so a task (and its budget) can join a results file without invalidating the others.
    """
    return dict(cfg=spec["cfg"], n_eval=spec["n_eval"], probe_fraction=spec["probe_fraction"])


def _widened_plan(stored: dict | None, new: dict) -> dict:
    """The union of a file's stored plan and an invocation's (kernels, seeds, analyses and rates).

    A file's plan describes its complete run, against which the report counts what is done: a resumed
    invocation on a subset (one task, one kernel, a shard) must not make a partial file look complete.
    """
    if not stored:
        return new
    union = {key: list(dict.fromkeys([*stored.get(key, []), *new[key]])) for key in ("kernels", "seeds", "analyses")}
    # a one-rate shard must not narrow the grid every other (task, kernel) chose its rate from
    return dict(union, lr_grid=sorted({*stored.get("lr_grid", []), *new["lr_grid"]}))


def _check_budget(rows, name: str, steps: int, probe_steps: int, batch: int) -> None:
    """Refuse to resume task ``name`` when a stored run of it was trained with another step or batch budget."""
    for r in rows:
        want = probe_steps if r.get("phase") == "probe" else steps
        if (r.get("steps"), r.get("batch")) != (want, batch):
            raise ValueError(f"task {name!r}: a stored {r.get('phase')} run ({r.get('kernel')}, lr {r.get('lr')}, "
                             f"seed {r.get('seed')}) trained {r.get('steps')} steps at batch {r.get('batch')}, but "
                             f"the budget is now {want} at batch {batch}; pass --fresh or another --out, or "
                             "restore the task's budget")


def merge(args, paths):
    """Add the results of parallel shards (``--tasks`` subsets written with ``--out``) to the results files."""
    done = _harness.merge_results(paths, args.out)
    for (target, added), path in zip(done, paths):
        print(f"{path}: {added} result(s) added to {target}")
    return done


def run(args, spec, kernels, task_names, trained):
    results = _harness.Results.open(args, key=_RUN_KEY, config=_run_config(spec))
    tasks = make_tasks(trained, spec["cfg"], spec["n_eval"])
    lr_grid = tuple(spec["lr_grid"])
    analyses = tuple(a for a in _ANALYSES if a in task_names)
    # an invocation on some tasks or kernels adds to the file's description of its complete run, never shrinks it
    meta = {**results.summary.get("task_meta", {}), **{name: task_meta(task) for name, task in tasks.items()}}
    plan_ = _widened_plan(results.summary.get("plan"), dict(kernels=list(kernels), seeds=list(args.seeds),
                                                           lr_grid=list(lr_grid), analyses=list(analyses)))
    results.set_summary(task_meta=meta, plan=plan_)
    swap = tuple(k for k in kernels if k in LADDER)
    start = time.perf_counter()
    for analysis, fn in (("subspace", subspace_gain), ("energy", energy_descent)):  # seconds: first
        if analysis in analyses:
            keys = [dict(task=analysis, kernel=k, phase="analysis", lr=None, seed=s) for k in kernels
                    for s in args.seeds]
            for key in results.pending(keys, desc=analysis):
                results.add(dict(key, **fn(key["kernel"], key["seed"])))
    for name, task in tasks.items():  # task by task: complete tasks accumulate
        steps, batch = budget(spec, name)
        probe_steps = max(2, round(spec["probe_fraction"] * steps))
        _check_budget(results.select(task=name), name, steps, probe_steps, batch)
        by_name = selects_at_full_length(name)

        def full_length(key):  # one full-length run (EDP's model is also swap-tested)
            return dict(key, **train(task, key["kernel"], key["lr"], key["seed"], steps, batch,
                                     swap if key["kernel"] == "edp" else ()))

        # a task with kernels of its own (the in-context and -long tasks) runs those of them that --kernels names
        for kernel in [k for k in task.kernels if k in kernels] if task.kernels else kernels:
            if len(lr_grid) > 1 and not by_name:
                grid = [dict(task=name, kernel=kernel, phase="probe", lr=lr, seed=args.seeds[0]) for lr in lr_grid]
                for key in results.pending(grid, desc=f"{name} {kernel} lr"):
                    results.add(dict(key, **train(task, kernel, key["lr"], key["seed"], probe_steps, batch,
                                                  evaluate_test=False)))
            if compares_at_full_length(results.select(task=name, kernel=kernel), lr_grid, task.floor, task.oracle,
                                       by_name):
                grid = [dict(task=name, kernel=kernel, phase="final", lr=lr, seed=args.seeds[0]) for lr in lr_grid]
                for key in results.pending(grid, desc=f"{name} {kernel} lr at full length"):
                    results.add(full_length(key))
            tried = []
            while (lr := chosen_lr(results.select(task=name, kernel=kernel), task.higher_is_better, lr_grid,
                                   task.floor, task.oracle, by_name, args.seeds[0])) not in tried:
                # (a rate that diverged at full length: the next one)
                tried.append(lr)
                seeds = [dict(task=name, kernel=kernel, phase="final", lr=lr, seed=s) for s in args.seeds]
                for key in results.pending(seeds, desc=f"{name} {kernel} seeds"):
                    results.add(full_length(key))
            tests = [r["test"] for r in results.select(task=name, kernel=kernel, phase="final", lr=lr)]
            ok = [t for t in tests if finite(t)]
            mean = f"{np.mean(ok):.4f}" if ok else "n/a"
            _harness.log(f"{name:18s} {kernel:24s} lr={lr:g} test={mean} over {len(ok)} seed(s)"
                         + (f", {len(tests) - len(ok)} diverged" if len(ok) < len(tests) else ""))
    table = summarize(results.rows, meta, plan_["kernels"], plan_["seeds"], tuple(plan_["lr_grid"]))
    results.set_summary(tasks=table, seconds_last_invocation=time.perf_counter() - start)
    results.close()  # the rows stay readable; the file is free for the next run
    _, (done, total) = report(results.path)
    print(f"wrote {results.path.with_suffix('')}.json/.csv/.md and the plots ({done} of {total} runs done, "
          f"{time.perf_counter() - start:.0f} s)")
    return results


if __name__ == "__main__":
    main()
