"""Seed tasks: small Transformers that differ only in attention kernel, measured against exact oracles.

1. Hierarchical root classification and masked-token prediction (filter levels 0..depth), against belief
   propagation (``hierarchical_bp``).
2. In-context linear regression under a Gaussian and a tree prior, constrained linear-attention models of depth
   1..4, against the Bayes-optimal predictor and ridge.

Training data are drawn fresh every step (online), test sets are fixed. Writes
``benchmarks/results/seed_tasks.json`` and ``seed_tasks.png``.

    python benchmarks/seed_tasks.py --quick          # a few minutes on two CPU cores
    python benchmarks/seed_tasks.py                  # every filter level, longer training
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from attention_kernels.testbeds.datasets import (
    bayes_optimal_prediction,
    hierarchical_bp,
    make_hierarchical_grammar,
    make_hierarchical_sequences,
    make_incontext_regression,
    make_tree_task_prior,
    mask_leaves,
    ridge_prediction,
)
from attention_kernels.testbeds.models import LinearAttentionRegressor, MaskedLanguageModel, SequenceClassifier

RESULTS = Path(__file__).resolve().parent / "results"
KERNELS = ("edp", "rbf", "polynomial", "elu", "linear")


def _parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="filter levels 0 and depth only, shorter training")
    parser.add_argument("--kernels", nargs="+", default=list(KERNELS), help="attention kernels to compare")
    parser.add_argument("--depth", type=int, default=3, help="tree depth (2**depth leaves)")
    parser.add_argument("--n-symbols", type=int, default=4)
    parser.add_argument("--steps", type=int, default=None, help="training steps per hierarchical model")
    parser.add_argument("--icl-steps", type=int, default=None, help="training steps per regression model")
    parser.add_argument("--tasks", nargs="+", default=["root", "mlm", "icl"], choices=["root", "mlm", "icl"])
    parser.add_argument("--dim", type=int, default=48, help="encoder width")
    parser.add_argument("--layers", type=int, default=2, help="encoder layers")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the CI box has 2 shared cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "seed_tasks")
    return parser.parse_args(argv)


def _hierarchical_model(task, kernel, n_symbols, n_leaves, args):
    config = dict(vocab_size=n_symbols + 1, max_len=n_leaves, dim=args.dim, n_layers=args.layers, n_heads=4,
                  kernel=kernel)
    if task == "root":
        return SequenceClassifier(n_symbols, **config)
    return MaskedLanguageModel(n_symbols, **config)


def _hierarchical_batch(task, n, depth, grammar, level, rng):
    X, y, _ = make_hierarchical_sequences(n, depth, filter_level=level, grammar=grammar, random_state=rng)
    if task == "root":
        return X, y, None
    X_masked, mask = mask_leaves(X, grammar.n_symbols, n_masked=1, random_state=rng)
    return X_masked, X[mask], mask


def run_hierarchical(task, kernel, level, grammar, args, steps, test):
    """Train one kernel's model on one filter level; return its test accuracy."""
    torch.manual_seed(args.seed)
    rng = np.random.RandomState(args.seed + 1)
    n_leaves = 2**args.depth
    model = _hierarchical_model(task, kernel, grammar.n_symbols, n_leaves, args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    bar = tqdm(range(steps), desc=f"{task} k={level} {kernel}", leave=False, mininterval=1.0)
    for _ in bar:
        X, target, mask = _hierarchical_batch(task, 128, args.depth, grammar, level, rng)
        logits = model(torch.from_numpy(X))
        if mask is not None:
            logits = logits[torch.from_numpy(mask)]
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(target))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    X, target, mask = test
    with torch.no_grad():
        logits = model(torch.from_numpy(X))
        if mask is not None:
            logits = logits[torch.from_numpy(mask)]
    return float(np.mean(logits.argmax(-1).numpy() == target)), float(loss.item())


def hierarchical_suite(task, args, steps, levels):
    grammar = make_hierarchical_grammar(args.n_symbols, sigma=1.0, random_state=args.seed)
    rows = []
    for level in levels:
        test_rng = np.random.RandomState(10_000 + level)
        test = _hierarchical_batch(task, 2000, args.depth, grammar, level, test_rng)
        root_post, leaf_post = hierarchical_bp(test[0], grammar, level)
        if task == "root":
            oracle = float(np.mean(root_post.argmax(-1) == test[1]))
        else:
            oracle = float(np.mean(leaf_post[test[2]].argmax(-1) == test[1]))
        for kernel in args.kernels:
            start = time.perf_counter()
            accuracy, final_loss = run_hierarchical(task, kernel, level, grammar, args, steps, test)
            rows.append(dict(task=task, filter_level=level, kernel=kernel, accuracy=accuracy, bp_accuracy=oracle,
                             ratio_to_bp=accuracy / oracle, final_train_loss=final_loss, steps=steps,
                             seconds=time.perf_counter() - start))
            tqdm.write(f"{task:4s} k={level} {kernel:10s} acc={accuracy:.3f} BP={oracle:.3f} "
                       f"ratio={accuracy / oracle:.3f}")
    return rows


def icl_suite(args, steps, depths):
    dim, n_context, noise = 4, 12, 0.25
    rows = []
    for prior_name in ("gaussian", "tree"):
        prior = (make_tree_task_prior(dim, tree_depth=2, branching=3, jitter=0.1, random_state=args.seed)
                 if prior_name == "tree" else "gaussian")
        X, y, _, prior = make_incontext_regression(4000, n_context, dim, prior=prior, noise=noise,
                                                   random_state=args.seed + 7)
        bayes = bayes_optimal_prediction(X[:, :-1], y[:, :-1], X[:, -1], prior, noise)
        ridge = ridge_prediction(X[:, :-1], y[:, :-1], X[:, -1], alpha=noise**2 / prior.variance)
        bayes_mse = float(np.mean((bayes - y[:, -1]) ** 2))
        ridge_mse = float(np.mean((ridge - y[:, -1]) ** 2))
        test = [torch.from_numpy(a).float() for a in (X[:, :-1], y[:, :-1], X[:, -1], y[:, -1])]
        for depth in depths:
            torch.manual_seed(args.seed)
            rng = np.random.RandomState(args.seed + depth)
            model = LinearAttentionRegressor(dim, n_layers=depth)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
            schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=steps, pct_start=0.1)
            start = time.perf_counter()
            bar = tqdm(range(steps), desc=f"icl {prior_name} L={depth}", leave=False, mininterval=1.0)
            for _ in bar:
                Xb, yb, _, _ = make_incontext_regression(256, n_context, dim, prior=prior, noise=noise, random_state=rng)
                Xb, yb = torch.from_numpy(Xb).float(), torch.from_numpy(yb).float()
                loss = torch.mean((model(Xb[:, :-1], yb[:, :-1], Xb[:, -1]) - yb[:, -1]) ** 2)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            with torch.no_grad():
                mse = float(torch.mean((model(*test[:3]) - test[3]) ** 2))
            rows.append(dict(task="icl", prior=prior_name, depth=depth, mse=mse, bayes_mse=bayes_mse,
                             ridge_mse=ridge_mse, steps=steps, seconds=time.perf_counter() - start))
            tqdm.write(f"icl  {prior_name:8s} L={depth} mse={mse:.4f} bayes={bayes_mse:.4f} ridge={ridge_mse:.4f}")
    return rows


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, task, title in ((axes[0], "root", "root classification"), (axes[1], "mlm", "masked token")):
        rows = [r for r in results if r["task"] == task]
        if not rows:
            ax.set_visible(False)
            continue
        levels = sorted({r["filter_level"] for r in rows})
        bp = [next(r["bp_accuracy"] for r in rows if r["filter_level"] == k) for k in levels]
        ax.plot(levels, bp, "k--", marker="s", label="BP (optimal)")
        for kernel in dict.fromkeys(r["kernel"] for r in rows):
            acc = [next(r["accuracy"] for r in rows if r["filter_level"] == k and r["kernel"] == kernel) for k in levels]
            ax.plot(levels, acc, marker="o", label=kernel)
        ax.set(xlabel="filter level k", ylabel="test accuracy", title=title, xticks=levels)
        ax.legend(fontsize=8)
    rows = [r for r in results if r["task"] == "icl"]
    ax = axes[2]
    ax.set_visible(bool(rows))
    for prior, color in (("gaussian", "tab:blue"), ("tree", "tab:red")):
        sub = [r for r in rows if r["prior"] == prior]
        if not sub:
            continue
        depths = [r["depth"] for r in sub]
        ax.plot(depths, [r["mse"] for r in sub], marker="o", color=color, label=f"linear attention, {prior}")
        ax.axhline(sub[0]["bayes_mse"], color=color, ls="--", label=f"Bayes, {prior}")
        ax.axhline(sub[0]["ridge_mse"], color=color, ls=":", label=f"ridge, {prior}")
        ax.set_xticks(depths)
    ax.set(xlabel="depth (layers)", ylabel="query MSE", title="in-context regression", yscale="log")
    if rows:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    args = _parse_args(argv)
    torch.set_num_threads(args.threads)
    levels = [0, args.depth] if args.quick else list(range(args.depth + 1))
    steps = args.steps or (1500 if args.quick else 3000)
    icl_steps = args.icl_steps or (2000 if args.quick else 5000)
    results, start = [], time.perf_counter()
    for task in ("root", "mlm"):
        if task in args.tasks:
            results += hierarchical_suite(task, args, steps, levels)
    if "icl" in args.tasks:
        results += icl_suite(args, icl_steps, [1, 2, 3, 4])
    meta = dict(quick=args.quick, depth=args.depth, dim=args.dim, layers=args.layers, lr=args.lr, n_symbols=args.n_symbols, kernels=args.kernels,
                seed=args.seed, threads=args.threads, torch=torch.__version__, machine=platform.processor()
                or platform.machine(), total_seconds=time.perf_counter() - start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(dict(meta=meta, results=results), indent=1))
    plot(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out.with_suffix('.json')} and .png in {meta['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
