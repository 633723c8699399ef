"""The torch back end of ``kernel_attention`` on the CPU: time and peak memory against SDPA and the eager formula.

Suites (``--suite``):

- ``speed``: every kernel x causal x {fwd, fwd+bwd} x N (B = 1, H = 4, d = 64, float32), beside
  ``F.scaled_dot_product_attention`` (softmax: the bar every kernel is held to) and the eager formula that
  materialises the N x N weights (``kernel_attention_weights(...) @ v``);
- ``decode``: 1 query against 1k-64k cached keys (``window=(-1, 0)``), EDP and RBF, beside SDPA;
- ``varlen``: a packed batch of 8 sequences of mixed lengths (``cu_seqlens``) against the same batch padded
  to the longest with a key-padding mask;
- ``window``: sliding window ``(w, 0)`` at N = 8192 for w in 128..2048: time should grow linearly in w;
- ``done``: the issue's acceptance table in one bounded run: the dot-family kernels at N in {2048, 8192}
  (``--n`` overrides), fwd and fwd+bwd, each pass one interleaved group of ours / SDPA / eager, causal and not,
  so that ours / SDPA, ours / eager and causal / non-causal all come from the same rounds; ``--large-rounds``
  rounds from N = 8192 on. Each row is checked against the targets (EDP, RBF <= 1.2x SDPA; the others
  <= 2x SDPA and <= 1x eager; causal <= 0.6x non-causal at N >= 8192);
- ``piece``: the one-piece path (``ONE_PIECE_BYTES``) against the previous dispatch (``tiled``: tiles above
  one tile, the autograd Function for inference) and the eager formula, non-causal, fwd and fwd+bwd.

Methods run interleaved in one process, round after round (medians), so a shared machine slows them alike;
the JSON records the load average. Peak memory is the resident-set peak above the baseline, sampled every
2 ms by a thread (CPU tensors have no allocator statistics): memory the C allocator reuses from earlier calls
does not show, so it separates O(N^2) buffers (the eager formula) from O(N * tile) ones, nothing finer.
Resumable: finished keys are skipped.

    python benchmarks/attention_cpu.py                       # every suite, full grid
    python benchmarks/attention_cpu.py --quick               # N in {512, 2048}, 2 rounds
    python benchmarks/attention_cpu.py --suite speed --kernels edp rbf --n 8192 --rounds 2
    python benchmarks/attention_cpu.py --suite done --threads 1 --name attention_cpu_done   # ~10 min, 1 thread
    python benchmarks/attention_cpu.py --suite piece --kernels linear cosine tanh --n 512 2048 --rounds 7 \
        --threads 1 --name attention_cpu_piece                                          # ~3 min, 1 thread

Writes benchmarks/results/attention_cpu.{json,csv,md,png}.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import threading
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from attention_kernels.functional import kernel_attention, kernel_attention_weights  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
KERNELS = {  # name -> (catalogue name, params, normalize)
    "edp": ("edp", {}, True),
    "rbf": ("rbf", {}, True),
    "laplacian": ("laplacian", {}, True),
    "polynomial": ("polynomial", {"degree": 2}, True),
    "sigmoid": ("sigmoid", {"coef0": -2.0}, True),
    "exp_intersection": ("exp_intersection", {}, True),
    "edp_unnormalized": ("edp", {}, False),
    "linear": ("linear", {}, False),
    "cosine": ("cosine", {}, False),
    "tanh": ("tanh", {}, False),
}
# the catalogue's dot family (rkbs.kernels.list_kernels("dot")), as the acceptance table names them
DOT_FAMILY = ("edp", "rbf", "laplacian", "polynomial", "sigmoid", "linear", "cosine", "tanh", "edp_unnormalized")
SDPA_TARGET = {"edp": 1.2, "rbf": 1.2}  # ours / SDPA; every other dot-family kernel: DOT_TARGET
DOT_TARGET, CAUSAL_TARGET, CAUSAL_TARGET_MIN_N = 2.0, 0.6, 8192


# ---------------------------------------------------------------------------------------------- measuring
class _PeakRSS:
    """Resident-set peak above the value at entry, sampled by a thread (bytes)."""

    def __init__(self, period: float = 0.002):
        self.period, self.peak, self._stop = period, 0, threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss() - self.base)
            time.sleep(self.period)

    def __enter__(self):
        self.base = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss() - self.base)


def _timed(fn, backward: bool, inputs, reps: int = 1):
    """Mean seconds per call over ``reps`` back-to-back calls, and the resident-set peak."""
    with _PeakRSS() as mem:
        start = time.perf_counter()
        for _ in range(reps):
            for t in inputs:
                t.grad = None
            if backward:
                out = fn()
                out.backward(torch.ones_like(out))
            else:
                with torch.no_grad():
                    fn()
        elapsed = (time.perf_counter() - start) / reps
    return elapsed, mem.peak


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else 0.5 * (xs[len(xs) // 2 - 1] + xs[len(xs) // 2])


def _inputs(b, h, nq, nk, d, backward, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, nq, d, generator=g).requires_grad_(backward)
    k = torch.randn(b, h, nk, d, generator=g).requires_grad_(backward)
    v = torch.randn(b, h, nk, d, generator=g).requires_grad_(backward)
    return q, k, v


def _interleaved(methods: dict, backward: bool, inputs, rounds: int):
    times = {name: [] for name in methods}
    peaks = {name: 0 for name in methods}
    reps = {}
    for name, fn in methods.items():  # warm-up (first-call allocations), then enough calls for >= 50 ms
        first = _timed(fn, backward, inputs)[0]
        once = first if first > 0.05 else _timed(fn, backward, inputs)[0]
        reps[name] = max(1, min(50, int(0.05 / max(once, 1e-6))))
    for r in range(rounds):
        names = list(methods)
        names = names[r % len(names):] + names[: r % len(names)]  # rotate the order every round
        for name in names:
            t, m = _timed(methods[name], backward, inputs, reps[name])
            times[name].append(t)
            peaks[name] = max(peaks[name], m)
    return {name: {"median_s": _median(ts), "times_s": ts, "peak_mib": peaks[name] / 2**20}
            for name, ts in times.items()}


# ------------------------------------------------------------------------------------------------- suites
def suite_speed(args, results):
    for n in args.n:
        for kname in args.kernels:
            name, params, normalize = KERNELS[kname]
            for causal in (False, True):
                for passname in ("fwd", "fwd+bwd"):
                    key = f"speed/{kname}/N={n}/causal={causal}/{passname}"
                    if key in results:
                        continue
                    backward = passname == "fwd+bwd"
                    q, k, v = _inputs(1, 4, n, n, 64, backward)
                    methods = {
                        "ours": lambda: kernel_attention(q, k, v, is_causal=causal, kernel=name,
                                                         normalize=normalize, backend="torch", **params),
                        "sdpa": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                    }
                    if causal and n >= args.causal_ratio_min_n:  # causal against non-causal, interleaved
                        methods["ours_noncausal"] = lambda: kernel_attention(
                            q, k, v, kernel=name, normalize=normalize, backend="torch", **params)
                    if n <= (args.eager_bwd_max_n if backward else args.eager_max_n):
                        methods["eager"] = lambda: kernel_attention_weights(
                            q, k, is_causal=causal, kernel=name, normalize=normalize, **params) @ v
                    res = _interleaved(methods, backward, (q, k, v), args.rounds)
                    res["ours/sdpa"] = res["ours"]["median_s"] / res["sdpa"]["median_s"]
                    if "eager" in res:
                        res["ours/eager"] = res["ours"]["median_s"] / res["eager"]["median_s"]
                    if "ours_noncausal" in res:
                        res["causal/noncausal"] = res["ours"]["median_s"] / res["ours_noncausal"]["median_s"]
                    _record(args, results, key, res)


def _pending_cases(args, results, suite):
    """(n, kernel id, catalogue name, params, normalize, pass, key) of a suite's N x kernel x pass grid, the stored
    keys skipped: the loop of every suite that times a forward and a forward + backward per kernel and length."""
    for n in args.n:
        for kname in args.kernels:
            name, params, normalize = KERNELS[kname]
            for passname in ("fwd", "fwd+bwd"):
                key = f"{suite}/{kname}/N={n}/{passname}"
                if key not in results:
                    yield n, kname, name, params, normalize, passname, key


def suite_done(args, results):
    for n, kname, name, params, normalize, passname, key in _pending_cases(args, results, "done"):
        rounds = args.large_rounds if n >= CAUSAL_TARGET_MIN_N else args.rounds
        backward = passname == "fwd+bwd"
        q, k, v = _inputs(1, 4, n, n, 64, backward)
        methods = {}
        for causal in (False, True):
            tag = "_causal" if causal else ""
            methods["ours" + tag] = lambda c=causal: kernel_attention(
                q, k, v, is_causal=c, kernel=name, normalize=normalize, backend="torch", **params)
            methods["sdpa" + tag] = lambda c=causal: F.scaled_dot_product_attention(q, k, v, is_causal=c)
            if n <= (args.eager_bwd_max_n if backward else args.eager_max_n):
                methods["eager" + tag] = lambda c=causal: kernel_attention_weights(
                    q, k, is_causal=c, kernel=name, normalize=normalize, **params) @ v
        res = _interleaved(methods, backward, (q, k, v), rounds)
        med = {m: r["median_s"] for m, r in res.items()}
        for tag in ("", "_causal"):
            res["ours/sdpa" + tag] = med["ours" + tag] / med["sdpa" + tag]
            if "eager" + tag in med:
                res["ours/eager" + tag] = med["ours" + tag] / med["eager" + tag]
        res["causal/noncausal"] = med["ours_causal"] / med["ours"]
        res["sdpa causal/noncausal"] = med["sdpa_causal"] / med["sdpa"]
        _record(args, results, key, res)


def _previous_rule(plan, q, k, training):
    """The dispatch before ONE_PIECE_BYTES: plain autograd only for training on one tile without dropout."""
    return training and plan.dropout_p == 0.0 and plan.bq >= q.shape[-2] and plan.bk >= k.shape[-2]


def suite_piece(args, results):
    """The one-piece path against the previous dispatch (tiled above one tile, autograd Function for inference)
    and the eager formula, interleaved: ``ours`` / ``tiled`` / ``eager`` per kernel, N and pass."""
    import attention_kernels._chunked as chunked

    for n, kname, name, params, normalize, passname, key in _pending_cases(args, results, "piece"):
        backward = passname == "fwd+bwd"
        q, k, v = _inputs(1, 4, n, n, 64, backward)

        def ours():
            return kernel_attention(q, k, v, kernel=name, normalize=normalize, backend="torch", **params)

        def tiled():
            rule, chunked._in_one_piece = chunked._in_one_piece, _previous_rule
            try:
                return ours()
            finally:
                chunked._in_one_piece = rule

        methods = {"ours": ours, "tiled": tiled, "eager": lambda: kernel_attention_weights(
            q, k, kernel=name, normalize=normalize, **params) @ v}
        res = _interleaved(methods, backward, (q, k, v), args.rounds)
        med = {m: r["median_s"] for m, r in res.items()}
        res["ours/eager"] = med["ours"] / med["eager"]
        res["tiled/eager"] = med["tiled"] / med["eager"]
        _record(args, results, key, res)


def _done_checks(kname: str, n: int, res: dict) -> list[str]:
    """The targets a ``done`` row misses (empty: it meets every target that applies)."""
    missed = []
    limit = SDPA_TARGET.get(kname, DOT_TARGET)
    for tag in ("", "_causal"):
        if res["ours/sdpa" + tag] > limit:
            missed.append(f"ours/sdpa{tag} > {limit}")
        if kname not in SDPA_TARGET and res.get("ours/eager" + tag, 0.0) > 1.0:
            missed.append(f"ours/eager{tag} > 1")
    if n >= CAUSAL_TARGET_MIN_N and res["causal/noncausal"] > CAUSAL_TARGET:
        missed.append(f"causal/noncausal > {CAUSAL_TARGET}")
    return missed


def suite_decode(args, results):
    for nk in args.decode_keys:
        for kname in ("edp", "rbf"):
            key = f"decode/{kname}/keys={nk}"
            if key in results:
                continue
            q, k, v = _inputs(1, 8, 1, nk, 64, False)
            methods = {
                "ours": lambda: kernel_attention(q, k, v, kernel=kname, window=(-1, 0), backend="torch"),
                "ours_tiled_lse": lambda: kernel_attention(q, k, v, kernel=kname, window=(-1, 0), backend="torch",
                                                           return_lse=True)[0],
                "sdpa": lambda: F.scaled_dot_product_attention(q, k, v),
            }
            res = _interleaved(methods, False, (q, k, v), args.rounds + 2)
            res["ours/sdpa"] = res["ours"]["median_s"] / res["sdpa"]["median_s"]
            res["tiled/sdpa"] = res["ours_tiled_lse"]["median_s"] / res["sdpa"]["median_s"]
            _record(args, results, key, res)


def suite_varlen(args, results):
    lengths = [1024, 96, 512, 33, 700, 256, 64, 900]
    for kname in ("edp", "rbf", "laplacian"):
        for passname in ("fwd", "fwd+bwd"):
            key = f"varlen/{kname}/{passname}"
            if key in results:
                continue
            backward = passname == "fwd+bwd"
            total, longest, h, d = sum(lengths), max(lengths), 4, 64
            g = torch.Generator().manual_seed(0)
            packed = [torch.randn(total, h, d, generator=g).requires_grad_(backward) for _ in range(3)]
            cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
            padded = [torch.zeros(len(lengths), h, longest, d).requires_grad_(backward) for _ in range(3)]
            keep = torch.zeros(len(lengths), 1, 1, longest, dtype=torch.bool)
            for i, n in enumerate(lengths):
                keep[i, ..., :n] = True
            methods = {
                "packed": lambda: kernel_attention(*packed, kernel=kname, is_causal=True, cu_seqlens_q=cu,
                                                   cu_seqlens_k=cu, backend="torch"),
                "padded": lambda: kernel_attention(*padded, attn_mask=keep, kernel=kname, is_causal=True,
                                                   backend="torch"),
            }
            res = _interleaved(methods, backward, packed + padded, args.rounds)
            res["packed/padded"] = res["packed"]["median_s"] / res["padded"]["median_s"]
            _record(args, results, key, res)


def suite_window(args, results):
    n = args.window_n
    for kname in ("edp", "laplacian"):
        for w in (128, 256, 512, 1024, 2048):
            key = f"window/{kname}/N={n}/w={w}"
            if key in results:
                continue
            q, k, v = _inputs(1, 4, n, n, 64, False)
            methods = {"ours": lambda: kernel_attention(q, k, v, kernel=kname, window=(w, 0), backend="torch")}
            res = _interleaved(methods, False, (q, k, v), args.rounds)
            _record(args, results, key, res)


# ------------------------------------------------------------------------------------------------- output
def _machine():
    def git(*a):
        try:
            return subprocess.run(["git", *a], capture_output=True, text=True, cwd=HERE).stdout.strip()
        except OSError:
            return ""

    return {"machine": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
            "command": " ".join(sys.argv), "git_commit": git("rev-parse", "HEAD"),
            "note": _NOTE}


_NOTE = "shared machine: other jobs ran alongside; ratios come from interleaved rounds in one process"


def _record(args, results, key, res):
    res["loadavg"] = os.getloadavg()
    results[key] = res
    summary = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items() if "/" in k}
    print(key, {m: round(r["median_s"], 4) for m, r in res.items() if isinstance(r, dict)}, summary, flush=True)
    with open(args.json, "w") as fh:
        json.dump({"meta": _machine(), "results": results}, fh, indent=1)


def _write_csv(args, results):
    with open(args.json.replace(".json", ".csv"), "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["key", "method", "median_s", "peak_mib"])
        for key, res in results.items():
            for method, r in res.items():
                if isinstance(r, dict):
                    writer.writerow([key, method, f"{r['median_s']:.6f}", f"{r['peak_mib']:.1f}"])


def _markdown(args, results):
    """The README's CPU table: ours / SDPA and ours / eager per kernel, causal, N (fwd | fwd+bwd)."""
    lines = ["| kernel | N | causal | ours / SDPA fwd | ours / SDPA fwd+bwd | ours / eager fwd | ours / eager fwd+bwd |"
             " causal / non-causal fwd+bwd (interleaved) |", "|---|---|---|---|---|---|---|---|"]

    def get(kname, n, causal, passname, field):
        r = results.get(f"speed/{kname}/N={n}/causal={causal}/{passname}", {})
        return r.get(field) if field != "ours" else r.get("ours", {}).get("median_s")

    fmt = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
    ns = sorted({int(k.split("/")[2][2:]) for k in results if k.startswith("speed/")})
    for kname in KERNELS:
        for n in ns:
            for causal in (False, True):
                if get(kname, n, causal, "fwd", "ours/sdpa") is None:
                    continue
                ratio = get(kname, n, causal, "fwd+bwd", "causal/noncausal") if causal else None
                lines.append(f"| {kname} | {n} | {'yes' if causal else 'no'} | "
                             f"{fmt(get(kname, n, causal, 'fwd', 'ours/sdpa'))} | "
                             f"{fmt(get(kname, n, causal, 'fwd+bwd', 'ours/sdpa'))} | "
                             f"{fmt(get(kname, n, causal, 'fwd', 'ours/eager'))} | "
                             f"{fmt(get(kname, n, causal, 'fwd+bwd', 'ours/eager'))} | {fmt(ratio)} |")
    done = [(key, r) for key, r in results.items() if key.startswith("done/")]
    if done:
        lines += ["", "Acceptance table (`--suite done`): ours / SDPA and ours / eager, non-causal | causal, and ours "
                  "causal / non-causal, all from the same interleaved rounds.", "",
                  "| kernel | N | pass | ours / SDPA | ours / eager | causal / non-causal (SDPA's) | targets missed |",
                  "|---|---|---|---|---|---|---|"]
        for key, r in done:
            _, kname, nn, passname = key.split("/")
            n = int(nn[2:])
            eager = (f"{fmt(r.get('ours/eager'))} \\| {fmt(r.get('ours/eager_causal'))}"
                     if "ours/eager" in r else "-")
            lines.append(f"| {kname} | {n} | {passname} | {fmt(r['ours/sdpa'])} \\| {fmt(r['ours/sdpa_causal'])} | "
                         f"{eager} | {fmt(r['causal/noncausal'])} ({fmt(r['sdpa causal/noncausal'])}) | "
                         f"{', '.join(_done_checks(kname, n, r)) or 'none'} |")
    lines += ["", "| suite | case | ratio |", "|---|---|---|"]
    for key, r in results.items():
        if key.startswith("done/"):
            continue
        for field in ("ours/sdpa", "packed/padded", "ours/eager", "tiled/eager"):
            if not key.startswith("speed/") and field in r:
                lines.append(f"| {key.split('/')[0]} | {'/'.join(key.split('/')[1:])} | {field} = {r[field]:.2f} |")
    for key, r in results.items():
        if key.startswith("window/"):
            lines.append(f"| window | {'/'.join(key.split('/')[1:])} | {r['ours']['median_s']:.3f} s |")
    with open(args.json.replace(".json", ".md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


def _plot(args, results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for ax, passname in zip(axes[:2], ("fwd", "fwd+bwd")):
        for kname in KERNELS:
            for causal, style in ((False, "-"), (True, "--")):
                pts = [(int(k.split("/")[2][2:]), r["ours/sdpa"]) for k, r in results.items()
                       if k.startswith(f"speed/{kname}/") and k.endswith(f"causal={causal}/{passname}")]
                if pts:
                    pts.sort()
                    ax.plot(*zip(*pts), style, marker="o", label=f"{kname}{' causal' if causal else ''}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.axhline(1.0, color="k", lw=0.5)
        ax.set_title(f"time / SDPA time, {passname}")
        ax.set_xlabel("N")
    axes[0].legend(fontsize=6, ncol=2)
    ax = axes[2]
    for kname in ("edp", "laplacian"):
        pts = sorted((int(k.rsplit("=", 1)[1]), r["ours"]["median_s"]) for k, r in results.items()
                     if k.startswith(f"window/{kname}/"))
        if pts:
            ax.plot(*zip(*pts), marker="o", label=f"window {kname}")
    pts = sorted((int(k.rsplit("=", 1)[1]), r["ours"]["median_s"], r["sdpa"]["median_s"])
                 for k, r in results.items() if k.startswith("decode/edp/"))
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="s", label="decode edp (1 query)")
        ax.plot([p[0] for p in pts], [p[2] for p in pts], marker="x", label="decode sdpa")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("window / cached keys")
    ax.set_ylabel("seconds")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.json.replace(".json", ".png"), dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N in {512, 2048}, 2 rounds")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--seeds", type=int, default=1, help="unused (inputs are seeded); harness flag")
    parser.add_argument("--device", default="cpu", choices=["cpu"])
    parser.add_argument("--suite", nargs="+", default=["speed", "decode", "varlen", "window"],
                        choices=["speed", "decode", "varlen", "window", "done", "piece"])
    parser.add_argument("--kernels", nargs="+", default=None, choices=list(KERNELS),
                        help="default: every kernel (the dot family for --suite done)")
    parser.add_argument("--n", nargs="+", type=int, default=None,
                        help="sequence lengths (default: 512 2048 8192; 2048 8192 for --suite done)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--large-rounds", type=int, default=2,
                        help="rounds of the done suite from N = 8192 on (each call there takes seconds)")
    parser.add_argument("--eager-max-n", type=int, default=8192, help="largest N for the eager forward")
    parser.add_argument("--eager-bwd-max-n", type=int, default=2048,
                        help="largest N for the eager fwd+bwd (it holds several N x N tensors per head)")
    parser.add_argument("--decode-keys", nargs="+", type=int, default=[1024, 4096, 16384, 32768, 65536])
    parser.add_argument("--window-n", type=int, default=8192)
    parser.add_argument("--causal-ratio-min-n", type=int, default=8192,
                        help="from this N on, causal configs also time the non-causal call, interleaved")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--name", default="attention_cpu")
    parser.add_argument("--note", default=None,
                        help="the machine's state for the JSON (default: a shared machine); e.g. 'quiet machine'")
    args = parser.parse_args(argv)
    done_only = args.suite == ["done"]
    if args.n is None:
        args.n = [2048, 8192] if done_only else [512, 2048, 8192]
    if args.kernels is None:
        args.kernels = list(DOT_FAMILY) if done_only else list(KERNELS)
    if args.quick:
        args.n, args.rounds = [n for n in args.n if n <= 2048] or [512], 2
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.note:
        global _NOTE
        _NOTE = args.note
    os.makedirs(args.out, exist_ok=True)
    args.json = os.path.join(args.out, f"{args.name}.json")
    results = {}
    if os.path.exists(args.json):
        with open(args.json) as fh:
            results = json.load(fh).get("results", {})
    for suite in args.suite:
        {"speed": suite_speed, "decode": suite_decode, "varlen": suite_varlen, "window": suite_window,
         "done": suite_done, "piece": suite_piece}[suite](args, results)
    _write_csv(args, results)
    _markdown(args, results)
    _plot(args, results)


if __name__ == "__main__":
    main()
