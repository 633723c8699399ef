"""Seed tasks: small Transformers that differ only in attention kernel, measured against exact oracles.

1. Hierarchical root classification and masked-token prediction (filter levels 0..depth), against belief
   propagation (``hierarchical_bp``).
2. In-context linear regression under a Gaussian and a tree prior, constrained linear-attention models of depth
   1..4, against the Bayes-optimal predictor and ridge.

Training data are drawn fresh every step (online), test sets are fixed; the grammar and the priors come from
``--grammar-seed``, each of ``--seeds`` sets the initialisation and the data order. Writes
``benchmarks/results/seed_tasks[_quick].{json,csv,png}`` through the shared harness (``_harness.py``): each
finished (task, setting, kernel, seed) result is stored at once, and a rerun resumes where the last one stopped.

    python benchmarks/seed_tasks.py --quick          # a few minutes on two CPU cores
    python benchmarks/seed_tasks.py                  # every filter level, longer training
"""

from __future__ import annotations

import time

import _harness
import numpy as np
import torch

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

KERNELS = ("edp", "rbf", "polynomial", "elu", "linear")


def _parse_args(argv=None):
    parser = _harness.make_parser(__doc__, name="seed_tasks")
    parser.add_argument("--kernels", nargs="+", default=list(KERNELS), help="attention kernels to compare")
    parser.add_argument("--depth", type=int, default=3, help="tree depth (2**depth leaves)")
    parser.add_argument("--n-symbols", type=int, default=4)
    parser.add_argument("--steps", type=int, default=None, help="training steps per hierarchical model")
    parser.add_argument("--icl-steps", type=int, default=None, help="training steps per regression model")
    parser.add_argument("--tasks", nargs="+", default=["root", "mlm", "icl"], choices=["root", "mlm", "icl"])
    parser.add_argument("--dim", type=int, default=48, help="encoder width")
    parser.add_argument("--layers", type=int, default=2, help="encoder layers")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--grammar-seed", type=int, default=0, help="seed of the grammar and the task priors")
    parser.set_defaults(threads=1)  # the CI box has 2 shared cores
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


def run_hierarchical(task, kernel, level, grammar, args, steps, test, seed):
    """Train one kernel's model on one filter level; return its test accuracy and final training loss."""
    torch.manual_seed(seed)
    rng = np.random.RandomState(seed + 1)
    n_leaves = 2**args.depth
    model = _hierarchical_model(task, kernel, grammar.n_symbols, n_leaves, args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    bar = _harness.progress(range(steps), desc=f"{task} k={level} {kernel}", leave=False, disable=args.no_progress)
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


def hierarchical_suite(task, args, steps, levels, results):
    grammar = make_hierarchical_grammar(args.n_symbols, sigma=1.0, random_state=args.grammar_seed)
    for level in levels:
        keys = [dict(task=task, filter_level=level, prior=None, depth=None, kernel=kernel, seed=seed)
                for kernel in args.kernels for seed in args.seeds]
        if all(results.done(**key) for key in keys):
            continue
        test_rng = np.random.RandomState(10_000 + level)
        test = _hierarchical_batch(task, 2000, args.depth, grammar, level, test_rng)
        root_post, leaf_post = hierarchical_bp(test[0], grammar, level, mask_token=grammar.n_symbols)
        if task == "root":
            oracle = float(np.mean(root_post.argmax(-1) == test[1]))
        else:
            oracle = float(np.mean(leaf_post[test[2]].argmax(-1) == test[1]))
        for key in results.pending(keys, desc=f"{task} k={level}"):
            kernel = key["kernel"]
            start = time.perf_counter()
            accuracy, final_loss = run_hierarchical(task, kernel, level, grammar, args, steps, test, key["seed"])
            results.add(dict(key, accuracy=accuracy, bp_accuracy=oracle, ratio_to_bp=accuracy / oracle,
                             final_train_loss=final_loss, steps=steps, seconds=time.perf_counter() - start))
            _harness.log(f"{task:4s} k={level} {kernel:10s} seed={key['seed']} acc={accuracy:.3f} BP={oracle:.3f} "
                         f"ratio={accuracy / oracle:.3f}")


def icl_suite(args, steps, depths, results):
    dim, n_context, noise = 4, 12, 0.25
    for prior_name in ("gaussian", "tree"):
        keys = [dict(task="icl", filter_level=None, prior=prior_name, depth=depth, kernel="linear", seed=seed)
                for depth in depths for seed in args.seeds]
        if all(results.done(**key) for key in keys):
            continue
        prior = (make_tree_task_prior(dim, tree_depth=2, branching=3, jitter=0.1, random_state=args.grammar_seed)
                 if prior_name == "tree" else "gaussian")
        X, y, _, prior = make_incontext_regression(4000, n_context, dim, prior=prior, noise=noise,
                                                   random_state=args.grammar_seed + 7)
        bayes = bayes_optimal_prediction(X[:, :-1], y[:, :-1], X[:, -1], prior, noise)
        ridge = ridge_prediction(X[:, :-1], y[:, :-1], X[:, -1], alpha=noise**2 / prior.variance)
        bayes_mse = float(np.mean((bayes - y[:, -1]) ** 2))
        ridge_mse = float(np.mean((ridge - y[:, -1]) ** 2))
        test = [torch.from_numpy(a).float() for a in (X[:, :-1], y[:, :-1], X[:, -1], y[:, -1])]
        for key in results.pending(keys, desc=f"icl {prior_name}"):
            depth, seed = key["depth"], key["seed"]
            torch.manual_seed(seed)
            rng = np.random.RandomState(seed + depth)
            model = LinearAttentionRegressor(dim, n_layers=depth)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
            schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=steps, pct_start=0.1)
            start = time.perf_counter()
            bar = _harness.progress(range(steps), desc=f"icl {prior_name} L={depth}", leave=False,
                                    disable=args.no_progress)
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
            results.add(dict(key, mse=mse, bayes_mse=bayes_mse, ridge_mse=ridge_mse, steps=steps,
                             seconds=time.perf_counter() - start))
            _harness.log(f"icl  {prior_name:8s} L={depth} seed={seed} mse={mse:.4f} bayes={bayes_mse:.4f} "
                         f"ridge={ridge_mse:.4f}")


def _mean(rows, field, **match):
    values = [r[field] for r in rows if all(r.get(k) == v for k, v in match.items())]
    return float(np.mean(values)) if values else float("nan")


def plot(results, path, caption=None):
    """Accuracy against filter level per kernel (mean over seeds) and ICL error against depth.

    ``results`` are rows of this script's layout, or of the single-seed file it wrote before the harness.
    """
    plt = _harness.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, task, title in ((axes[0], "root", "root classification"), (axes[1], "mlm", "masked token")):
        rows = [r for r in results if r["task"] == task]
        if not rows:
            ax.set_visible(False)
            continue
        levels = sorted({r["filter_level"] for r in rows})
        bp = [_mean(rows, "bp_accuracy", filter_level=k) for k in levels]
        ax.plot(levels, bp, "k--", marker="s", label="BP (optimal)")
        for kernel in dict.fromkeys(r["kernel"] for r in rows):
            acc = [_mean(rows, "accuracy", filter_level=k, kernel=kernel) for k in levels]
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
        depths = sorted({r["depth"] for r in sub})
        ax.plot(depths, [_mean(sub, "mse", depth=t) for t in depths], marker="o", color=color,
                label=f"linear attention, {prior}")
        ax.axhline(sub[0]["bayes_mse"], color=color, ls="--", label=f"Bayes, {prior}")
        ax.axhline(sub[0]["ridge_mse"], color=color, ls=":", label=f"ridge, {prior}")
        ax.set_xticks(depths)
    ax.set(xlabel="depth (layers)", ylabel="query MSE", title="in-context regression", yscale="log")
    if rows:
        ax.legend(fontsize=7)
    _harness.save_figure(fig, path, caption=caption)


def main(argv=None):
    args = _parse_args(argv)
    _harness.setup(args)
    levels = [0, args.depth] if args.quick else list(range(args.depth + 1))
    steps = args.steps or (1500 if args.quick else 3000)
    icl_steps = args.icl_steps or (2000 if args.quick else 5000)
    config = dict(depth=args.depth, n_symbols=args.n_symbols, dim=args.dim, layers=args.layers, lr=args.lr,
                  steps=steps, icl_steps=icl_steps, grammar_seed=args.grammar_seed)
    results = _harness.Results.open(args, key=("task", "filter_level", "prior", "depth", "kernel", "seed"),
                                    config=config)
    start = time.perf_counter()
    for task in ("root", "mlm"):
        if task in args.tasks:
            hierarchical_suite(task, args, steps, levels, results)
    if "icl" in args.tasks:
        icl_suite(args, icl_steps, [1, 2, 3, 4], results)
    png = results.path.with_suffix(".png")
    plot(results.rows, png, caption=_harness.provenance_caption(results))
    print(f"wrote {results.path}, .csv and .png ({time.perf_counter() - start:.0f} s this run)")


if __name__ == "__main__":
    main()
