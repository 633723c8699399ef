"""Tables and plots of ``compare_kernels.py`` from its summary (``summarize``'s per-task dictionary)."""

from __future__ import annotations

import math

import _harness

_LADDERS = (("taylor_edp-", "taylor_edp (degree 1..6)", "o"), ("prf-", "positive random features", "s"))


def _fmt(value, digits=4):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a" if value is None else ("inf" if value > 0 else "-inf")
    if abs(value) >= 1e4:
        return f"{value:.3g}"
    return f"{value:.{digits}f}"


def _ci(entry):
    diff = entry.get("diff_vs_edp")
    if diff is None:
        return ""
    mean, low, high = diff
    return f"{mean:+.4f}" + ("" if low is None else f" [{low:+.4f}, {high:+.4f}]")


def write_markdown(table, analyses, results, path):
    """One table per task (kernel, lr, metric, gap, paired difference from EDP, time) and the analyses."""
    run = results.runs[-1]
    lines = [f"# Kernel comparison ({results.path.name})", "",
             f"Command: `{run['command']}`; commit `{(run['git_commit'] or '?')[:10]}`; "
             f"{run['machine'].get('processor')}, {run['machine'].get('usable_cpus')} usable CPUs, load average "
             f"{run['machine'].get('load_average')} (a shared machine: times are indicative).", "",
             "Gap: distance to the oracle (or to the best result where none exists), positive = worse. "
             "Difference from EDP: mean over paired seeds with its 95% t interval (metric units; the sign of "
             "the metric, so for accuracy negative = worse than EDP).", ""]
    for name, entry in table.items():
        oracle = entry["oracle"]
        head = f"## {name} ({entry['metric']}, {'higher' if entry['higher_is_better'] else 'lower'} is better)"
        lines += [head, "", f"{entry['oracle_name']}: {_fmt(oracle)}; floor: {_fmt(entry['floor'])}; "
                  f"keys per query: {entry['n_keys']}"
                  + "".join(f"; {k}: {_fmt(v)}" for k, v in entry["baselines"].items()), "",
                  "| kernel | features/head | lr | seeds | mean | gap | diff vs EDP [95% CI] | ms/step |",
                  "|---|---|---|---|---|---|---|---|"]
        for kernel, k in sorted(entry["kernels"].items(), key=lambda kv: kv[1]["gap"]):
            dim = k.get("feature_dim")
            dim = "" if dim is None else ("inf" if math.isinf(dim) else f"{int(dim)}")
            lines.append(f"| {kernel} | {dim} | {k['lr']:g} | {len(k['seeds'])} | {_fmt(k['mean'])} | "
                         f"{_fmt(k['gap'])} | {_ci(k)} | {1e3 * k['seconds_per_step']:.1f} |")
        lines.append("")
    for analysis, values in analyses.items():
        title = {"subspace": "SNR gain per layer of Z + 0.5 MSSA(Z) (true subspaces, no training)",
                 "energy": "attention-energy decrease per step, relative to the start (higher = faster descent)"}
        lines += [f"## {analysis}: {title[analysis]}", "", "| kernel | per seed |", "|---|---|"]
        for kernel, vals in values.items():
            lines.append(f"| {kernel} | {', '.join(_fmt(v) for v in vals)} |")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


def _ladder_points(entry, prefix):
    points = []
    for kernel, k in entry["kernels"].items():
        if kernel.startswith(prefix) and k.get("feature_dim"):
            low = high = None
            if k.get("diff_vs_edp") and k["diff_vs_edp"][1] is not None:
                _, low, high = k["diff_vs_edp"]
            points.append((k["feature_dim"], k["gap"], low, high, k))
    return sorted(points, key=lambda p: p[0])


def plot_ladder(table, path, caption=None):
    """Gap against feature dimension for both ladders per task; EDP as the asymptote, keys per query marked."""
    names = [n for n, e in table.items() if any(_ladder_points(e, p) for p, _, _ in _LADDERS)]
    if not names:
        return None
    plt = _harness.pyplot()
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        entry = table[name]
        sign = -1 if entry["higher_is_better"] else 1
        for prefix, label, marker in _LADDERS:
            pts = _ladder_points(entry, prefix)
            if not pts:
                continue
            x = [p[0] for p in pts]
            y = [p[1] for p in pts]
            # the CI is of the paired difference from EDP; drawn around the point, in gap units
            err = [[0 if p[2] is None else abs(sign * (p[3] - p[2]) / 2) for p in pts]] * 2
            ax.errorbar(x, y, yerr=err, marker=marker, capsize=3, label=label)
        if "edp" in entry["kernels"]:
            ax.axhline(entry["kernels"]["edp"]["gap"], color="k", ls="--", label="edp (infinite)")
        ax.axvline(entry["n_keys"], color="0.5", ls=":", label=f"keys per query = {entry['n_keys']}")
        ax.set_xscale("log")
        ax.set(title=name, xlabel="features per head", ylabel=f"gap to {entry['oracle_name']} ({entry['metric']})")
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    fig.suptitle("finite approximations of EDP against their feature dimension (error bars: 95% CI of the "
                 "paired difference from EDP)", fontsize=9)
    return _harness.save_figure(fig, path, caption=caption)


def plot_swap(table, path, caption=None):
    """Gap of each EDP-trained model evaluated with an approximation in place of EDP (no retraining)."""
    names = [n for n, e in table.items() if e["kernels"].get("edp", {}).get("swap")]
    if not names:
        return None
    plt = _harness.pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        entry = table[name]
        edp = entry["kernels"]["edp"]
        for prefix, label, marker in _LADDERS:
            pts = sorted((entry["kernels"].get(k, {}).get("feature_dim") or float("nan"), v)
                         for k, v in edp["swap"].items() if k.startswith(prefix))
            if pts:
                ax.plot([p[0] for p in pts], [entry and _gap(entry, p[1]) for p in pts], marker=marker,
                        label=f"{label}, swapped in")
        ax.axhline(edp["gap"], color="k", ls="--", label="edp (trained)")
        ax.set_xscale("log")
        ax.set(title=f"swap test: {name}", xlabel="features per head", ylabel=f"gap ({entry['metric']})")
        ax.legend(fontsize=7)
    return _harness.save_figure(fig, path, caption=caption)


def _gap(entry, value):
    ref = entry["oracle"] if entry["oracle"] is not None else entry["best"]
    return (ref - value) if entry["higher_is_better"] else (value - ref)


def plot_icl(table, path, caption=None):
    """In-context regression: test MSE against depth per prior, with and without MLP, beside Bayes and baselines."""
    entries = {n: e for n, e in table.items() if n.startswith("icl-")}
    if not entries:
        return None
    plt = _harness.pyplot()
    priors = sorted({n.split("-")[1] for n in entries})
    fig, axes = plt.subplots(1, len(priors), figsize=(5.5 * len(priors), 4), squeeze=False)
    for ax, prior in zip(axes.ravel(), priors):
        some = None
        for block, marker in (("attn", "o"), ("mlp", "s")):
            pts = sorted((int(n.split("-")[2][1:]), e) for n, e in entries.items()
                         if n.split("-")[1] == prior and n.endswith(block))
            if not pts:
                continue
            some = pts[0][1]
            ax.plot([d for d, _ in pts], [e["kernels"]["linear"]["mean"] for _, e in pts], marker=marker,
                    label=f"linear attention{' + MLP' if block == 'mlp' else ''}")
        if some is None:
            continue
        ax.axhline(some["oracle"], color="k", ls="--", label="Bayes")
        for (name, value), ls in zip(some["baselines"].items(), (":", "-.")):
            ax.axhline(value, color="0.4", ls=ls, label=name)
        ax.set(xscale="log", yscale="log", xlabel="depth (layers)", ylabel="query MSE", title=f"{prior} prior")
        ax.set_xticks([1, 2, 4, 8], labels=["1", "2", "4", "8"])
        ax.legend(fontsize=7)
    return _harness.save_figure(fig, path, caption=caption)
