"""Linear-time vs quadratic (chunked torch) kernel attention: time and peak memory against sequence length.

For finite-feature kernels the two forms compute the same function; this measures where the linear form gets
faster (the crossover length N*, reported as N* / m for feature dimension m) and sets
``attention_kernels.functional.LINEAR_CROSSOVER_RATIO`` (non-causal) and ``LINEAR_CROSSOVER_RATIO_CAUSAL``.

    .venv/bin/python benchmarks/linear_vs_quadratic.py [--quick] [--device cpu|cuda] [--seeds 0 1]

Writes benchmarks/results/linear_vs_quadratic[_cuda][_quick].{json,csv,png} through the shared harness
(``_harness.py``; one row per (kernel, causal, n, seed), resumable; the seed draws q, k, v). Peak memory:
CUDA's max_memory_allocated on GPU; on CPU the growth of the peak resident set size of a forked process that runs one forward pass.
"""

from __future__ import annotations

import math
import os
import resource

import _harness
import torch
from torch.utils import benchmark

from attention_kernels.functional import kernel_attention
from rkbs.kernels import get_kernel

KERNELS = {
    "elu": {},
    "positive_random_features": {"n_features": 128, "random_state": 0},
    "taylor_edp": {"degree": 2},
}


def _run(q, k, v, kernel, backend, causal):
    with torch.no_grad():
        return kernel_attention(q, k, v, is_causal=causal, kernel=kernel, backend=backend)


def _peak_memory_mb(q, k, v, kernel, backend, causal) -> float:
    if q.is_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _run(q, k, v, kernel, backend, causal)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: peak RSS growth of one forward pass
        try:
            base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            _run(q, k, v, kernel, backend, causal)
            grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
            os.write(write, str(grown / 1024).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        value = f.read()
    os.waitpid(pid, 0)
    return float(value)


def _crossover(lengths, t_quad, t_lin) -> float | None:
    """Smallest N where the linear form is faster, interpolated on log-log axes."""
    for i, (a, b) in enumerate(zip(t_quad, t_lin)):
        if b < a:
            if i == 0:
                return float(lengths[0])
            r0 = math.log(t_lin[i - 1] / t_quad[i - 1])
            r1 = math.log(b / a)
            frac = r0 / (r0 - r1)
            return float(math.exp(math.log(lengths[i - 1]) + frac * math.log(lengths[i] / lengths[i - 1])))
    return None


def main(argv=None) -> None:
    parser = _harness.make_parser(__doc__, name="linear_vs_quadratic", device="auto")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=32)
    args = parser.parse_args(argv)
    device = _harness.setup(args)
    if device.type != "cpu":
        args.name += f"_{device.type}"
    lengths = [128, 256, 512] if args.quick else [128, 256, 512, 1024, 2048, 4096]
    d = args.head_dim
    config = {"batch": 1, "heads": args.heads, "head_dim": d, "dtype": "float32", "device": device.type,
              "kernels": KERNELS, "lengths": lengths}
    results = _harness.Results.open(args, key=("kernel", "causal", "n", "seed"), config=config, device=device)
    configs = [(name, causal) for name in KERNELS for causal in (False, True)]
    keys = [dict(kernel=name, causal=causal, n=n, seed=seed) for name, causal in configs for n in lengths
            for seed in args.seeds]
    for key in results.pending(keys, desc="kernel x length"):
        name, causal, n = key["kernel"], key["causal"], key["n"]
        kernel = get_kernel(name, **KERNELS[name])
        m = kernel.feature_dim(d)
        g = torch.Generator().manual_seed(n + 100_003 * key["seed"])
        q, k, v = (torch.randn(1, args.heads, n, d, generator=g).to(device) for _ in range(3))
        row = dict(key, feature_dim=m)
        for backend, form in (("torch", "quadratic"), ("linear", "linear")):
            timer = benchmark.Timer(
                "_run(q, k, v, kernel, backend, causal)",
                globals={"_run": _run, "q": q, "k": k, "v": v, "kernel": kernel, "backend": backend,
                         "causal": causal},
            )
            row[f"{form}_ms"] = timer.blocked_autorange(min_run_time=0.2).median * 1e3
            row[f"{form}_peak_mb"] = _peak_memory_mb(q, k, v, kernel, backend, causal)
        results.add(row)
    rows = [r for r in results.rows if r["seed"] == args.seeds[0]]
    summary = []
    for name, causal in configs:
        sel = sorted((r for r in rows if r["kernel"] == name and r["causal"] == causal), key=lambda r: r["n"])
        n_star = _crossover([r["n"] for r in sel], [r["quadratic_ms"] for r in sel], [r["linear_ms"] for r in sel])
        m = sel[0]["feature_dim"]
        summary.append({"kernel": name, "causal": causal, "feature_dim": m, "crossover_n": n_star,
                        "crossover_ratio": None if n_star is None else n_star / m})
    results.set_summary(crossover=summary)
    _plot(rows, configs, results.path.with_suffix(".png"), device, _harness.provenance_caption(results))
    for s in summary:
        print(s)


def _plot(rows, configs, path, device, caption=None) -> None:
    plt = _harness.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (name, causal) in enumerate(configs):
        sel = sorted((r for r in rows if r["kernel"] == name and r["causal"] == causal), key=lambda r: r["n"])
        ns = [r["n"] for r in sel]
        style = "--" if causal else "-"
        color = f"C{i // 2}"
        label = f"{name}{' causal' if causal else ''}"
        axes[0].plot(ns, [r["quadratic_ms"] for r in sel], style, color=color, marker="o", label=f"{label} quadratic")
        axes[0].plot(ns, [r["linear_ms"] for r in sel], style, color=color, marker="x", label=f"{label} linear")
        axes[1].plot(ns, [r["quadratic_peak_mb"] for r in sel], style, color=color, marker="o")
        axes[1].plot(ns, [r["linear_peak_mb"] for r in sel], style, color=color, marker="x")
    for ax, ylabel in zip(axes, ("time per forward (ms)", "peak extra memory (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length N")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2)
    fig.suptitle(f"linear (o: quadratic, x: linear) vs quadratic kernel attention, {device}")
    _harness.save_figure(fig, path, caption=caption)


if __name__ == "__main__":
    main()
