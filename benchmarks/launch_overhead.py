"""Python cost of one triton_ops launch, without a GPU.

Runs ``triton_ops``' forward and backward launch code on ``meta`` tensors with Triton's own kernel launch
replaced by a no-op (and the compile-only driver of ``tools.compile_check``), so what is timed is the work
our wrapper and Triton's autotuner do in Python on every call: argument checks, buffer allocation, strides,
block selection. Triton's launcher itself (tens of microseconds on a GPU machine) is not included. Only the
forward pass of ``edp`` is timed: the backward pass and the norm kernels run torch operations (Delta, row
norms) that ``meta`` tensors emulate in Python, far slower than their CUDA launches.

    python benchmarks/launch_overhead.py  # writes benchmarks/results/launch_overhead.json
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import triton  # noqa: E402
from triton.runtime import driver  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

from triton_ops import _launch  # noqa: E402
from rkbs.kernels import get_kernel  # noqa: E402
from tools.compile_check import _CompileOnlyDriver  # noqa: E402


def _per_call_us(fn, n: int) -> float:
    for _ in range(max(n // 20, 10)):
        fn()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


def main() -> None:
    driver.set_active(_CompileOnlyDriver(90))
    JITFunction.run = lambda self, *args, **kwargs: None  # time everything but Triton's launch
    _launch._bench = lambda fn, quantiles: [1.0] * len(quantiles)  # the autotuner picks without timing
    spec = get_kernel("edp").fused_spec(128)
    q = torch.empty(2, 16, 4096, 128, dtype=torch.bfloat16, device="meta")
    results = {}
    for autotune in ("0", "1"):
        os.environ["TRITON_OPS_AUTOTUNE"] = autotune
        us = _per_call_us(lambda: _launch.forward(q, q, q, None, 0, spec, True, False, "tf32"), 2000)
        results[f"forward, autotune={autotune}"] = us
        print(f"forward autotune={autotune}: {us:6.1f} us of Python per call")
    path = Path(__file__).resolve().parent / "results" / "launch_overhead.json"
    meta = dict(python=platform.python_version(), torch=torch.__version__, triton=triton.__version__,
                machine=platform.machine(), cpus=os.cpu_count(), shape="B=2, H=16, N=4096, d=128, bf16, edp")
    path.write_text(json.dumps(dict(meta=meta, microseconds=results), indent=1) + "\n")


if __name__ == "__main__":
    main()
