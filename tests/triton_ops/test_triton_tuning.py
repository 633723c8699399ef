"""Block sizes of triton_ops: every candidate computes the same attention, the autotuner picks one of them,
and ``tools.compile_check`` compiles the kernels for an H100 without one (Triton's interpreter and
compiler on the CPU; the GPU tests time nothing either)."""

import json
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("triton")

from helpers import check_fused as _check  # noqa: E402

from triton_ops import _configs, _launch, interpreting  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INTERPRETING = interpreting()


@pytest.mark.parametrize(
    "name,params,normalize,causal,mask_kind",
    [("edp", {}, True, True, "bias"), ("rbf", {}, True, False, "bool"), ("sigmoid", {"coef0": -0.5}, False, True,
     "padding"), ("laplacian", {"gamma": 0.3}, False, False, "none")],
)
def test_second_tiling_matches_reference(monkeypatch, name, params, normalize, causal, mask_kind):
    """32-row blocks (two query blocks per 33 rows, one causal diagonal per block) agree with the reference."""
    block = _configs.INTERPRETER[1] if INTERPRETING else (64, 32, 4, 2)
    for kind in ("fwd", "dkdv", "dq"):
        monkeypatch.setitem(_launch.CONFIG_OVERRIDE, kind, block)
    _check(name, params, normalize, causal, mask_kind, (1, 2, 1, 33, 47, 40, 24))


def test_autotuner_times_the_candidates_and_caches_the_winner(monkeypatch):
    monkeypatch.setenv("TRITON_OPS_AUTOTUNE", "1")
    timed = []
    bench = _launch._bench

    def spy(fn, quantiles):
        timed.append(fn)
        return bench(fn, quantiles)

    monkeypatch.setattr(_launch, "_bench", spy)
    monkeypatch.setattr(_launch, "_TUNED", {})
    for tuned in (_launch._fwd_tuned, _launch._dkdv_tuned, _launch._dq_tuned):
        monkeypatch.setattr(tuned, "cache", {})
    _check("rbf", {}, True, True, "bias", (1, 2, 1, 21, 37, 24, 16), seed=3)
    candidates = _launch._candidates("fwd", 1, 32, torch.float32, True)
    assert len(candidates) > 1
    # forward, dK/dV and dQ each timed every candidate once, then kept the fastest
    assert len(timed) == 3 * len(candidates)
    assert sorted(key[0] for key in _launch._TUNED) == ["dkdv", "dq", "fwd"]
    assert set(_launch._TUNED.values()) <= set(candidates)
    # same case, other length in the same power-of-two bucket: no new timing; the next bucket times again
    _check("rbf", {}, True, True, "bias", (1, 2, 1, 19, 40, 24, 16), seed=4)
    assert len(timed) == 3 * len(candidates) and len(_launch._TUNED) == 3
    _check("rbf", {}, True, True, "bias", (1, 2, 1, 19, 80, 24, 16), seed=5)
    assert len(timed) == 6 * len(candidates) and len(_launch._TUNED) == 6


def test_autotune_switch(monkeypatch):
    monkeypatch.setenv("TRITON_OPS_AUTOTUNE", "0")
    assert not _launch.autotune_enabled()
    monkeypatch.setenv("TRITON_OPS_AUTOTUNE", "1")
    assert _launch.autotune_enabled()
    monkeypatch.delenv("TRITON_OPS_AUTOTUNE")
    assert _launch.autotune_enabled() is (not INTERPRETING)


def test_tuning_bucket_is_a_power_of_two():
    assert [_launch._tune_n(n, 1) for n in (1, 16, 17, 1000, 4096)] == [1, 16, 32, 1024, 4096]


@pytest.mark.parametrize("candidates", [_configs.fwd_candidates, _configs.dkdv_candidates, _configs.dq_candidates])
def test_candidate_lists(candidates):
    """Every case has a default, no duplicates, powers of two >= 16, and the autotuner's space holds them all."""
    space = {"fwd_candidates": _configs.FWD_SPACE, "dkdv_candidates": _configs.DKDV_SPACE,
             "dq_candidates": _configs.DQ_SPACE}[candidates.__name__]
    for kernel_id in range(9):
        for block_d in (16, 32, 64, 128, 256):
            for dtype in (torch.float16, torch.bfloat16, torch.float32):
                for causal in (False, True):
                    blocks = candidates(kernel_id, block_d, dtype, causal)
                    assert blocks and len(set(blocks)) == len(blocks)
                    for m, n, warps, stages in blocks:
                        assert m >= 16 and n >= 16 and m & (m - 1) == 0 and n & (n - 1) == 0
                        assert warps in (4, 8) and stages >= 1
                    assert set(blocks) <= set(space)


def test_compile_check_needs_the_compiler(monkeypatch):
    from tools import compile_check

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(RuntimeError, match="without TRITON_INTERPRET=1"):
        compile_check.compile_case(compile_check.Case("edp"))


@pytest.mark.slow  # compiles for sm_90 on the CPU: minutes on two busy cores
def test_compile_check_compiles_for_an_h100(tmp_path):
    """Every default configuration of the quick matrix compiles for sm_90 and fits its shared memory."""
    out = tmp_path / "records.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-m", "tools.compile_check", "--quick", "--defaults-only",
         "--jobs", "2", "--json", str(out)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = json.loads(out.read_text())["records"]
    assert {r["kernel"] for r in records} == {"_fwd_kernel", "_dkdv_kernel", "_dq_kernel"}
    assert len(records) == 17  # 7 cases, 5 with a backward pass
    for r in records:
        assert r["ok"] and r["default"], r
        assert 0 < r["registers"] <= 255 and 0 < r["shared_bytes"] <= 232448, r
        if r["case"]["dtype"] == "float32" and r["case"]["mask"] == "none":
            assert r["spill_bytes"] == 0, r  # the float32 defaults were chosen spill-free
        if r["kernel"] == "_fwd_kernel" and r["case"]["dtype"] != "float32":
            # tensor-core matmuls, and the exp2 / tanh of the epilogue on the special-function unit
            assert r["sass"]["MMA"] > 0 and r["sass"]["MUFU"] > 0 and r["sass"]["total"] > 100, r

