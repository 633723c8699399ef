"""Does the in-context tasks' choice of learning rate depend on the clipping factor of their validation error?

The in-context tasks choose their rate by the clipped mean squared error on the validation prompts
(:func:`_kernel_tasks.clipped_mean`: each prompt's error capped at ``CLIP`` times that of predicting 0), because
the deep un-normalized models overflow on rare tail prompts. The factor is a judgement. ``compare_kernels.py
--clip-sensitivity`` retrains each in-context task's probes (the first seed at every grid rate: the runs of the
comparison, reproduced) keeping every validation prompt's squared error, and records the rate that each factor
of :data:`FACTORS`, the plain mean and the median would choose under the comparison's rule
(:func:`_compare_stats.chosen_lr`). Where the comparison's file holds the probe, the stored validation error is
kept beside the reproduced one, so that the reproduction is checked. Then every seed trains at full length at
each rate that some factor chose (the comparison's stored runs are reused), which shows what the choice costs.
"""

from __future__ import annotations

from pathlib import Path

import _harness
import numpy as np
from _compare_plan import budget
from _compare_stats import chosen_lr, compares_at_full_length, trained
from _kernel_tasks import CLIP, clipped_mean, make_tasks

#: Clipping factors compared, the comparison's :data:`_kernel_tasks.CLIP` among them.
FACTORS = (3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
_STATISTICS = (*(f"clip {f:g}" for f in FACTORS), "mean", "median")


def clip_sensitivity(args, spec, trained, stored_path: Path | None = None):
    """Probe every in-context task of ``trained`` at every grid rate (first seed), then train every seed at each
    rate some clipping factor chooses; write ``<name>_clip.{json,csv,md}``.

    ``stored_path`` is the comparison's results file whose probes are reproduced and whose full-length runs are
    reused (default: the one the flags name, ``<out>/<name>[_quick].json``). Returns the results store; its
    summary holds, per task, the rate each statistic chooses and the full-length outcome of each rate chosen.
    """
    from compare_kernels import _with_name, train, training_steps

    names = [t for t in trained if t.startswith("icl-")]
    if not names:
        raise SystemExit("--clip-sensitivity needs in-context tasks (icl-...) among --tasks")
    stored_path = stored_path or _harness.results_path(args)
    stored = _harness.load_results(stored_path)["results"] if stored_path.exists() else []
    lr_grid, seed = tuple(spec["lr_grid"]), args.seeds[0]
    results = _harness.Results.open(_with_name(args, "_clip"), key=("task", "phase", "lr", "seed"),
                                    config=dict(cfg=spec["cfg"], n_eval=spec["n_eval"],
                                                probe_fraction=spec["probe_fraction"]))
    tasks = make_tasks(names, spec["cfg"], spec["n_eval"])
    choices, outcomes = {}, {}
    for name, task in tasks.items():
        steps, batch = budget(spec, name)
        probe_steps = max(2, round(spec["probe_fraction"] * steps))

        def twin(phase, lr, seed_, length):  # the comparison's own run of this key, if stored
            same = [r for r in stored if r["task"] == name and r.get("phase") == phase and r["lr"] == lr
                    and r["seed"] == seed_ and r.get("steps") == length]
            return same[0] if same else None

        probes = [dict(task=name, phase="probe", lr=lr, seed=seed) for lr in lr_grid]
        for key in results.pending(probes, desc=f"{name} probes"):
            model = task.build("linear", seed)
            for _ in training_steps(task, model, key["lr"], probe_steps, batch, seed):
                pass
            errors = task.squared_errors(model, task.validation)
            stats = {f"clip {f:g}": clipped_mean(errors, task.validation[1], f) for f in FACTORS}
            stats.update(mean=float(errors.mean()), median=float(errors.median()))
            stored_probe = twin("probe", key["lr"], seed, probe_steps)
            results.add(dict(key, steps=probe_steps, batch=batch, statistics=stats,
                             stored_validation=stored_probe and stored_probe["validation"]))
        choices[name] = choose(results.select(task=name, phase="probe"), task.floor, task.oracle, lr_grid)
        rates = sorted({choices[name][f"clip {f:g}"] for f in FACTORS} - {None})
        finals = [dict(task=name, phase="final", lr=lr, seed=s) for lr in rates for s in args.seeds]
        for key in results.pending(finals, desc=f"{name} seeds"):
            done = twin("final", key["lr"], key["seed"], steps)
            row = ({k: done[k] for k in ("validation", "test", "test_median", "steps", "batch") if k in done}
                   if done else train(task, "linear", key["lr"], key["seed"], steps, batch))
            results.add(dict(key, **row, source="comparison" if done else "trained here"))
        outcomes[name] = {lr: outcome(results.select(task=name, phase="final", lr=lr), task.floor)
                          for lr in rates}
    results.set_summary(choices=choices, outcomes=outcomes)
    results.close()
    write_markdown(results, choices, outcomes, results.path.with_suffix(".md"))
    return results


def outcome(rows, floor) -> dict:
    """Full-length runs of one rate: the median over seeds of the test MSE and of the median squared error, over
    the seeds that did not fail (:func:`_compare_stats.trained`), and the seeds that failed."""
    ok = trained(rows, False, floor)
    return dict(seeds=len(rows), failed=len(rows) - len(ok),
                test=float(np.median([r["test"] for r in ok])) if ok else None,
                test_median=float(np.median([r["test_median"] for r in ok])) if ok else None)


def choose(rows, floor, oracle, lr_grid) -> dict:
    """The rate each statistic chooses from one task's probe rows, under the comparison's rule.

    ``None`` while a rate's probe is missing, and where every probe is still at the task's floor: the comparison
    then compares the rates by full-length runs (:func:`_compare_stats.compares_at_full_length`), which this
    check does not retrain.
    """
    out = {}
    for statistic in _STATISTICS:
        probes = [dict(phase="probe", lr=r["lr"], seed=r["seed"], validation=r["statistics"][statistic])
                  for r in rows]
        out[statistic] = (None if compares_at_full_length(probes, lr_grid, floor, oracle)
                          else chosen_lr(probes, False, lr_grid, floor, oracle))
    return out


def write_markdown(results, choices, outcomes, path) -> Path:
    """The chosen rate per task and statistic, the full-length outcome of each rate a clipping factor chose, and
    how far the reproduced probes are from the stored ones."""
    reference = f"clip {CLIP:g}"
    agree = {s: sum(c[s] == c[reference] for c in choices.values()) for s in _STATISTICS}
    pairs = [(r["statistics"][reference], r["stored_validation"]) for r in results.rows
             if r["phase"] == "probe" and r.get("stored_validation") is not None]
    worst = max((abs(a - b) / max(abs(b), 1e-300) for a, b in pairs), default=None)
    seeds = sorted({r["seed"] for r in results.rows if r["phase"] == "final"})
    lines = [f"# Clipping sensitivity of the in-context tasks' rate choice ({results.path.name})", "",
             f"Provenance: {_harness.provenance_caption(results)}.", "",
             "Each task's probes (the first seed, every grid rate) were retrained keeping every validation prompt's "
             "squared error; each column is the rate that statistic chooses from them under the comparison's rule. "
             f"The comparison uses `{reference}` (each prompt's error capped at {CLIP:g} times that of predicting "
             "0), and then passes over a rate whose full-length runs failed. n/a: a probe is missing, or every "
             "probe is at the task's floor, where the comparison compares the rates by full-length runs instead "
             "(not retrained here). "
             + (f"Reproduction: {len(pairs)} probes match the comparison's stored validation error to a relative "
                f"{worst:.1e}." if pairs else "No stored probe to check the reproduction against."), "",
             "| task | " + " | ".join(_STATISTICS) + " |", "|---|" + "---|" * len(_STATISTICS)]
    for name, c in choices.items():
        lines.append(f"| {name} | " + " | ".join(_rate(c[s], c[reference]) for s in _STATISTICS) + " |")
    lines += [f"| same rate as {reference} | " + " | ".join(f"{agree[s]} of {len(choices)}" for s in _STATISTICS)
              + " |", "",
              f"Full-length runs (seeds {', '.join(map(str, seeds))}) at every rate a clipping factor chose: "
              "medians over the seeds that did not fail (a run worse than predicting 0, or not finite, failed). "
              "Runs the comparison's file holds are taken from it.", "",
              "| task | lr | chosen by | test MSE | median SE | failed |", "|---|---|---|---|---|---|"]
    for name, by_rate in outcomes.items():
        for lr, o in by_rate.items():
            by = [f"{f:g}" for f in FACTORS if choices[name][f"clip {f:g}"] == lr]
            lines.append(f"| {name} | {lr:g} | clip {', '.join(by)} | {_fmt(o['test'])} | {_fmt(o['test_median'])} "
                         f"| {o['failed']} of {o['seeds']} |")
    path.write_text("\n".join(lines + [""]))
    return path


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _rate(lr, reference) -> str:
    text = "n/a" if lr is None else f"{lr:g}"
    return text if lr == reference else f"**{text}**"
