"""How compare_kernels reads its results: the learning rate chosen per (task, kernel), the failed runs, the
per-task summary (mean, gap to the oracle, paired difference from EDP) and how much of a complete run is stored.

Pure functions of result rows and the tasks' stored description (:func:`compare_kernels.task_meta`), so that a
results file, complete or partial, is summarized without its data or models.
"""

from __future__ import annotations

import math

import _harness
import numpy as np
from _kernel_tasks import feature_dim, selects_at_full_length


#: Share of the floor-to-oracle gap the best probe must close for the probes to rank the rates: below it every
#: rate is still at the floor (a task learned in a late jump, such as associative recall with many pairs), and
#: the best probe would be chosen by noise.
PROBE_SIGNAL = 0.02


def probes_at_floor(rows, lr_grid, floor=None, oracle=None) -> bool:
    """Whether every grid rate has its probe and none of them closed :data:`PROBE_SIGNAL` of the gap from the
    task's floor to its oracle (never for a task without both, or a one-rate grid)."""
    if len(lr_grid) == 1 or floor is None or oracle is None or oracle == floor:
        return False
    probes = [r for r in rows if r.get("phase") == "probe" and r["lr"] in lr_grid]
    if len({r["lr"] for r in probes}) < len(lr_grid):
        return False
    closed = [(r["validation"] - floor) / (oracle - floor) for r in probes if finite(r.get("validation"))]
    return max(closed, default=0.0) < PROBE_SIGNAL


def compares_at_full_length(rows, lr_grid, floor=None, oracle=None, by_name=False) -> bool:
    """Whether the rates of a (task, kernel) are compared by full-length runs at the first seed instead of by
    probes: for a task whose name asks for it (:func:`selects_at_full_length`, ``by_name``) and when every probe
    is at the task's floor (:func:`probes_at_floor`). Never for a one-rate grid."""
    return len(lr_grid) > 1 and (by_name or probes_at_floor(rows, lr_grid, floor, oracle))


def failed(row, higher_is_better, floor=None) -> bool:
    """Whether a run failed: its validation metric is not finite, or, for a task whose metric is an error (lower
    is better), worse than the task's floor, the trivial predictor (predicting 0 in the in-context tasks: their
    overflowing models score 20 to 65 there against the floor's 7.7, while every run that learned scores below
    6). Below chance on a task scored by accuracy is not a failure: early probes of a task learned late are there.
    """
    value = row.get("validation")
    return not finite(value) or (not higher_is_better and floor is not None and value > floor)


def chosen_lr(rows, higher_is_better, lr_grid, floor=None, oracle=None, at_full_length=False, seed=0):
    """The grid rate whose probe scored best on validation, among the rates that train stably at full length.

    Where :func:`compares_at_full_length` holds (``at_full_length`` says the task asks for it), the full-length
    runs at ``seed`` (``phase="final"``, one per rate) take the probes' place.
    A rate at which any full-length run diverged (:func:`failed`) is passed over for the next best one,
    so that every seed of a (task, kernel) trains at one stable rate; when every rate diverged, the smallest.
    ``None`` while a probe (or full-length run) is missing; the middle rate when every probe diverged. A one-rate
    grid needs no probe.
    """
    if len(lr_grid) == 1:
        return lr_grid[0]
    if compares_at_full_length(rows, lr_grid, floor, oracle, at_full_length):
        candidates = [r for r in rows if r.get("phase") == "final" and r["seed"] == seed and r["lr"] in lr_grid]
    else:
        candidates = [r for r in rows if r.get("phase") == "probe" and r["lr"] in lr_grid]
    if len({r["lr"] for r in candidates}) < len(lr_grid):
        return None
    unstable = {r["lr"] for r in rows if r.get("phase") == "final" and failed(r, higher_is_better, floor)}
    stable = [r for r in candidates if not failed(r, higher_is_better, floor) and r["lr"] not in unstable]
    if stable:
        return (max if higher_is_better else min)(stable, key=lambda r: r["validation"])["lr"]
    return min(unstable) if unstable else lr_grid[len(lr_grid) // 2]


def trained(rows, higher_is_better, floor=None) -> list:
    """The full-length runs that count: a finite test metric and not :func:`failed` (the others are reported as
    diverged)."""
    return [r for r in rows if finite(r.get("test")) and not failed(r, higher_is_better, floor)]


def finite(value) -> bool:
    """Whether a stored metric is a finite number (a diverged run stores None, NaN or an infinity)."""
    return value is not None and math.isfinite(value)


def summarize(rows, meta, kernels, seeds, lr_grid):
    """Per task and kernel: chosen lr, mean metric and gap over seeds, paired difference from EDP, time.

    ``rows`` are result rows, ``meta`` the :func:`task_meta` of each task; works on a partial file (a kernel
    with no finished seed is left out, and ``seeds`` lists the ones done).
    """
    table = {}
    for name, m in meta.items():
        per_kernel = {}
        for kernel in m["kernels"] or kernels:
            mine = [r for r in rows if r["task"] == name and r["kernel"] == kernel]
            lr = chosen_lr(mine, m["higher_is_better"], lr_grid, m.get("floor"), m.get("oracle"),
                           selects_at_full_length(name), seeds[0] if seeds else 0)
            finals = [r for r in mine if r.get("phase") == "final" and r["lr"] == lr and r["seed"] in seeds]
            ok = trained(finals, m["higher_is_better"], m.get("floor"))
            chosen = {r["seed"]: r for r in ok}
            if lr is None or not chosen:
                continue
            # a seed whose training diverged (test metric NaN, stored as None, or infinite; or a failed run) is
            # counted, not hidden
            per_kernel[kernel] = dict(lr=lr, seeds=sorted(chosen), test={s: r["test"] for s, r in chosen.items()},
                                      diverged=sorted(r["seed"] for r in finals if r not in ok),
                                      seconds_per_step=float(np.median([r["cpu_seconds"] / r["steps"]
                                                                        for r in chosen.values()])),
                                      swap=chosen[min(chosen)].get("swap"))
            if all("test_median" in r for r in chosen.values()):
                per_kernel[kernel]["test_median"] = {s: r["test_median"] for s, r in chosen.items()}
        if not per_kernel:
            continue
        means = {k: float(np.mean(list(v["test"].values()))) for k, v in per_kernel.items()}
        best = (max if m["higher_is_better"] else min)(means.values())
        ref = m["oracle"] if m["oracle"] is not None else best
        edp = per_kernel.get("edp")
        for kernel, entry in per_kernel.items():
            entry["mean"] = means[kernel]
            entry["gap"] = (ref - means[kernel]) if m["higher_is_better"] else (means[kernel] - ref)
            if edp is not None and kernel != "edp":
                common = sorted(set(entry["test"]) & set(edp["test"]))
                if common:
                    entry["diff_vs_edp"] = _harness.paired_ci([entry["test"][s] for s in common],
                                                              [edp["test"][s] for s in common])
            entry["feature_dim"] = feature_dim(kernel, m["head_dim"]) if m["kernels"] is None else None
        table[name] = dict(m, best=best, kernels=per_kernel)
    return table


def expected_runs(meta, kernels, n_seeds, lr_grid, analyses) -> int:
    """Rows a complete file holds: per trained (task, kernel) the probes (or, for a task that selects at full
    length, the first seed at the other rates) and the seeds; per analysis kernel x seed."""
    selection = len(lr_grid) if len(lr_grid) > 1 else 0
    trained = sum(len(m["kernels"] or kernels) * (selection - bool(selection and selects_at_full_length(name))
                                                   + n_seeds) for name, m in meta.items())
    return trained + len(analyses) * len(kernels) * n_seeds


def completed_runs(rows, meta, kernels, seeds, lr_grid, analyses) -> int:
    """How many of :func:`expected_runs` are stored: probes of the grid, the seeds at the chosen rate, analyses.

    Runs at a rate that was passed over (a retrained grid, a rate that diverged at full length) are kept in the
    file but not counted, so a file is complete only when the chosen rate's seeds are all there.
    """
    probes = len(lr_grid) if len(lr_grid) > 1 else 0
    done = 0
    for name, m in meta.items():
        for kernel in m["kernels"] or kernels:
            mine = [r for r in rows if r["task"] == name and r["kernel"] == kernel]
            lr = chosen_lr(mine, m["higher_is_better"], lr_grid, m.get("floor"), m.get("oracle"),
                           selects_at_full_length(name), seeds[0] if seeds else 0)
            if selects_at_full_length(name) and probes:  # the first seed at the rates not chosen
                done += len({r["lr"] for r in mine if r.get("phase") == "final" and r["lr"] in lr_grid
                             and r["lr"] != lr and seeds and r["seed"] == seeds[0]})
            else:
                done += min(probes, len({r["lr"] for r in mine if r.get("phase") == "probe" and r["lr"] in lr_grid}))
            done += len({r["seed"] for r in mine if r.get("phase") == "final" and r["lr"] == lr and r["seed"] in seeds})
    return done + sum(1 for r in rows if r["task"] in analyses and r["kernel"] in kernels and r["seed"] in seeds)
