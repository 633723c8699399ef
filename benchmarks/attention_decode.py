"""Decode latency and packed-batch throughput of the fused back end on a GPU (prepared for the GPU round).

- ``decode``: 1 query (and 16) against 1k to 64k cached keys, bf16, batch 4, 32 query heads on 8 key/value
  heads (GQA), d = 128, bottom-right causal (``window=(-1, 0)``): ``triton_ops`` with split-KV (the default
  choice), without (``SPLIT_KV = 1``, one program per query block and head), beside SDPA (flash / efficient /
  cuDNN as torch picks); EDP, RBF and sigmoid. Microseconds per call, medians of ``triton.testing.do_bench``.
- ``varlen``: a packed batch of 8 sequences of mixed lengths (``cu_seqlens``, one launch) against the same
  batch padded to its longest sequence with a key-padding mask, causal, forward and forward+backward; tokens/s.

    python benchmarks/attention_decode.py            # both suites (about 3 minutes on an H100)
    python benchmarks/attention_decode.py --quick    # 1k and 16k keys, EDP only

Writes benchmarks/results/attention_decode[_quick].{json,csv} through the shared harness (``_harness.py``),
resumable: a rerun skips the rows already measured (``--fresh`` measures everything again).
"""

from __future__ import annotations

import time

import _harness
import torch
import torch.nn.functional as F

import triton_ops
from rkbs.kernels import get_kernel
from triton_ops import _launch

_KEY = ("suite", "provider", "kernel", "nq", "nk", "mode")


def _bench(fn, rep: int, backward_of=None) -> float:
    from triton.testing import do_bench

    if backward_of is None:
        call = fn
    else:
        def call():
            fn().backward(backward_of)
    call()  # compile / autotune outside the timing
    torch.cuda.synchronize()
    return do_bench(call, warmup=max(5, rep // 4), rep=rep, return_mode="median")


def _fused(spec, q, k, v, splits=None, **kw):
    def run():
        previous, _launch.SPLIT_KV = _launch.SPLIT_KV, splits
        try:
            return triton_ops.kernel_attention(q, k, v, spec=spec, enable_gqa=True, **kw)
        finally:
            _launch.SPLIT_KV = previous
    return run


def suite_decode(args, results, device):
    b, hq, hk, d, dtype = 4, 32, 8, 128, torch.bfloat16
    keys = [1024, 16384] if args.quick else [1024, 4096, 16384, 65536]
    kernels = ["edp"] if args.quick else ["edp", "rbf", "sigmoid"]
    for nk in _harness.progress(keys, desc="cache lengths", disable=args.no_progress):
        k, v = (torch.randn(b, hk, nk, d, device=device, dtype=dtype) for _ in range(2))
        for nq in (1, 16):
            q = torch.randn(b, hq, nq, d, device=device, dtype=dtype)
            runs = {}
            for kernel in kernels:
                spec = get_kernel(kernel).fused_spec(d)
                runs[("triton_ops", kernel)] = _fused(spec, q, k, v, window=(-1, 0))
                runs[("triton_ops_nosplit", kernel)] = _fused(spec, q, k, v, splits=1, window=(-1, 0))
            kx, vx = (t.repeat_interleave(hq // hk, dim=1) for t in (k, v))
            runs[("sdpa", "edp")] = lambda q=q, kx=kx, vx=vx: F.scaled_dot_product_attention(q, kx, vx)
            for (provider, kernel), fn in runs.items():
                entry = dict(suite="decode", provider=provider, kernel=kernel, nq=nq, nk=nk, mode="fwd")
                if results.done(**entry):
                    continue
                ms = _bench(fn, args.rep)
                results.add(dict(entry, us=ms * 1e3, batch=b, heads=hq, kv_heads=hk, d=d))
                _harness.log(f"decode {provider:18s} {kernel:8s} nq={nq:2d} nk={nk:6d} {ms * 1e3:8.1f} us")
        del k, v
        torch.cuda.empty_cache()


def suite_varlen(args, results, device):
    lengths = [4096, 384, 2048, 133, 2800, 1024, 256, 3600]
    h, d, dtype = 16, 128, torch.bfloat16
    total, longest = sum(lengths), max(lengths)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device=device)
    keep = torch.zeros(len(lengths), 1, 1, longest, dtype=torch.bool, device=device)
    for i, n in enumerate(lengths):
        keep[i, ..., :n] = True
    kernels = ["edp"] if args.quick else ["edp", "rbf", "sigmoid"]
    for kernel in kernels:
        spec = get_kernel(kernel).fused_spec(d)
        for mode in ("fwd", "fwd+bwd"):
            grad = mode != "fwd"
            packed = [torch.randn(total, h, d, device=device, dtype=dtype, requires_grad=grad) for _ in range(3)]
            padded = [torch.randn(len(lengths), h, longest, d, device=device, dtype=dtype, requires_grad=grad)
                      for _ in range(3)]
            runs = {
                "triton_ops_packed": lambda: triton_ops.kernel_attention(
                    *packed, spec=spec, is_causal=True, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=longest,
                    max_seqlen_k=longest),
                "triton_ops_padded": lambda: triton_ops.kernel_attention(*padded, keep, spec=spec, is_causal=True),
            }
            if kernel == "edp":  # SDPA takes no causal mask beside an explicit one: one boolean mask for both
                both = keep & torch.ones(longest, longest, dtype=torch.bool, device=device).tril()
                runs["sdpa_padded"] = lambda: F.scaled_dot_product_attention(*padded, attn_mask=both)
            for provider, fn in runs.items():
                entry = dict(suite="varlen", provider=provider, kernel=kernel, nq=total, nk=total, mode=mode)
                if results.done(**entry):
                    continue
                args_ = padded if "padded" in provider else packed
                do = torch.randn_like(args_[0]) if grad else None
                ms = _bench(fn, args.rep, do)
                results.add(dict(entry, us=ms * 1e3, tokens_per_s=total / (ms * 1e-3), lengths=lengths))
                _harness.log(f"varlen {provider:18s} {kernel:8s} {mode:7s} {ms:8.2f} ms")


def main(argv=None):
    p = _harness.make_parser(__doc__, name="attention_decode", device="cuda")
    p.add_argument("--suites", nargs="*", default=["decode", "varlen"], choices=["decode", "varlen"])
    p.add_argument("--rep", type=int, default=50, help="do_bench repetition time in ms")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("attention_decode.py needs a CUDA device (the CPU numbers are benchmarks/attention_cpu.py's).")
    device = _harness.setup(args)
    config = dict(rep_ms=args.rep, dtype="bfloat16", timing="median of triton.testing.do_bench")
    results = _harness.Results.open(args, key=_KEY, config=config, device=device)
    t0 = time.time()
    if "decode" in args.suites:
        suite_decode(args, results, device)
    if "varlen" in args.suites:
        suite_varlen(args, results, device)
    print(f"wrote {results.path} and .csv in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
