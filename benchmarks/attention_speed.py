"""Throughput and peak memory of triton_ops.kernel_attention against PyTorch's attention back ends.

bf16, batch 2, 16 heads; every dot-product kernel x {normalized, not} x {causal, not}, N in {1024, 4096, 16384},
head dim in {64, 128}, forward and forward+backward; beside SDPA (flash and cuDNN back ends), compiled
FlexAttention (EDP, and normalized RBF through a key-norm score_mod) and eager PyTorch (the weight matrix
materialized; skipped where it would not fit). TFLOP/s count 4*B*H*N^2*d for the forward pass (half when
causal) and 3.5x that for forward+backward; times are medians of ``triton.testing.do_bench``.

    python benchmarks/attention_speed.py            # full sweep (about 8 minutes on an H100)
    python benchmarks/attention_speed.py --quick    # N=4096, d=128, a few kernels

Writes benchmarks/results/attention_speed[_quick].{json,csv,md,png} through the shared harness (``_harness.py``):
one row per (provider, kernel, normalize, N, d, causal, mode), stored as it is measured; a rerun skips the rows
already there (``--fresh`` measures everything again).
"""

from __future__ import annotations

import math
import os
import time

import _harness
import torch

import triton_ops
from rkbs.kernels import get_kernel

DOT_KERNELS = ("edp", "rbf", "laplacian", "polynomial", "linear", "cosine", "sigmoid", "tanh")
NORMALIZABLE = {"edp", "rbf", "laplacian", "polynomial", "sigmoid"}
GIB = 2.0**30


def flops(b, h, n, d, causal, mode):
    f = 4.0 * b * h * n * n * d * (0.5 if causal else 1.0)
    return f * (3.5 if mode == "fwd+bwd" else 1.0)


# ------------------------------------------------------------------------------------------------ providers
def eager_attention(q, k, v, kernel, normalize, causal):
    """Hand-written PyTorch: materializes the (B, H, N, N) weights, as a user without a fused kernel would."""
    d = q.shape[-1]
    s = q @ k.transpose(-1, -2)
    scale, gamma = 1.0 / math.sqrt(d), 1.0 / (2.0 * math.sqrt(d))
    if kernel in ("rbf", "laplacian", "cosine"):
        qn = (q.float() ** 2).sum(-1, keepdim=True)
        kn = (k.float() ** 2).sum(-1).unsqueeze(-2)
    if kernel == "edp":
        logw = s * scale
    elif kernel == "rbf":
        logw = -gamma * (qn + kn - 2 * s).clamp_min(0)
    elif kernel == "laplacian":
        logw = -gamma * (qn + kn - 2 * s).clamp_min(0).sqrt()
    else:
        logw = None
        x = s * scale
        w = {"polynomial": lambda: (x + 1.0) ** 2, "linear": lambda: x,
             "cosine": lambda: s * qn.rsqrt() * kn.rsqrt(), "sigmoid": lambda: torch.sigmoid(x),
             "tanh": lambda: torch.tanh(x)}[kernel]()
    n = q.shape[-2]
    keep = torch.ones(n, n, dtype=torch.bool, device=q.device).tril() if causal else None
    if logw is not None:
        if keep is not None:
            logw = logw.masked_fill(~keep, float("-inf"))
        w = torch.softmax(logw.float(), -1) if normalize else torch.exp(logw)
    else:
        if keep is not None:
            w = w.masked_fill(~keep, 0.0)
        if normalize:
            w = w / w.sum(-1, keepdim=True)
    return w.to(v.dtype) @ v


def sdpa(backend):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    be = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}[backend]

    def run(q, k, v, causal):
        with sdpa_kernel(be):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)

    return run


_FLEX = {}


def flex(kind):
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    if "fn" not in _FLEX:
        _FLEX["fn"] = torch.compile(flex_attention, dynamic=False)
    fn = _FLEX["fn"]

    def run(q, k, v, causal):
        n = q.shape[-2]
        key = (n, causal)
        if key not in _FLEX:
            _FLEX[key] = create_block_mask(lambda b, h, i, j: j <= i, None, None, n, n) if causal else None
        block_mask = _FLEX[key]
        if kind == "edp":
            return fn(q, k, v, block_mask=block_mask)
        gamma = 1.0 / (2.0 * math.sqrt(q.shape[-1]))
        kn = (k.float() ** 2).sum(-1) * gamma  # -gamma |q - k|^2 = 2 gamma q.k - gamma |k|^2 - (row constant)

        def score_mod(score, b, h, q_idx, kv_idx):
            return score - kn[b, h, kv_idx]

        return fn(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=2.0 * gamma)

    return run


# ----------------------------------------------------------------------------------------------- measuring
def measure(fn, q, k, v, mode, rep):
    from triton.testing import do_bench

    if mode == "fwd":
        call = lambda: fn(q, k, v)  # noqa: E731
        grad_to_none = None
    else:
        do = torch.randn_like(q[..., : v.shape[-1]])

        def call():
            fn(q, k, v).backward(do)

        grad_to_none = [q, k, v]
    call()  # compile / autotune outside the timing and the memory measurement
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    call()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / GIB
    ms = do_bench(call, warmup=max(5, rep // 4), rep=rep, grad_to_none=grad_to_none, return_mode="median")
    return ms, peak


# ------------------------------------------------------------------------------------------------- report
def _lookup(rows):
    return {(r["provider"], r["kernel"], r["normalize"], r["n"], r["d"], r["causal"], r["mode"]): r for r in rows}


def _fmt(r, key="tflops"):
    if r is None:
        return "-"
    if r.get(key) is None:
        return "OOM" if "memory" in r.get("skipped", "") else "skip"
    return f"{r[key]:.0f}" if key == "tflops" else f"{r[key]:.2f}"


def write_markdown(rows, meta, path):
    t = _lookup(rows)
    ns = sorted({r["n"] for r in rows})
    ds = sorted({r["d"] for r in rows})
    kernels = [k for k in DOT_KERNELS if any(r["provider"] == "triton_ops" and r["kernel"] == k for r in rows)]
    lines = [
        f"Measured on {meta['gpu']}, torch {meta['torch']}, triton {meta['triton']}; bf16, batch {meta['batch']}, "
        f"{meta['heads']} heads; TFLOP/s with {meta['flops']}. `fwd / fwd+bwd`.",
        "",
        "| d | N | causal | triton_ops EDP | triton_ops RBF (norm.) | SDPA cuDNN | SDPA flash | Flex EDP | Flex RBF | "
        "eager EDP | eager RBF (un-norm.) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    cols = [("triton_ops", "edp", True), ("triton_ops", "rbf", True), ("sdpa_cudnn", "edp", True),
            ("sdpa_flash", "edp", True), ("flex", "edp", True), ("flex", "rbf", True), ("eager", "edp", True),
            ("eager", "rbf", False)]
    for d in ds:
        for n in ns:
            for causal in (False, True):
                cells = [" / ".join(_fmt(t.get((p, k, nz, n, d, causal, m))) for m in ("fwd", "fwd+bwd"))
                         for p, k, nz in cols]
                lines.append(f"| {d} | {n} | {'yes' if causal else 'no'} | " + " | ".join(cells) + " |")
    n_big = ns[-1]
    lines += [
        "",
        f"Every kernel of triton_ops at N = {n_big} (`fwd / fwd+bwd` TFLOP/s; ratio = forward throughput over "
        "triton_ops' normalized EDP; peak = extra memory of one forward+backward, GiB).",
        "",
        "| kernel | mode | d | non-causal | causal | ratio vs EDP (fwd, non-causal) | peak GiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in ds:
        base = t.get(("triton_ops", "edp", True, n_big, d, False, "fwd"))
        for kernel in kernels:
            for nz in (True, False):
                if nz and kernel not in NORMALIZABLE:
                    continue
                cells = []
                for causal in (False, True):
                    cells.append(" / ".join(_fmt(t.get(("triton_ops", kernel, nz, n_big, d, causal, m)))
                                            for m in ("fwd", "fwd+bwd")))
                r = t.get(("triton_ops", kernel, nz, n_big, d, False, "fwd"))
                ratio = (f"{r['tflops'] / base['tflops']:.2f}" if r and base and r.get("tflops") and base.get("tflops")
                         else "-")
                peak = _fmt(t.get(("triton_ops", kernel, nz, n_big, d, False, "fwd+bwd")), "peak_gib")
                mode = "normalized" if nz else "un-normalized"
                lines.append(f"| {kernel} | {mode} | {d} | {cells[0]} | {cells[1]} | {ratio} | {peak} |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def write_plot(rows, meta, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = _lookup(rows)
    ns = sorted({r["n"] for r in rows})
    d = max(r["d"] for r in rows)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    series = [("triton_ops", k, nz) for k in DOT_KERNELS for nz in (True, False)
              if not (nz and k not in NORMALIZABLE)]
    series += [("sdpa_cudnn", "edp", True), ("sdpa_flash", "edp", True), ("flex", "edp", True), ("flex", "rbf", True)]
    for ax, mode in zip(axes, ("fwd", "fwd+bwd")):
        for p, k, nz in series:
            ys = [t.get((p, k, nz, n, d, False, mode), {}).get("tflops") for n in ns]
            if not any(ys):
                continue
            label = f"{p} {k}" + ("" if p != "triton_ops" else (" norm" if nz else " un-norm"))
            style = "-" if p == "triton_ops" else "--"
            ax.plot(ns, [y if y is not None else float("nan") for y in ys], style, marker="o", label=label,
                    linewidth=2.5 if p != "triton_ops" else 1.2)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length N")
        ax.set_title(f"{mode}, d={d}, non-causal, bf16, B=2, H=16")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("TFLOP/s")
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(f"triton_ops.kernel_attention vs PyTorch on {meta['gpu']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


_KEY = ("provider", "kernel", "normalize", "n", "d", "causal", "mode")


def _meta(config, run):
    """The fields the table and plot print: this config plus the GPU and versions of the run."""
    return dict(config, gpu=run["machine"].get("gpu"), torch=run["versions"].get("torch"),
                triton=run["versions"].get("triton"))


def main(argv=None):
    p = _harness.make_parser(__doc__, name="attention_speed", device="cuda")
    p.add_argument("--n", type=int, nargs="*", default=None)
    p.add_argument("--d", type=int, nargs="*", default=None)
    p.add_argument("--kernels", nargs="*", default=None)
    p.add_argument("--modes", nargs="*", default=["fwd", "fwd+bwd"])
    p.add_argument("--rep", type=int, default=15, help="do_bench repetition time in ms")
    p.add_argument("--flex-min-n", type=int, default=4096, help="skip FlexAttention below this N (compile time)")
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--eager-max-n", type=int, default=4096, help="skip eager above this N (memory)")
    p.add_argument("--from-json", action="store_true", help="only rewrite the .md and .png from the .json")
    args = p.parse_args(argv)
    stem = _harness.results_path(args).with_suffix("")
    if args.from_json:
        saved = _harness.load_results(stem.with_suffix(".json"))
        # files written before the harness kept these fields under "meta"
        meta = saved["runs"][0]["meta"] if saved["layout"] == 0 else _meta(saved["config"], saved["runs"][-1])
        write_markdown(saved["results"], meta, str(stem) + ".md")
        write_plot(saved["results"], meta, str(stem) + ".png")
        return
    if not torch.cuda.is_available():
        raise SystemExit("attention_speed.py needs a CUDA device (speed is only measured on a GPU).")
    device = _harness.setup(args)
    if device.type != "cuda":
        raise SystemExit(f"--device {args.device!r}: attention_speed.py measures CUDA devices only")
    if device.index is not None:
        torch.cuda.set_device(device)  # do_bench and the memory counters use the current device

    ns = args.n or ([4096] if args.quick else [4096, 16384, 1024])
    ds = args.d or ([128] if args.quick else [128, 64])
    kernels = args.kernels or (["edp", "rbf", "polynomial"] if args.quick else list(DOT_KERNELS))
    b, h, dtype = 2, 16, torch.bfloat16
    config = dict(
        batch=b, heads=h, dtype="bfloat16", rep_ms=args.rep, eager_max_n=args.eager_max_n,
        flops="4*B*H*N^2*d forward (half when causal), 3.5x for forward+backward; median of do_bench",
        triton_ops_autotune=os.environ.get("TRITON_OPS_AUTOTUNE", "1") not in ("0", "false", "False", ""),
    )
    results = _harness.Results.open(args, key=_KEY, config=config, device=device)
    torch._dynamo.config.cache_size_limit = 256
    if hasattr(torch._dynamo.config, "recompile_limit"):
        torch._dynamo.config.recompile_limit = 256
    t0 = time.time()

    def record(provider, kernel, normalize, n, d, causal, mode, fn, q, k, v):
        entry = dict(provider=provider, kernel=kernel, normalize=normalize, n=n, d=d, causal=causal, mode=mode)
        if results.done(**entry):
            return
        try:
            ms, peak = measure(fn, q, k, v, mode, args.rep)
            entry.update(ms=ms, tflops=flops(b, h, n, d, causal, mode) / ms * 1e-9, peak_gib=peak)
        except torch.OutOfMemoryError:
            entry.update(ms=None, tflops=None, peak_gib=None, skipped="out of memory")
            torch.cuda.empty_cache()
        results.add(entry)
        tf = f"{entry['tflops']:.0f}" if entry.get("tflops") else entry.get("skipped")
        _harness.log(f"[{time.time() - t0:6.0f}s] {provider:10s} {kernel:10s} norm={normalize!s:5s} N={n:5d} "
                     f"d={d:3d} causal={causal!s:5s} {mode:7s} {tf} TFLOP/s")

    for d in _harness.progress(ds, desc="head dims", disable=args.no_progress):
        for n in ns:
            q, k, v = (torch.randn(b, h, n, d, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
            with torch.no_grad():
                q.mul_(0.5), k.mul_(0.5)
            for causal in (False, True):
                for mode in args.modes:
                    for kernel in kernels:
                        for normalize in (True, False):
                            if normalize and kernel not in NORMALIZABLE:
                                continue
                            fn = (lambda spec, nz, c: lambda q, k, v: triton_ops.kernel_attention(
                                q, k, v, spec=spec, normalize=nz, is_causal=c)
                                )(get_kernel(kernel).fused_spec(d), normalize, causal)
                            record("triton_ops", kernel, normalize, n, d, causal, mode, fn, q, k, v)
                    if args.no_peers:
                        continue
                    for name in ("flash", "cudnn"):
                        run = sdpa(name)
                        record(f"sdpa_{name}", "edp", True, n, d, causal, mode,
                               lambda q, k, v, r=run: r(q, k, v, causal), q, k, v)
                    for kind in ("edp", "rbf") if n >= args.flex_min_n else ():
                        run = flex(kind)
                        record("flex", kind, True, n, d, causal, mode,
                               lambda q, k, v, r=run: r(q, k, v, causal), q, k, v)
                    for kernel, normalize in (("edp", True), ("rbf", False)):
                        if n > args.eager_max_n:
                            results.add(dict(provider="eager", kernel=kernel, normalize=normalize, n=n, d=d,
                                             causal=causal, mode=mode, ms=None, tflops=None, peak_gib=None,
                                             skipped=f"N > {args.eager_max_n}: B*H*N^2 weights do not fit"))
                            continue
                        record("eager", kernel, normalize, n, d, causal, mode,
                               lambda q, k, v, kk=kernel, nz=normalize: eager_attention(q, k, v, kk, nz, causal),
                               q, k, v)
            del q, k, v
            torch.cuda.empty_cache()
            _write_reports(results, stem)  # partial reports survive a time limit
    _write_reports(results, stem)
    print(f"wrote {stem}.json/.csv/.md/.png in {time.time() - t0:.0f}s", flush=True)


def _write_reports(results, stem):
    meta = _meta(results.config, results.runs[-1])
    write_markdown(results.rows, meta, str(stem) + ".md")
    try:
        write_plot(results.rows, meta, str(stem) + ".png")
    except ImportError:
        print("matplotlib is not installed: no plot (rerun with --from-json where it is)")


if __name__ == "__main__":
    main()
