"""Cost plan and learning curves of ``compare_kernels.py``: what the full run costs, and how long to train.

``plan`` times a few training steps of *every kernel* on every task of a spec (CPU seconds of this process,
single-threaded) and multiplies by the spec's steps and runs (learning-rate probes plus seeds). ``curves``
trains one kernel (EDP) per task with validation checkpoints; the full run's steps are read off these curves.
"""

from __future__ import annotations

import json
import time

import _harness
import numpy as np
from _kernel_tasks import make_tasks


def budget(spec: dict, task_name: str) -> tuple[int, int]:
    """``(steps, batch)`` of a task in a spec: under the task's own name if listed, else under its family."""
    steps, batch = spec["steps"], spec["batch"]
    return (steps[task_name] if task_name in steps else steps[family(task_name)],
            batch[task_name] if task_name in batch else batch[family(task_name)])


def family(task_name: str) -> str:
    """``root``, ``mlm``, ``recall``, ``text``, ``digits``, ``icl`` or ``<one of them>-long``."""
    return task_name.split("-")[0] + ("-long" if task_name.endswith("-long") else "")


def runs_per_kernel(spec: dict, n_seeds: int) -> float:
    """Training runs per (task, kernel) in units of one full-length run: probes at every grid lr, then seeds."""
    probes = len(spec["lr_grid"]) * spec["probe_fraction"] if len(spec["lr_grid"]) > 1 else 0.0
    return probes + n_seeds


def step_seconds(task, kernel_id: str, batch: int, n_steps: int = 2) -> float:
    """CPU seconds of one training step (after one untimed warm-up step) of ``kernel_id`` on ``task``."""
    from compare_kernels import training_steps

    model = task.build(kernel_id, 0)
    times, start = [], time.process_time()
    for step, _, _ in training_steps(task, model, 1e-3, n_steps + 1, batch, 0):
        now = time.process_time()
        if step > 1:
            times.append(now - start)
        start = now
    return float(np.median(times))


def plan(spec: dict, kernels, task_names, n_seeds: int, out_path, progress: bool = True) -> dict:
    """Time every (task, kernel) for a few steps; write ``<out_path>.txt`` and ``.json``; return the plan.

    The cost of a task is ``sum over kernels of step time x steps x runs_per_kernel`` (evaluation excluded).
    """
    tasks = make_tasks(task_names, spec["cfg"], 64)
    per_run = runs_per_kernel(spec, n_seeds)
    rows, lines, total = {}, [], 0.0
    for name, task in tasks.items():
        steps, batch = budget(spec, name)
        ks = task.kernels or tuple(kernels)
        times = {k: step_seconds(task, k, batch) for k in _harness.progress(ks, desc=name, disable=not progress)}
        hours = sum(times.values()) * steps * per_run / 3600
        total += hours
        slowest = max(times, key=times.get)
        rows[name] = dict(steps=steps, batch=batch, runs_per_kernel=per_run, kernels=len(ks), hours=hours,
                          ms_per_step=times)
        lines.append(f"{name:22s} {len(ks):2d} kernels x {per_run:.1f} runs x {steps:5d} steps (batch {batch:3d}): "
                     f"{hours:6.2f} h; median {1e3 * np.median(list(times.values())):6.1f} ms/step, slowest "
                     f"{slowest} {1e3 * times[slowest]:.0f} ms")
        _harness.log(lines[-1])
    run = _harness.run_info()
    lines += [f"total: about {total:.1f} CPU-hours (each kernel's own step time; single-threaded; evaluation "
              "excluded)",
              f"measured {run['started']} by `{run['command']}` at commit {run['git_commit']}, load average "
              f"{run['machine']['load_average']} (a shared machine inflates CPU time: read it as an upper bound)"]
    print("\n".join(lines[-2:]))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    out_path.with_suffix(".json").write_text(json.dumps(dict(total_hours=total, tasks=rows, run=run), indent=1))
    return dict(total_hours=total, tasks=rows)


def learning_curve(task, kernel_id: str, lr: float, seed: int, steps: int, batch: int, every: int) -> dict:
    """Train once (the run's optimizer and one-cycle schedule) and score the validation set every ``every`` steps.

    Under one-cycle the score at step ``t`` of a long run is at a higher learning rate than the end of a
    ``t``-step run, so the step where this curve flattens is an upper bound on the steps a run needs.
    """
    from compare_kernels import training_steps

    model = task.build(kernel_id, seed)
    curve, start = [], time.process_time()
    for step, _, _ in training_steps(task, model, lr, steps, batch, seed):
        if step % every == 0 or step == steps:
            curve.append([step, task.score(model, task.validation), time.process_time() - start])
    return dict(curve=curve, test=task.score(model, task.test), cpu_seconds=time.process_time() - start)
