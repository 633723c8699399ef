"""Compile the fused kernels ahead of time for an NVIDIA architecture, on a machine without a GPU.

Triton compiles to PTX and, with the ``ptxas`` shipped in its wheel, to a cubin without a driver. This module
runs :mod:`triton_ops`' own launch code on ``meta`` tensors (shapes and strides, no data) with the launch
replaced by compilation for a chosen architecture, then reads each cubin's resources (registers, local memory
or stack = register spills) with the wheel's ``cuobjdump``. It answers, for a Triton version and a GPU one does not
have: does every configuration compile, fit in shared memory, and run without spills?

Run ``python -m tools.compile_check --help``. It must run in a process without ``TRITON_INTERPRET=1``
(the interpreter replaces the compiler).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from triton_ops import interpreting

__all__ = ["Case", "compile_case", "default_cases", "main"]

# Largest dynamic shared memory per block (bytes) by compute capability.
SHARED_LIMIT = {80: 166912, 86: 101376, 89: 101376, 90: 232448}

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(frozen=True)
class Case:
    """One call of :func:`triton_ops.kernel_attention` (forward, or forward and backward) to compile."""

    kernel: str
    head_dim: int = 128
    dtype: str = "bfloat16"
    normalize: bool = True
    causal: bool = False
    mask: str = "none"  # "none", "bool", "additive", "bias" (additive with a gradient)
    backward: bool = True
    params: tuple = ()  # kernel parameters as (name, value) pairs
    seq: int = 1000  # not a multiple of any block size: the bounds-checked code paths are compiled too
    features: tuple = ()  # "window", "alibi", "sinks", "softcap", "varlen", "split" (split-KV decoding, GQA packed)


@dataclass
class Compiled:
    """Resources of one compiled Triton kernel."""

    case: Case
    kernel: str
    ok: bool
    default: bool = True  # the untuned choice (the first autotuning candidate)
    error: str = ""
    registers: int = 0
    spill_bytes: int = 0
    shared_bytes: int = 0
    num_warps: int = 0
    num_stages: int = 0
    block: dict = field(default_factory=dict)
    sass: dict = field(default_factory=dict)  # static instruction counts by class (see _sass_counts)
    seconds: float = 0.0


class _CompileOnlyDriver:
    """The few driver calls Triton's JIT makes before a launch, answered for a device that is not here."""

    def __init__(self, arch: int):
        from triton.backends.compiler import GPUTarget

        self.target = GPUTarget("cuda", arch, 32)

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return self.target

    def get_active_torch_device(self):
        return torch.device("meta")

    def is_active(self):
        return True


def _name(kernel) -> str:
    while not hasattr(kernel, "__name__"):  # triton.heuristics wrappers hold the JIT function in .fn
        kernel = kernel.fn
    return kernel.__name__


def _cuda_tool(name: str, cubin: bytes, *flags: str) -> str:
    """stdout of one of the CUDA binary tools shipped in the triton wheel, run on ``cubin``."""
    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        return subprocess.run([str(tool), *flags, f.name], capture_output=True, text=True, check=True).stdout


def _resources(cubin: bytes) -> tuple[int, int]:
    """(registers, spilled bytes) per thread from ``cuobjdump -res-usage``.

    Triton kernels have no call stack and no local arrays, so their STACK (and LOCAL) bytes are registers
    spilled by ptxas.
    """
    text = _cuda_tool("cuobjdump", cubin, "-res-usage")
    fields = dict(tok.split(":", 1) for line in text.splitlines() if "REG:" in line for tok in line.split())
    return int(fields["REG"]), int(fields["STACK"]) + int(fields["LOCAL"])


# SASS opcode classes worth comparing between epilogues: special-function unit (exp2, rcp, sqrt, tanh),
# tensor-core matmuls, and the fp32 arithmetic of the epilogue.
_SASS_CLASSES = {"MUFU": ("MUFU",), "MMA": ("HGMMA", "HMMA", "WGMMA"),
                 "FP32": ("FFMA", "FMUL", "FADD", "FMNMX", "FSEL", "FSETP", "FCHK")}


def _sass_counts(cubin: bytes) -> dict:
    """Static count of SASS instructions per class in the kernel (``nvdisasm`` of the cubin)."""
    text = _cuda_tool("nvdisasm", cubin, "-c")
    ops = re.findall(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9]*)", text)
    counts = {name: sum(op in members for op in ops) for name, members in _SASS_CLASSES.items()}
    counts["total"] = len(ops)
    return counts


def _mask(case: Case, shape):
    if case.mask == "none":
        return None
    if case.mask == "bool":
        return torch.empty(shape[0], 1, 1, shape[3], dtype=torch.bool, device="meta")  # key padding
    bias = torch.empty(shape[2], shape[3], dtype=torch.float32, device="meta")
    return bias.requires_grad_(case.mask == "bias")


def compile_case(case: Case, arch: int = 90, candidates: bool = True) -> list[Compiled]:
    """Compile the Triton kernels that ``case`` launches for compute capability ``arch``.

    Returns one record per kernel (forward; dK/dV and dQ with ``case.backward``) and block configuration:
    every autotuning candidate, or only the default one when ``candidates`` is False. A compilation error
    is recorded (``ok=False``, ``error``), not raised; so is a configuration over the shared-memory limit.
    """
    if interpreting():
        raise RuntimeError("compile_check needs the Triton compiler: run it without TRITON_INTERPRET=1.")
    from triton.runtime import driver

    from rkbs.kernels import get_kernel
    from triton_ops import _launch
    from triton_ops.attention import _prepare_mask, _resolve_precision

    driver.set_active(_CompileOnlyDriver(arch))
    records: list[Compiled] = []

    def capture(kernel, grid, args, meta, is_default):
        if not (candidates or is_default):
            return
        t0 = time.perf_counter()
        block = {k: v for k, v in meta.items() if k.startswith("BLOCK_") or k in ("num_warps", "num_stages")}
        rec = Compiled(case, _name(kernel), ok=False, default=is_default, block=block)
        try:
            compiled = kernel.warmup(*(a.dtype if isinstance(a, torch.Tensor) else a for a in args),
                                     grid=grid, **meta)
            rec.registers, rec.spill_bytes = _resources(compiled.asm["cubin"])
            rec.sass = _sass_counts(compiled.asm["cubin"])
            rec.shared_bytes = int(compiled.metadata.shared)
            rec.num_warps, rec.num_stages = compiled.metadata.num_warps, compiled.metadata.num_stages
            limit = SHARED_LIMIT.get(arch)
            rec.ok = limit is None or rec.shared_bytes <= limit
            if not rec.ok:
                rec.error = f"shared memory {rec.shared_bytes} B > {limit} B"
        except Exception as exc:  # a compiler error is the finding, keep going
            rec.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300] if str(exc) else ''}"
        rec.seconds = time.perf_counter() - t0
        records.append(rec)

    dtype = _DTYPES[case.dtype]
    shape = (2, 4, case.seq, case.head_dim)
    q = torch.empty(shape, dtype=dtype, device="meta")
    spec = get_kernel(case.kernel, **dict(case.params)).fused_spec(case.head_dim)
    precision = _resolve_precision("default", dtype)
    mask = _mask(case, (shape[0], shape[1], case.seq, case.seq))
    mask_view, mask_kind = _prepare_mask(mask, (shape[0], shape[1], case.seq, case.seq), q.device)
    feat = _features(case, shape)
    if feat.varlen:  # one packed batch of (1, heads, total, dim)
        q = torch.empty((shape[0] * case.seq, shape[1], case.head_dim), dtype=dtype, device="meta")
        q = q.transpose(0, 1).unsqueeze(0)
    if "split" in case.features:  # decoding: 4 queries of 4 heads sharing one key/value head (packed GQA)
        q = torch.empty((shape[0], shape[1], 4, case.head_dim), dtype=dtype, device="meta")
    kv = torch.empty((shape[0], 1, case.seq, case.head_dim), dtype=dtype, device="meta") if (
        "split" in case.features) else q
    previous, _launch._CAPTURE = _launch._CAPTURE, capture
    previous_split, _launch.SPLIT_KV = _launch.SPLIT_KV, (8 if "split" in case.features else None)
    try:
        out, lse = _launch.forward(q, kv, kv, mask_view, mask_kind, spec, case.normalize, case.causal, precision,
                                   feat)
        if case.backward:
            _launch.backward(q, kv, kv, out, lse, out, mask_view, mask_kind, spec, case.normalize, case.causal,
                             precision, case.mask == "bias", feat, None, "alibi" in case.features)
    finally:
        _launch._CAPTURE = previous
        _launch.SPLIT_KV = previous_split
    return records


def _features(case: Case, shape):
    from triton_ops._features import Features

    f = set(case.features)
    heads = shape[1]
    cu = torch.empty(shape[0] + 1, dtype=torch.int32, device="meta") if "varlen" in f else None
    return Features(
        window=(256, 0) if "window" in f else None,
        alibi_slopes=torch.empty(1, heads, device="meta") if "alibi" in f else None,
        sinks=torch.empty(heads, device="meta") if "sinks" in f else None,
        softcap=30.0 if "softcap" in f else None,
        cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=case.seq if cu is not None else 0,
        max_seqlen_k=case.seq if cu is not None else 0,
    )


def default_cases(quick: bool = False) -> list[Case]:
    """The configurations :func:`triton_ops.kernel_attention` chooses between.

    Every kernel in each allowed mode, causal or not, at d = 128 in bfloat16; EDP and RBF over every head dim
    and dtype (the block-size tables switch on both); masks; exp_intersection with and without coordinate
    chunking. ``quick`` keeps one case per block-size table row (for CI).
    """
    if quick:
        return [
            Case("edp", 128, "bfloat16"),
            Case("rbf", 64, "float16", causal=True),
            Case("sigmoid", 256, "bfloat16", normalize=False),
            Case("laplacian", 40, "float32", mask="bias"),
            Case("exp_intersection", 96, "float32", backward=False),
            Case("edp", 128, "bfloat16", causal=True, features=("window", "alibi", "sinks", "softcap", "varlen")),
            # softcap: the capped outer argument of a non-exponential epilogue
            Case("sigmoid", 64, "float16", features=("window", "alibi", "sinks", "softcap", "split"), backward=False),
        ]
    cases = []
    signed = {"linear", "cosine", "tanh"}
    for kernel, params in [("edp", ()), ("rbf", ()), ("laplacian", ()), ("polynomial", (("degree", 2),)),
                           ("polynomial", (("degree", 3),)), ("linear", ()), ("cosine", ()), ("sigmoid", ()),
                           ("tanh", ())]:
        odd = dict(params).get("degree", 2) % 2 == 1
        for normalize in (True, False):
            if normalize and (kernel in signed or odd):
                continue
            for causal in (False, True):
                cases.append(Case(kernel, 128, "bfloat16", normalize, causal, params=params))
    for kernel in ("edp", "rbf"):
        for dtype in ("float16", "bfloat16", "float32"):
            for d in (16, 40, 64, 80, 96, 256):
                cases.append(Case(kernel, d, dtype))
        cases.append(Case(kernel, 64, "bfloat16", causal=True))
    for mask in ("bool", "additive", "bias"):
        cases.append(Case("edp", 128, "bfloat16", mask=mask))
        cases.append(Case("sigmoid", 64, "bfloat16", normalize=False, causal=True, mask=mask))
    for d in (16, 40, 64, 128, 256):
        for dtype in ("bfloat16", "float32"):
            cases.append(Case("exp_intersection", d, dtype))
    for kernel, normalize in (("edp", True), ("rbf", True), ("polynomial", False)):
        for features in (("window",), ("alibi", "sinks") if normalize else ("alibi",), ("varlen", "window"),
                         ("split",)):
            cases.append(Case(kernel, 128, "bfloat16", normalize, causal="window" in features, features=features,
                              backward="split" not in features))
        cases.append(Case(kernel, 128, "bfloat16", normalize, features=("softcap",)))
    for kernel in ("cosine", "sigmoid", "tanh"):  # the capped outer argument of the non-exponential epilogues
        cases.append(Case(kernel, 128, "bfloat16", False, features=("softcap",)))
    for d, dtype in ((64, "float32"), (256, "bfloat16")):
        cases.append(Case("edp", d, dtype, features=("split", "sinks"), backward=False))
    return cases


def _compile_worker(args):
    return compile_case(*args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability x 10 (80 A100, 90 H100/H200)")
    parser.add_argument("--quick", action="store_true", help="one case per block-size table row")
    parser.add_argument("--defaults-only", action="store_true", help="skip the other autotuning candidates")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, help="write the records here")
    args = parser.parse_args(argv)
    import triton

    cases = default_cases(args.quick)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        jobs = [(case, args.arch, not args.defaults_only) for case in cases]
        records = [r for rs in pool.map(_compile_worker, jobs) for r in rs]
    failed = [r for r in records if not r.ok]
    spilled = [r for r in records if r.ok and r.spill_bytes]
    print(f"triton {triton.__version__}, sm_{args.arch}: {len(records)} kernels from {len(cases)} cases in "
          f"{time.perf_counter() - t0:.0f} s; {len(failed)} failed, {len(spilled)} spill registers to memory")
    for r in failed + spilled:
        c = r.case
        print(f"  {'FAILED' if not r.ok else 'spills'} {r.kernel} {c.kernel} d={c.head_dim} {c.dtype} "
              f"normalize={c.normalize} causal={c.causal} mask={c.mask} features={c.features} {r.block}: "
              f"{r.error or f'{r.spill_bytes} B spilled, {r.registers} registers'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"triton": triton.__version__, "torch": torch.__version__, "arch": args.arch,
                   "records": [asdict(r) for r in records]}
        args.json.write_text(json.dumps(payload, separators=(",", ":")))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
