"""compare_kernels.py: kernel ids, paired intervals, the analyses, and a tiny resumable end-to-end run."""

import importlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

_BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(_BENCH))  # benchmarks/ is a folder of scripts; its modules import each other by name
compare = importlib.import_module("compare_kernels")
tasks_mod = importlib.import_module("_kernel_tasks")


def test_kernel_ids_cover_the_issue_list():
    ids = tasks_mod.ALL_KERNELS
    assert {"edp", "rbf", "laplacian", "exp_intersection", "sigmoid"} <= set(ids)
    assert {"edp-unnorm", "sigmoid-unnorm"} <= set(ids)
    assert [k for k in ids if k.startswith("taylor_edp-")] == [f"taylor_edp-{t}" for t in range(1, 7)]
    assert [k for k in ids if k.startswith("prf-")] == ["prf-4", "prf-16", "prf-64", "prf-256", "prf-1024"]
    assert {"linear", "polynomial-2", "polynomial-4", "elu", "relu", "cosine"} <= set(ids)
    kernel, normalize = tasks_mod.make_kernel("edp-unnorm")
    assert kernel.name == "edp" and normalize is False
    assert tasks_mod.make_kernel("linear")[1] is False and tasks_mod.make_kernel("prf-16")[1] is True
    assert tasks_mod.make_kernel("taylor_edp-3")[1] is False  # odd truncations can be negative
    assert tasks_mod.feature_dim("prf-64", 16) == 64 and tasks_mod.feature_dim("taylor_edp-2", 4) == 15
    assert math.isinf(tasks_mod.feature_dim("edp", 16))
    with pytest.raises(ValueError, match="unknown kernel id 'softmaxx'"):
        tasks_mod.make_kernel("softmaxx")


def test_paired_ci_matches_a_hand_computation():
    mean, low, high = compare.paired_ci([1.0, 2.0, 4.0], [0.5, 1.0, 2.0])
    d = np.array([0.5, 1.0, 2.0])
    half = 4.302652729749464 * d.std(ddof=1) / math.sqrt(3)  # t(0.975, 2)
    assert mean == pytest.approx(d.mean()) and low == pytest.approx(d.mean() - half)
    assert high == pytest.approx(d.mean() + half)
    assert compare.paired_ci([1.0], [0.0]) == (1.0, None, None)


def test_analyses_without_training():
    edp = compare.subspace_gain("edp", 0)
    assert edp["value"] > 1 and len(edp["per_layer"]) == 3  # softmax MSSA denoises
    assert compare.subspace_gain("linear", 0)["value"] is None  # MSSA needs a normalized positive kernel
    energy = compare.energy_descent("edp", 0)
    assert energy["value"] > 0 and len(energy["energies"]) == 9


def test_tasks_have_oracles_and_floors():
    cfg = dict(compare.QUICK["cfg"])
    made = tasks_mod.make_tasks(["mlm-k0", "recall-4", "icl-tree-L1-attn"], cfg, 200)
    mlm = made["mlm-k0"]
    assert 0 < mlm.floor < mlm.oracle <= 1  # the positional marginal is below belief propagation
    recall = made["recall-4"]
    assert recall.oracle == 1.0 and recall.floor == 1 / cfg["recall_vocab"] and recall.n_keys == 12
    icl = made["icl-tree-L1-attn"]
    # the priors separate: full Bayes < top-level-cluster Bayes < ridge
    assert icl.oracle < icl.baselines["top-level Bayes"] < icl.baselines["ridge"]
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        tasks_mod.make_tasks(["nope"], cfg, 10)


@pytest.mark.slow
def test_tiny_run_resumes_and_reports(tmp_path):
    argv = ["--quick", "--out", str(tmp_path), "--no-progress", "--tasks", "root-k0", "subspace", "--kernels",
            "edp", "prf-4", "--steps", "3", "--seeds", "0", "1", "--lr-grid", "0.003"]
    first = compare.main(argv)
    data = json.loads((tmp_path / "compare_kernels_quick.json").read_text())
    keys = {(r["task"], r["kernel"], r["seed"]) for r in data["results"]}
    assert keys == {(t, k, s) for t in ("root-k0", "subspace") for k in ("edp", "prf-4") for s in (0, 1)}
    edp_rows = [r for r in data["results"] if r["task"] == "root-k0" and r["kernel"] == "edp"]
    assert all(set(r["swap"]) == {"prf-4"} for r in edp_rows)  # EDP-trained models evaluated with prf-4
    table = data["summary"]["tasks"]["root-k0"]
    assert table["oracle"] == 1.0 and table["kernels"]["prf-4"]["diff_vs_edp"][1] is not None
    assert (tmp_path / "compare_kernels_quick.md").exists() and (tmp_path / "compare_kernels_quick_ladder.png").exists()
    assert len(first) == 8
    again = compare.main(argv)  # everything stored: nothing is retrained
    assert [r["run"] for r in again.rows] == [0] * 8


@pytest.mark.parametrize("name", ["icl-gaussian-L1-attn", "recall-4"])
def test_scores_do_not_depend_on_the_chunk_size(name):
    task = tasks_mod.make_tasks([name], dict(compare.QUICK["cfg"]), 130)[name]
    model = task.build("linear", 0)
    assert task.score(model, task.test, chunk=1000) == pytest.approx(task.score(model, task.test, chunk=50),
                                                                     rel=1e-5)
