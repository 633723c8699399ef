"""Summarize ``python -m tools.compile_check --json`` records of several triton versions as markdown.

    python benchmarks/compile_check_summary.py benchmarks/results/compile_check_sm90_triton*.json \
        > benchmarks/results/compile_check_sm90.md

The JSON files come from one run per triton version on a CPU-only machine, for example
``PYTHONPATH=/path/to/triton-3.6 python -m tools.compile_check --json out.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

_KERNELS = {"_fwd_kernel": "fwd", "_dkdv_kernel": "dK/dV", "_dq_kernel": "dQ"}


def _load(path: Path) -> dict:
    data = json.loads(path.read_text())
    data["path"] = path.name
    return data


def _overview(runs: list[dict]) -> list[str]:
    lines = ["| triton | kernels compiled | failed | defaults | defaults that spill | worst default spill (B) "
             "| other candidates | candidates that spill |", "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        recs = run["records"]
        defaults = [r for r in recs if r["default"]]
        others = [r for r in recs if not r["default"]]
        spilled = [r for r in defaults if r["spill_bytes"]]
        worst = max((r["spill_bytes"] for r in defaults), default=0)
        lines.append(
            f"| {run['triton']} | {sum(r['ok'] for r in recs)} | {sum(not r['ok'] for r in recs)} | {len(defaults)} "
            f"| {len(spilled)} | {worst} | {len(others) or '-'} "
            f"| {sum(bool(r['spill_bytes']) for r in others) if others else '-'} |"
        )
    return lines


def _by_kernel(runs: list[dict], dtype: str, head_dim: int) -> list[str]:
    """Default configs of every kernel at one dtype/head dim, non-causal, no mask: registers/spill/MUFU."""
    head = "| kernel | mode | pass | " + " | ".join(f"triton {r['triton']}" for r in runs) + " |"
    lines = [head, "|" + "---|" * (3 + len(runs))]
    rows: dict = {}
    for i, run in enumerate(runs):
        for r in run["records"]:
            c = r["case"]
            wanted = c["dtype"] == dtype and c["head_dim"] == head_dim and not c["causal"] and c["mask"] == "none"
            if not (r["default"] and wanted):
                continue
            name = c["kernel"] + "".join(f" {k}={v}" for k, v in c["params"])
            key = (name, "norm." if c["normalize"] else "un-norm.", _KERNELS[r["kernel"]])
            cell = f"{r['registers']} / {r['spill_bytes']} / {r['sass'].get('MUFU', '?')}" if r["ok"] else "FAILED"
            rows.setdefault(key, [""] * len(runs))[i] = cell
    for (name, mode, kernel), cells in rows.items():
        lines.append(f"| {name} | {mode} | {kernel} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", nargs="+", type=Path)
    args = parser.parse_args(argv)
    runs = sorted((_load(p) for p in args.json), key=lambda r: [int(x) for x in r["triton"].split(".")[:3]])
    arch = {r["arch"] for r in runs}
    out = [
        f"# Ahead-of-time compilation of triton_ops for sm_{'/'.join(map(str, sorted(arch)))}",
        "",
        "Made on a CPU-only machine by `python -m tools.compile_check` (Triton's compiler and the `ptxas` of",
        "its wheel, no GPU), summarized by `python benchmarks/compile_check_summary.py`. A case is one call of",
        "`triton_ops.kernel_attention` (every kernel and mode, causal or not, head dims 16-256, fp16/bf16/fp32,",
        "masks), each compiling a forward, a dK/dV and a dQ kernel; the default is the block configuration used",
        "without autotuning, the other candidates are what the autotuner times on a GPU. Spilled bytes are per",
        "thread (ptxas stack).",
        "",
        *_overview(runs),
        "",
        "Defaults at d = 128, bf16, non-causal, no mask: registers / spilled bytes / static `MUFU` instructions",
        "(exp2, tanh, sqrt: the special-function unit, which bounds the forward kernel on an H100).",
        "",
        *_by_kernel(runs, "bfloat16", 128),
        "",
        "Defaults at d = 64, float32 (the precision of the `rkbs` solvers):",
        "",
        *_by_kernel(runs, "float32", 64),
        "",
    ]
    print("\n".join(out))


if __name__ == "__main__":
    main()
