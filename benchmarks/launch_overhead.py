"""Python cost of one triton_ops launch, without a GPU.

Runs ``triton_ops``' forward and backward launch code on ``meta`` tensors with Triton's own kernel launch
replaced by a no-op (and the compile-only driver of ``tools.compile_check``), so what is timed is the work
our wrapper and Triton's autotuner do in Python on every call: argument checks, buffer allocation, strides,
block selection. Triton's launcher itself (tens of microseconds on a GPU machine) is not included. Only the
forward pass of ``edp`` is timed: the backward pass and the norm kernels run torch operations (Delta, row
norms) that ``meta`` tensors emulate in Python, far slower than their CUDA launches.

    python benchmarks/launch_overhead.py  # writes benchmarks/results/launch_overhead.{json,csv}

Each of ``--seeds`` is one repetition of the measurement (the best of five rounds of 2,000 calls each);
``--device`` must be ``cpu`` (the launch code runs on ``meta`` tensors, no device is touched).
"""

from __future__ import annotations

import os
import time

os.environ.pop("TRITON_INTERPRET", None)

import _harness  # noqa: E402
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


def main(argv=None) -> None:
    args = _harness.make_parser(__doc__, name="launch_overhead").parse_args(argv)
    if args.device != "cpu":
        raise SystemExit(f"--device {args.device!r}: this benchmark runs on meta tensors; use --device cpu")
    _harness.setup(args)
    n_calls = 200 if args.quick else 2000
    config = dict(shape="B=2, H=16, N=4096, d=128, bf16, edp", calls=n_calls)
    results = _harness.Results.open(args, key=("autotune", "seed"), config=config)
    driver.set_active(_CompileOnlyDriver(90))
    JITFunction.run = lambda self, *args, **kwargs: None  # time everything but Triton's launch
    _launch._bench = lambda fn, quantiles: [1.0] * len(quantiles)  # the autotuner picks without timing
    spec = get_kernel("edp").fused_spec(128)
    q = torch.empty(2, 16, 4096, 128, dtype=torch.bfloat16, device="meta")
    keys = [dict(autotune=autotune, seed=seed) for seed in args.seeds for autotune in (False, True)]
    for key in results.pending(keys, desc="launch overhead"):
        os.environ["TRITON_OPS_AUTOTUNE"] = str(int(key["autotune"]))
        us = _per_call_us(lambda: _launch.forward(q, q, q, None, 0, spec, True, False, "tf32"), n_calls)
        results.add(dict(key, microseconds=us, triton=triton.__version__))
        _harness.log(f"forward autotune={int(key['autotune'])}: {us:6.1f} us of Python per call")


if __name__ == "__main__":
    main()
