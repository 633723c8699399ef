"""Tables and plots of ``compare_kernels.py`` from its summary (``summarize``'s per-task dictionary)."""

from __future__ import annotations

import math

import numpy as np

import _harness
from _kernel_tasks import CLIP, feature_dim

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


def _status(progress):
    done, total = progress
    return "complete" if done >= total else f"**PARTIAL: {done} of {total} runs done**"


def history(runs, rows) -> str:
    """How a results file came to be: its invocations (resumed runs and merged shards), commits, start times
    and the CPU time of the training stored in it."""
    invocations = {(r.get("started"), r.get("command")) for r in runs if "--merge" not in (r.get("command") or "")}
    starts = sorted(s for s, _ in invocations if s)
    commits = []
    for r in sorted(runs, key=lambda r: r.get("started") or ""):
        if r.get("git_commit") and r["git_commit"][:7] not in commits:
            commits.append(r["git_commit"][:7])
    hours = sum(r.get("cpu_seconds") or 0.0 for r in rows) / 3600
    cpu = f"{hours:.1f} CPU-hours" if hours >= 0.1 else f"{60 * hours:.1f} CPU-minutes"
    when = [s[:16].replace("T", " ") for s in starts[:1] + starts[-1:]]
    return (f"{len(invocations)} invocation(s)"
            + (" (resumed runs and merged `--tasks` shards)" if len(invocations) > 1 else "")
            + (f", started {when[0]} to {when[1]} UTC" if len(starts) > 1 else f", started {when[0]} UTC" if when
               else "")
            + f", at commit(s) {', '.join(f'`{c}`' for c in commits) or '?'}; {cpu} of training stored")


_SELECTION = {"clipped": f"mean squared error with each prompt's error capped at {CLIP:g} times that of predicting "
                         "0 (a prompt on which the model overflows counts as a failure, not as infinity)",
              "median": "median squared error"}


def _parenthesized(values) -> str:
    """`` (name value; ...)`` of a dict of numbers, empty for none."""
    return f" ({'; '.join(f'{k} {_fmt(v)}' for k, v in values.items())})" if values else ""


def write_markdown(table, analyses, run, progress, path, title="compare_kernels.json", provenance=""):
    """One table per task (kernel, lr, metric, gap, paired difference from EDP, time) and the analyses.

    ``run`` is the provenance entry of the newest invocation, ``progress`` ``(rows done, rows of a complete run)``,
    ``provenance`` the :func:`history` of the file.
    """
    machine = run.get("machine", {})
    lines = [f"# Kernel comparison ({title})", "", f"Status: {_status(progress)}.", "",
             f"Command: `{run.get('command')}`; commit `{(run.get('git_commit') or '?')[:10]}`; "
             f"{machine.get('processor')}, {machine.get('usable_cpus')} usable CPUs, load average "
             f"{machine.get('load_average')} (a shared machine: times are indicative).", "",
             *([f"History: {provenance}.", ""] if provenance else []),
             "Gap: distance to the oracle (or to the best result where none exists), positive = worse. "
             "Difference from EDP: mean over paired seeds with its 95% t interval (metric units; the sign of "
             "the metric, so for accuracy negative = worse than EDP).", ""]
    for name, entry in table.items():
        oracle = entry["oracle"]
        medians = any("test_median" in k for k in entry["kernels"].values())
        head = f"## {name} ({entry['metric']}, {'higher' if entry['higher_is_better'] else 'lower'} is better)"
        lines += [head, "", f"{entry['oracle_name']}: {_fmt(oracle)}; floor: {_fmt(entry['floor'])}; "
                  f"keys per query: {entry['n_keys']}"
                  + "".join(f"; {k}: {_fmt(v)}" for k, v in entry["baselines"].items()), "",
                  *([f"Learning rate chosen by the {_SELECTION[entry['selection']]} on the validation prompts. "
                     "'median SE': the median over test prompts of the squared error (the typical prompt), median "
                     "over seeds; compare it with the baselines' median squared errors, not with their MSE above"
                     + _parenthesized(entry.get("baseline_medians")) + ".",
                     ""] if entry.get("selection", "mean") != "mean" else []),
                  "| kernel | features/head | lr | seeds | mean | gap | diff vs EDP [95% CI] | ms/step |"
                  + (" median SE |" if medians else ""),
                  "|---|---|---|---|---|---|---|---|" + ("---|" if medians else "")]
        for kernel, k in sorted(entry["kernels"].items(), key=lambda kv: kv[1]["gap"]):
            seeds = f"{len(k['seeds'])}" + (f" ({len(k['diverged'])} diverged)" if k.get("diverged") else "")
            median = f" {_fmt(float(np.median(list(k['test_median'].values()))))} |" if "test_median" in k else " |"
            lines.append(f"| {kernel} | {_dim(k.get('feature_dim'))} | {k['lr']:g} | {seeds} | "
                         f"{_fmt(k['mean'])} | {_fmt(k['gap'])} | {_ci(k)} | {1e3 * k['seconds_per_step']:.1f} |"
                         + (median if medians else ""))
        lines.append("")
    for analysis, values in analyses.items():
        title_ = {"subspace": "SNR gain per layer of Z + 0.5 MSSA(Z) (true subspaces, no training)",
                  "energy": "attention-energy decrease per step, relative to the start (higher = faster descent)"}
        lines += [f"## {analysis}: {title_[analysis]}", "", "| kernel | per seed |", "|---|---|"]
        for kernel, vals in values.items():
            lines.append(f"| {kernel} | {', '.join(_fmt(v) for v in vals)} |")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


def _dim(dim):
    return "" if dim is None else ("inf" if math.isinf(dim) else f"{int(dim)}")


README_START = "<!-- compare_kernels table: start (generated by benchmarks/compare_kernels.py --report) -->"
README_END = "<!-- compare_kernels table: end -->"


def readme_block(table, run, progress, ladder="compare_kernels_ladder.png", results="compare_kernels.json",
                 provenance=""):
    """The README's comparison: one row per kernel, one column per trained task (not the in-context ones).

    A cell is the kernel's gap to the task's oracle (mean over seeds; positive = worse), marked with ``*`` where
    the 95% interval of its paired difference from EDP excludes zero.
    """
    names = [n for n in table if not n.startswith("icl-")]
    kernels = []
    for n in names:
        kernels += [k for k in table[n]["kernels"] if k not in kernels]
    machine = run.get("machine", {})
    lines = [README_START, "",
             f"Status: {_status(progress)}. Source: `benchmarks/results/{results}` (command `{run.get('command')}`, "
             f"commit `{(run.get('git_commit') or '?')[:10]}`, {machine.get('processor')}, "
             f"{machine.get('usable_cpus')} CPUs). Gap to the oracle (mean over seeds; positive = worse); `*`: the "
             "95% interval of the paired difference from EDP excludes zero; `(n diverged)`: seeds whose training "
             "diverged, left out of the mean." + (f" History: {provenance}." if provenance else ""), ""]
    if not names:
        lines += ["No task has results yet.", "", README_END]
        return "\n".join(lines)
    lines += ["| kernel | features/head | " + " | ".join(names) + " |",
              "|---|---|" + "---|" * len(names),
              "| *oracle* | | " + " | ".join(f"{table[n]['oracle_name']} {_fmt(table[n]['oracle'], 3)}"
                                           for n in names) + " |"]
    for kernel in kernels:
        dims = [table[n]["kernels"][kernel].get("feature_dim") for n in names if kernel in table[n]["kernels"]]
        cells = []
        for n in names:
            k = table[n]["kernels"].get(kernel)
            if k is None:
                cells.append("")
                continue
            diff = k.get("diff_vs_edp")
            star = "*" if diff and diff[1] is not None and (diff[1] > 0 or diff[2] < 0) else ""
            diverged = f" ({len(k['diverged'])} diverged)" if k.get("diverged") else ""
            cells.append(f"{_fmt(k['gap'], 3)}{star}{diverged}")
        lines.append(f"| {kernel} | {_dim(dims[0] if dims else None)} | " + " | ".join(cells) + " |")
    if ladder:
        lines += ["", f"![finite approximations of EDP against their feature dimension](benchmarks/results/{ladder})"]
    lines += ["", README_END]
    return "\n".join(lines)


def update_readme(readme, table, run, progress, ladder="compare_kernels_ladder.png", results="compare_kernels.json",
                  provenance=""):
    """Replace the block between the README's markers (or append it) with :func:`readme_block`."""
    from pathlib import Path

    readme = Path(readme)
    text = readme.read_text() if readme.exists() else ""
    block = readme_block(table, run, progress, ladder, results, provenance)
    if README_START in text and README_END in text:
        before, rest = text.split(README_START, 1)
        after = rest.split(README_END, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    readme.write_text(text)
    return readme


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
            # from the kernel id, not the table: in a partial file the ladder kernels may not have trained yet
            pts = sorted((feature_dim(k, entry["head_dim"]), v) for k, v in edp["swap"].items()
                         if k.startswith(prefix))
            if pts:
                ax.plot([p[0] for p in pts], [_gap(entry, p[1]) for p in pts], marker=marker,
                        label=f"{label}, swapped in")
        ax.axhline(edp["gap"], color="k", ls="--", label="edp (trained)")
        ax.set_xscale("log")
        ax.set(title=f"swap test: {name}", xlabel="features per head", ylabel=f"gap ({entry['metric']})")
        ax.legend(fontsize=7)
    return _harness.save_figure(fig, path, caption=caption)


def _gap(entry, value):
    ref = entry["oracle"] if entry["oracle"] is not None else entry["best"]
    return (ref - value) if entry["higher_is_better"] else (value - ref)


def plot_icl(table, path, caption=None, top=30.0):
    """In-context regression: test MSE against depth per prior, with and without MLP, beside Bayes and baselines.

    Every seed is a point and the line joins the medians over seeds: one seed whose model overflows on a few
    prompts (MSE up to 1e19 at depth 8) would otherwise decide the picture. Seeds above ``top``, and diverged
    ones, are drawn as triangles at the top edge.
    """
    entries = {n: e for n, e in table.items() if n.startswith("icl-")}
    if not entries:
        return None
    plt = _harness.pyplot()
    priors = sorted({n.split("-")[1] for n in entries})
    fig, axes = plt.subplots(1, len(priors), figsize=(5.5 * len(priors), 4), squeeze=False)
    for ax, prior in zip(axes.ravel(), priors):
        some = None
        for block, marker, shift in (("attn", "o", 0.95), ("mlp", "s", 1.05)):
            pts = sorted((int(n.split("-")[2][1:]), e["kernels"]["linear"]) for n, e in entries.items()
                         if n.split("-")[1] == prior and n.endswith(block) and "linear" in e["kernels"])
            if not pts:
                continue
            some = next(e for n, e in entries.items() if n.split("-")[1] == prior)
            line = ax.plot([d for d, _ in pts], [float(np.median(list(k["test"].values()))) for _, k in pts],
                           marker=marker, label=f"linear attention{' + MLP' if block == 'mlp' else ''} (median)")
            for depth, k in pts:  # seeds, shifted sideways so that the two blocks do not overlap
                values = list(k["test"].values())
                low = [v for v in values if v <= top]
                high = len(values) - len(low) + len(k.get("diverged", []))
                ax.scatter([depth * shift] * len(low), low, s=10, color=line[0].get_color(), alpha=0.5)
                if high:
                    ax.scatter([depth * shift] * high, [top] * high, s=25, marker="^", color=line[0].get_color())
        if some is None:
            continue
        ax.axhline(some["oracle"], color="k", ls="--", label="Bayes")
        for (name, value), ls in zip(some["baselines"].items(), (":", "-.")):
            ax.axhline(value, color="0.4", ls=ls, label=name)
        ax.set(xscale="log", yscale="log", xlabel="depth (layers)", ylabel="query MSE (points: seeds)",
               title=f"{prior} prior (triangles: above {top:g} or diverged)", ylim=(None, top * 1.3))
        ax.set_xticks([1, 2, 4, 8], labels=["1", "2", "4", "8"])
        ax.tick_params(axis="x", which="minor", labelbottom=False)  # no "3 x 10^0" between the depths
        ax.legend(fontsize=7)
    return _harness.save_figure(fig, path, caption=caption)
