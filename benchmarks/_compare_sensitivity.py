"""Does the in-context tasks' choice of learning rate depend on the clipping factor of their validation error?

The in-context tasks choose their rate by the clipped mean squared error on the validation prompts
(:func:`_kernel_tasks.clipped_mean`: each prompt's error capped at ``CLIP`` times that of predicting 0), because
the deep un-normalized models overflow on rare tail prompts. The factor is a judgement. ``compare_kernels.py
--clip-sensitivity`` retrains each in-context task's probes (the first seed at every grid rate: the runs of the
comparison, reproduced) keeping every validation prompt's squared error, and records the rate that each factor
of :data:`FACTORS`, the plain mean and the median would choose under the comparison's rule
(:func:`_compare_stats.chosen_lr`). Where the comparison's file holds the probe, the stored validation error is
kept beside the reproduced one, so that the reproduction is checked.
"""

from __future__ import annotations

from pathlib import Path

import _harness
from _compare_plan import budget
from _compare_stats import chosen_lr, compares_at_full_length
from _kernel_tasks import CLIP, clipped_mean, make_tasks

#: Clipping factors compared, the comparison's :data:`_kernel_tasks.CLIP` among them.
FACTORS = (3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
_STATISTICS = (*(f"clip {f:g}" for f in FACTORS), "mean", "median")


def clip_sensitivity(args, spec, trained, stored_path: Path | None = None):
    """Probe every in-context task of ``trained`` at every grid rate (first seed); write ``<name>_clip.*``.

    ``stored_path`` is the comparison's results file whose probes are reproduced (default: the one the flags
    name, ``<out>/<name>[_quick].json``).
    Returns the results store; its summary holds, per task, the rate each statistic chooses.
    """
    from compare_kernels import _with_name, training_steps

    names = [t for t in trained if t.startswith("icl-")]
    if not names:
        raise SystemExit("--clip-sensitivity needs in-context tasks (icl-...) among --tasks")
    stored_path = stored_path or _harness.results_path(args)
    stored = _harness.load_results(stored_path)["results"] if stored_path.exists() else []
    lr_grid, seed = tuple(spec["lr_grid"]), args.seeds[0]
    results = _harness.Results.open(_with_name(args, "_clip"), key=("task", "lr"),
                                    config=dict(cfg=spec["cfg"], n_eval=spec["n_eval"],
                                                probe_fraction=spec["probe_fraction"], seed=seed))
    tasks = make_tasks(names, spec["cfg"], spec["n_eval"])
    for name, task in tasks.items():
        steps, batch = budget(spec, name)
        probe_steps = max(2, round(spec["probe_fraction"] * steps))
        for key in results.pending([dict(task=name, lr=lr) for lr in lr_grid], desc=name):
            model = task.build("linear", seed)
            for _ in training_steps(task, model, key["lr"], probe_steps, batch, seed):
                pass
            errors = task.squared_errors(model, task.validation)
            target = task.validation[1]
            stats = {f"clip {f:g}": clipped_mean(errors, target, f) for f in FACTORS}
            stats.update(mean=float(errors.mean()), median=float(errors.median()))
            twin = [r for r in stored if r["task"] == name and r.get("phase") == "probe" and r["lr"] == key["lr"]
                    and r["seed"] == seed and r.get("steps") == probe_steps]
            results.add(dict(key, seed=seed, steps=probe_steps, batch=batch, statistics=stats,
                             stored_validation=twin[0]["validation"] if twin else None))
    choices = {name: choose(results.select(task=name), task.floor, task.oracle, lr_grid) for name, task in
               tasks.items()}
    results.set_summary(choices=choices)
    results.close()
    write_markdown(results, choices, results.path.with_suffix(".md"))
    return results


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


def write_markdown(results, choices, path) -> Path:
    """The chosen rate per task and statistic, and how far the reproduced probes are from the stored ones."""
    reference = f"clip {CLIP:g}"
    agree = {s: sum(c[s] == c[reference] for c in choices.values()) for s in _STATISTICS}
    pairs = [(r["statistics"][reference], r["stored_validation"]) for r in results.rows
             if r.get("stored_validation") is not None]
    worst = max((abs(a - b) / max(abs(b), 1e-300) for a, b in pairs), default=None)
    lines = [f"# Clipping sensitivity of the in-context tasks' rate choice ({results.path.name})", "",
             f"Provenance: {_harness.provenance_caption(results)}.", "",
             f"Each task's probes (seed {results.rows[0]['seed'] if results.rows else '?'}, every grid rate) were "
             "retrained keeping every validation prompt's squared error; each column is the rate that statistic "
             f"chooses under the comparison's rule. The comparison uses `{reference}` (each prompt's error capped "
             f"at {CLIP:g} times that of predicting 0); n/a: a probe is missing, or every probe is at the task's "
             "floor, where the comparison compares the rates by full-length runs instead (not retrained here). "
             + (f"Reproduction: {len(pairs)} probes match the comparison's stored validation error to a relative "
                f"{worst:.1e}." if pairs else "No stored probe to check the reproduction against."), "",
             "| task | " + " | ".join(_STATISTICS) + " |", "|---|" + "---|" * len(_STATISTICS)]
    for name, c in choices.items():
        lines.append(f"| {name} | " + " | ".join(_rate(c[s], c[reference]) for s in _STATISTICS) + " |")
    lines += ["| same rate as the comparison | " + " | ".join(f"{agree[s]} of {len(choices)}" for s in _STATISTICS)
              + " |", ""]
    path.write_text("\n".join(lines))
    return path


def _rate(lr, reference) -> str:
    text = "n/a" if lr is None else f"{lr:g}"
    return text if lr == reference else f"**{text}**"
