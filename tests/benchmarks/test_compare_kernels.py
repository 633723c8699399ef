"""compare_kernels.py: kernel ids, paired intervals, the analyses, and a tiny resumable end-to-end run."""

import importlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

_BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(_BENCH))  # benchmarks/ is a folder of scripts; its modules import each other by name
compare = importlib.import_module("compare_kernels")
plan_mod = importlib.import_module("_compare_plan")
report_mod = importlib.import_module("_compare_report")
stats = importlib.import_module("_compare_stats")
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


def test_analyses_without_training():
    edp = compare.subspace_gain("edp", 0)
    assert edp["value"] > 1 and len(edp["per_layer"]) == 3  # softmax MSSA denoises
    assert compare.subspace_gain("linear", 0)["value"] is None  # MSSA needs a normalized positive kernel
    energy = compare.energy_descent("edp", 0)
    assert energy["value"] > 0 and len(energy["energies"]) == 9
    blown = compare.energy_descent("taylor_edp-1", 0)  # un-normalized 1 + s q.k: the iteration explodes
    assert blown["value"] is None and blown["note"] == "diverged"
    assert abs(blown["energies"][-1]) > 1e6 * abs(blown["energies"][0])
    assert compare.energy_rate([2.0, 1.5, 1.0]) == pytest.approx(0.25)
    assert compare.energy_rate([1.0, -2e6]) is None and compare.energy_rate([1.0, float("inf")]) is None


def test_tasks_have_oracles_and_floors():
    cfg = dict(compare.QUICK["cfg"])
    made = tasks_mod.make_tasks(["mlm-k0", "recall-4", "icl-tree-L1-attn"], cfg, 200)
    mlm = made["mlm-k0"]
    assert 0 < mlm.floor < mlm.oracle <= 1  # the positional marginal is below belief propagation
    recall = made["recall-4"]
    assert recall.oracle == 1.0 and recall.floor == 1 / cfg["recall_vocab"] and recall.n_keys == 8
    icl = made["icl-tree-L1-attn"]
    # the priors separate: full Bayes < top-level-cluster Bayes < ridge
    assert icl.oracle < icl.baselines["top-level Bayes"] < icl.baselines["ridge"]
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        tasks_mod.make_tasks(["nope"], cfg, 10)


@pytest.mark.slow
def test_tiny_run_resumes_and_reports(tmp_path):
    argv = ["--quick", "--out", str(tmp_path), "--no-progress", "--tasks", "root-k0", "subspace", "--kernels",
            "edp", "prf-4", "--steps", "4", "--seeds", "0", "1", "--lr-grid", "0.003", "0.01"]
    first = compare.main(argv)
    data = json.loads((tmp_path / "compare_kernels_quick.json").read_text())
    keys = {(r["task"], r["kernel"], r["phase"], r["seed"]) for r in data["results"]}
    finals = {("root-k0", k, "final", s) for k in ("edp", "prf-4") for s in (0, 1)}
    probes = {("root-k0", k, "probe", 0) for k in ("edp", "prf-4")}  # one per grid rate, at the first seed
    analyses = {("subspace", k, "analysis", s) for k in ("edp", "prf-4") for s in (0, 1)}
    assert keys == finals | probes | analyses
    probe_rows = [r for r in data["results"] if r["phase"] == "probe"]
    assert len(probe_rows) == 4 and all(r["steps"] == 2 and r["test"] is None for r in probe_rows)
    for kernel in ("edp", "prf-4"):  # the seeds train at the rate whose probe scored best on validation
        mine = [r for r in probe_rows if r["kernel"] == kernel]
        best = max(mine, key=lambda r: r["validation"])["lr"]
        assert {r["lr"] for r in data["results"] if r["kernel"] == kernel and r["phase"] == "final"} == {best}
    edp_rows = [r for r in data["results"] if r["kernel"] == "edp" and r["phase"] == "final"]
    assert all(set(r["swap"]) == {"prf-4"} and r["steps"] == 4 for r in edp_rows)
    table = data["summary"]["tasks"]["root-k0"]
    assert table["oracle"] == 1.0 and table["kernels"]["prf-4"]["diff_vs_edp"][1] is not None
    assert data["summary"]["task_meta"]["root-k0"]["n_keys"] == 8
    assert "Status: complete." in (tmp_path / "compare_kernels_quick.md").read_text()
    assert (tmp_path / "compare_kernels_quick_ladder.png").exists()
    assert len(first) == 12
    again = compare.main(argv)  # everything stored: nothing is retrained
    assert [r["run"] for r in again.rows] == [0] * 12
    # a parallel shard (another kernel, its own folder) merged into the file: the union, with its provenance
    shard = tmp_path / "shard"
    compare.main(["--quick", "--out", str(shard), "--no-progress", "--tasks", "root-k0", "--kernels", "linear",
                  *argv[10:]])
    done = compare.main(["--out", str(tmp_path), "--no-progress", "--merge", str(shard / "compare_kernels_quick.json")])
    assert done == [(tmp_path / "compare_kernels_quick.json", 4)]
    merged = json.loads((tmp_path / "compare_kernels_quick.json").read_text())
    assert len(merged["results"]) == 12 + 4
    assert {r["kernel"] for r in merged["results"]} == {"edp", "prf-4", "linear"}
    assert {merged["runs"][r["run"]]["merged_from"] for r in merged["results"] if r["kernel"] == "linear"} == {
        str(shard / "compare_kernels_quick.json")}


def test_a_run_on_a_subset_widens_the_files_plan_and_keeps_its_tasks(tmp_path):
    common = ["--quick", "--out", str(tmp_path), "--no-progress", "--steps", "2", "--lr-grid", "0.01"]
    compare.main([*common, "--tasks", "root-k0", "--kernels", "edp", "--seeds", "0", "1"])
    compare.main([*common, "--tasks", "recall-4", "--kernels", "linear", "--seeds", "2"])
    summary = json.loads((tmp_path / "compare_kernels_quick.json").read_text())["summary"]
    assert set(summary["task_meta"]) == {"root-k0", "recall-4"}
    assert summary["plan"]["kernels"] == ["edp", "linear"] and summary["plan"]["seeds"] == [0, 1, 2]
    # not complete: edp and linear on both tasks at three seeds were asked of it, and 3 runs are stored
    assert "PARTIAL: 3 of 12 runs done" in (tmp_path / "compare_kernels_quick.md").read_text()
    assert compare._widened_plan(None, {"kernels": ["rbf"]}) == {"kernels": ["rbf"]}
    # a one-rate shard keeps the grid the others chose from
    wide = compare._widened_plan(summary["plan"], dict(kernels=["edp"], seeds=[0], analyses=[], lr_grid=[0.003]))
    assert wide["lr_grid"] == [0.003, 0.01] and wide["kernels"] == ["edp", "linear"] and wide["seeds"] == [0, 1, 2]


def test_kernels_select_among_a_tasks_own_kernels(tmp_path):
    # mlm-k0-long has its own kernels (edp, linear): --kernels chooses among them, so they can run as shards
    compare.main(["--quick", "--out", str(tmp_path), "--no-progress", "--tasks", "root-k0-long", "--kernels",
                  "linear", "rbf", "--steps", "2", "--lr-grid", "0.01", "--seeds", "0"])
    rows = json.loads((tmp_path / "compare_kernels_quick.json").read_text())["results"]
    assert {r["kernel"] for r in rows} == {"linear"}


def _row(task, kernel, phase, lr, seed, value):
    return dict(task=task, kernel=kernel, phase=phase, lr=lr, seed=seed, validation=value,
                test=None if phase == "probe" else value, cpu_seconds=2.0, steps=100, run=0)


def _synthetic_file(path):
    """A partial results file by hand: 'toy' done for three kernels (probes + 3 seeds), 'late' half done."""
    meta = dict(metric="accuracy", higher_is_better=True, oracle=1.0, oracle_name="BP", floor=0.25, baselines={},
                n_keys=8, head_dim=4, kernels=None)
    rows = []
    for kernel, base in (("edp", 0.9), ("prf-4", 0.6), ("prf-16", 0.85), ("taylor_edp-2", 0.88)):
        rows += [_row("toy", kernel, "probe", 0.01, 0, base - 0.1), _row("toy", kernel, "probe", 0.003, 0, base)]
        rows += [_row("toy", kernel, "final", 0.003, s, base + 0.01 * s) for s in range(3)]
    for row, test in zip(rows[-3:], (0.93, 0.89, 0.92)):  # taylor_edp-2 - EDP = +0.03, -0.02, 0: covers 0
        row["test"] = test
    rows[14]["test"] = float("inf")  # prf-16, seed 2: diverged (NaN is stored as None, an overflow as inf)
    rows += [_row("late", "edp", "probe", 0.01, 0, 0.5), _row("late", "edp", "probe", 0.003, 0, 0.4),
             _row("late", "edp", "final", 0.01, 0, 0.52)]
    # the EDP model of 'late' was evaluated with ladder kernels that have not trained on 'late' yet
    rows[-1]["swap"] = {"prf-4": 0.3, "prf-1024": 0.5, "taylor_edp-2": 0.51}
    # an energy row as the first full-run snapshot stored it: a 'rate' from an exploded trajectory
    rows.append(dict(task="energy", kernel="prf-4", phase="analysis", lr=None, seed=0, value=-1e40,
                     energies=[1.0, 1e20, 1e41], run=0))
    data = {"layout": 1, "name": "compare_kernels", "key": ["task", "kernel", "phase", "lr", "seed"], "config": {},
            "runs": [{"command": "python benchmarks/compare_kernels.py", "git_commit": "abc", "machine": {}}],
            "results": rows,
            "summary": {"task_meta": {"toy": meta, "late": meta},
                        "plan": {"kernels": ["edp", "prf-4", "prf-16", "taylor_edp-2"], "seeds": [0, 1, 2],
                                 "lr_grid": [0.003, 0.01], "analyses": ["energy"]}}}
    path.write_text(json.dumps(data))
    return path


def test_report_and_readme_from_a_partial_synthetic_file(tmp_path):
    path = _synthetic_file(tmp_path / "compare_kernels.json")
    readme = tmp_path / "README.md"
    readme.write_text("# project\n\nintro\n")
    table, progress = compare.report(path, readme=readme)
    # 2 tasks x 4 kernels x (2 probes + 3 seeds) + 4 kernels x 3 seeds of energy = 52 rows; 24 are here
    assert progress == (24, 52)
    toy = table["toy"]["kernels"]
    assert toy["edp"]["lr"] == 0.003 and toy["edp"]["mean"] == pytest.approx(0.91)
    assert toy["prf-4"]["gap"] == pytest.approx(1 - 0.61)
    mean, low, high = toy["prf-4"]["diff_vs_edp"]
    assert mean == pytest.approx(-0.3) and low == pytest.approx(-0.3) and high == pytest.approx(-0.3)
    assert toy["prf-16"]["feature_dim"] == 16 and math.isinf(toy["edp"]["feature_dim"])
    assert table["late"]["kernels"]["edp"]["lr"] == 0.01 and list(table["late"]["kernels"]) == ["edp"]
    text = readme.read_text()
    assert text.startswith("# project\n\nintro\n") and "PARTIAL: 24 of 52 runs done" in text
    assert "](benchmarks/results/compare_kernels_ladder.png)" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("| prf-4 |"))
    assert line == "| prf-4 | 4 | 0.390* |  |"  # the interval excludes 0; prf-4 has no result on 'late'
    line = next(ln for ln in text.splitlines() if ln.startswith("| taylor_edp-2 |"))
    assert "*" not in line
    assert toy["prf-16"]["diverged"] == [2] and toy["prf-16"]["seeds"] == [0, 1]  # counted, not hidden
    assert "(1 diverged)" in next(ln for ln in text.splitlines() if ln.startswith("| prf-16 |"))
    markdown = (tmp_path / "compare_kernels.md").read_text()
    assert "PARTIAL: 24 of 52" in markdown and "| prf-4 | n/a |" in markdown  # the rate is recomputed: diverged
    assert (tmp_path / "compare_kernels_ladder.png").exists() and (tmp_path / "compare_kernels_swap.png").exists()
    compare.report(path, readme=readme)  # a second update replaces the block instead of appending one
    assert readme.read_text().count("compare_kernels table: start") == 1


def test_readme_block_before_any_result():
    block = report_mod.readme_block({}, {"command": "c", "git_commit": "abc"}, (5, 40))
    assert "PARTIAL: 5 of 40 runs done" in block and "No task has results yet." in block and "| kernel" not in block


def test_readme_flag_needs_report(capsys):
    with pytest.raises(SystemExit):
        compare.main(["--readme", "README.md"])
    assert "--readme needs --report" in capsys.readouterr().err


def test_report_refuses_a_file_without_task_meta(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"layout": 1, "key": [], "config": {}, "runs": [], "results": [], "summary": {}}))
    with pytest.raises(ValueError, match="no task_meta"):
        compare.report(path)


def test_lr_choice_and_run_counts():
    rows = [dict(phase="probe", lr=1e-3, validation=0.5), dict(phase="probe", lr=3e-3, validation=0.7),
            dict(phase="final", lr=1e-3, validation=0.9)]
    assert stats.chosen_lr(rows, True, (1e-3, 3e-3)) == 3e-3
    assert stats.chosen_lr(rows, False, (1e-3, 3e-3)) == 1e-3
    assert stats.chosen_lr(rows[:1], True, (1e-3, 3e-3)) is None  # a probe still missing
    assert stats.chosen_lr([], True, (1e-2,)) == 1e-2  # one rate: no probes
    diverged = [dict(phase="probe", lr=lr, validation=None) for lr in (1e-3, 3e-3, 1e-2)]
    assert stats.chosen_lr(diverged, False, (1e-3, 3e-3, 1e-2)) == 3e-3  # all diverged: the middle rate
    # the best probe's rate diverged at full length (one seed): every seed trains at the next best rate instead
    unstable = rows + [dict(phase="final", lr=3e-3, seed=0, validation=0.8),
                       dict(phase="final", lr=3e-3, seed=1, validation=None)]
    assert stats.chosen_lr(unstable, True, (1e-3, 3e-3)) == 1e-3
    both = unstable + [dict(phase="final", lr=1e-3, seed=0, validation=float("nan"))]
    assert stats.chosen_lr(both, True, (1e-3, 3e-3)) == 1e-3  # every rate diverged: the smallest
    spec = dict(lr_grid=(1e-3, 3e-3, 1e-2), probe_fraction=0.2)
    assert plan_mod.runs_per_kernel(spec, 5) == pytest.approx(5.6)
    assert plan_mod.runs_per_kernel(dict(spec, lr_grid=(1e-3,)), 5) == 5
    assert [plan_mod.family(n) for n in ("mlm-k0", "mlm-k0-long", "icl-tree-L1-mlp")] == ["mlm", "mlm-long", "icl"]
    meta = {"a": dict(kernels=None), "b": dict(kernels=["linear"])}
    assert stats.expected_runs(meta, ["edp", "prf-4"], 5, (1e-3, 3e-3), ["subspace"]) == 2 * 7 + 7 + 2 * 5


def test_full_spec_covers_every_task_and_family():
    spec = compare.FULL
    assert set(spec["kernels"]) == set(tasks_mod.ALL_KERNELS) and tuple(spec["seeds"]) == (0, 1, 2, 3, 4)
    for s in (compare.FULL, compare.QUICK):
        assert {plan_mod.family(t) for t in s["tasks"]} <= set(s["steps"]) == set(s["batch"])
    names = set(spec["tasks"])
    assert {"root-k0", "mlm-k0", "mlm-k2", "mlm-k3", "recall-4", "recall-16", "recall-64", "text", "digits"} <= names
    assert len([t for t in names if t.startswith("icl-")]) == 16


def test_plan_times_every_kernel(tmp_path):
    spec = dict(compare.QUICK, steps=dict(compare.QUICK["steps"], root=100))
    result = plan_mod.plan(spec, ("edp", "prf-4"), ("root-k0",), 2, tmp_path / "plan", progress=False)
    row = result["tasks"]["root-k0"]
    assert set(row["ms_per_step"]) == {"edp", "prf-4"} and row["steps"] == 100
    per_run = plan_mod.runs_per_kernel(spec, 2)
    assert result["total_hours"] == pytest.approx(sum(row["ms_per_step"].values()) * 100 * per_run / 3600)
    assert "total: about" in (tmp_path / "plan.txt").read_text()


def test_recall_pair_tokens_by_hand():
    X = np.array([[2, 5 + 1, 0, 5 + 3, 1, 5 + 0, 0, 1]])  # keys 2, 0, 1 with values 1, 3, 0; queries 0 and 1
    tokens, select = tasks_mod.recall_pair_tokens(X, 3, 5, 4)
    assert tokens.shape == (1, 5, 9) and tokens.dtype == np.float32
    assert np.nonzero(tokens[0, 0])[0].tolist() == [2, 6] and np.nonzero(tokens[0, 1])[0].tolist() == [0, 8]
    assert np.nonzero(tokens[0, 3])[0].tolist() == [0] and np.nonzero(tokens[0, 4])[0].tolist() == [1]
    assert select.tolist() == [[False, False, False, True, True]]
    with pytest.raises(ValueError, match="fewer than 2 \\* n_pairs \\+ 1"):
        tasks_mod.recall_pair_tokens(X[:, :6], 3, 5, 4)


def test_recall_and_long_tasks():
    cfg = dict(compare.QUICK["cfg"])
    made = tasks_mod.make_tasks(["recall-4", "mlm-k0-long"], cfg, 50)
    recall = made["recall-4"]
    assert recall.n_keys == 8 and recall.validation[0].shape == (50, 8, 2 * cfg["recall_vocab"])
    model = recall.build("edp", 0)
    assert len(model.encoder.layers) == cfg["recall_layers"]
    x, y, select = recall.sample(3, np.random.RandomState(0))
    assert model(x)[select].shape == (12, cfg["recall_vocab"]) and y.shape == (3, 4)
    assert made["mlm-k0-long"].kernels == ("edp", "linear") and made["mlm-k0-long"].name == "mlm-k0-long"
    text_cfg = dict(cfg, context=32, text_dim=24, text_layers=1, text_heads=3)
    text = tasks_mod.make_tasks(["text"], text_cfg, 8)["text"]
    model = text.build("edp", 0)
    assert len(model.encoder.layers) == 1 and model.encoder.layers[0].n_heads == 3 and text.head_dim == 8
    assert model.encoder.layers[0].is_causal and text.n_keys == 32


@pytest.mark.parametrize("name", ["icl-gaussian-L1-attn", "recall-4"])
def test_scores_do_not_depend_on_the_chunk_size(name):
    task = tasks_mod.make_tasks([name], dict(compare.QUICK["cfg"]), 130)[name]
    model = task.build("linear", 0)
    assert task.score(model, task.test, chunk=1000) == pytest.approx(task.score(model, task.test, chunk=50),
                                                                     rel=1e-5)
    assert task.score(model, task.test) == pytest.approx(task.score(model, task.test, chunk=50), rel=1e-5)
    if task.metric == "mse":
        assert task.score(model, task.test, chunk=7, statistic="median") == pytest.approx(
            task.score(model, task.test, statistic="median"), rel=1e-6)


class _Overflowing(torch.nn.Module):
    """Predicts each prompt's target plus 0.5, except 1e30 on the first prompt (the set in one chunk)."""

    def __init__(self, target):
        super().__init__()
        self.register_buffer("target", target)

    def forward(self, ctx_x, ctx_y, query):
        pred = self.target[: len(query)].clone() + 0.5
        pred[0] = 1e30
        return pred


def test_clipped_selection_bounds_overflowing_prompts():
    task = tasks_mod.make_tasks(["icl-gaussian-L1-attn"], dict(compare.QUICK["cfg"]), 9)["icl-gaussian-L1-attn"]
    assert task.selection == "clipped"
    model = _Overflowing(task.test[1])
    # squared errors (one chunk): 1e60 on one prompt, 0.25 on the eight others
    assert task.score(model, task.test) > 1e50
    assert task.score(model, task.test, statistic="median") == pytest.approx(0.25)
    cap = tasks_mod.CLIP * float(torch.mean(task.test[1].double() ** 2))  # the overflow counts as a failure
    assert task.score(model, task.test, statistic="clipped") == pytest.approx((cap + 8 * 0.25) / 9)
    recall = tasks_mod.make_tasks(["recall-4"], dict(compare.QUICK["cfg"]), 9)["recall-4"]
    assert recall.selection == "mean"
    with pytest.raises(ValueError, match="for a regression .mse. task; got 'median' for metric 'accuracy'"):
        recall.score(recall.build("edp", 0), recall.test, statistic="median")
    with pytest.raises(ValueError, match="statistic must be"):
        task.score(model, task.test, statistic="trimmed")


def test_regression_rows_carry_the_median_over_test_prompts():
    cfg = dict(compare.QUICK["cfg"])
    made = tasks_mod.make_tasks(["icl-tree-L1-attn", "recall-4"], cfg, 20)
    icl = compare.train(made["icl-tree-L1-attn"], "linear", 1e-3, 0, steps=2, batch=4)
    assert 0 < icl["test_median"] and math.isfinite(icl["validation"])
    assert "test_median" not in compare.train(made["recall-4"], "edp", 1e-3, 0, steps=2, batch=4)
    meta = compare.task_meta(made["icl-tree-L1-attn"])
    assert meta["selection"] == "clipped"
    # the baselines' medians, which the models' median SE is compared with: Bayes < top level < ridge
    medians = meta["baseline_medians"]
    assert 0 < medians["Bayes"] < medians["top-level Bayes"] < medians["ridge"] < meta["baselines"]["ridge"]
    assert compare.task_meta(made["recall-4"])["baseline_medians"] == {}


def test_curves_record_validation_checkpoints(tmp_path):
    compare.main(["--quick", "--curves", "--out", str(tmp_path), "--tasks", "root-k0", "--steps", "4",
                  "--no-progress"])
    data = json.loads((tmp_path / "compare_kernels_curves_quick.json").read_text())
    (row,) = data["results"]
    assert row["kernel"] == "edp" and row["lr"] == compare.QUICK["lr_grid"][1] and row["steps"] == 4
    assert [c[0] for c in row["curve"]] == [1, 2, 3, 4] and all(0 <= c[1] <= 1 for c in row["curve"])
    assert row["oracle"] == 1.0 and 0 <= row["test"] <= 1


def _run_with_fake_training(tmp_path, monkeypatch, value, *extra):
    """``main`` on root-k0 and prf-4 (probes of 2 steps, full runs of 4, seeds 0 and 1, rates 3e-3 and 1e-2) with
    ``train`` replaced: ``value(task, lr, seed, steps)`` is every run's validation and test metric."""
    def fake_train(task, kernel, lr, seed, steps, batch, swap_kernels=(), evaluate_test=True):
        v = value(task, lr, seed, steps)
        return dict(validation=v, test=v if evaluate_test else None, final_train_loss=v, seconds=1.0,
                    cpu_seconds=1.0, steps=steps, batch=batch)

    monkeypatch.setattr(compare, "train", fake_train)
    compare.main(["--quick", "--out", str(tmp_path), "--no-progress", "--tasks", "root-k0", "--kernels", "prf-4",
                  "--steps", "4", "--seeds", "0", "1", "--lr-grid", "0.003", "0.01", *extra])
    return json.loads((tmp_path / "compare_kernels_quick.json").read_text())


def test_an_error_worse_than_the_floor_is_a_failed_run():
    assert stats.failed({"validation": 20.0}, higher_is_better=False, floor=7.7)
    assert not stats.failed({"validation": 5.7}, higher_is_better=False, floor=7.7)
    assert stats.failed({"validation": None}, higher_is_better=True)
    assert not stats.failed({"validation": 0.01}, higher_is_better=True, floor=0.0156)  # below chance: learning
    probes = [dict(phase="probe", lr=lr, seed=0, validation=v) for lr, v in ((1e-3, 4.3), (1e-2, 3.0), (3e-2, 3.6))]
    # the best probe's rate (1e-2) overflowed at full length on one seed: worse than predicting 0
    finals = [dict(phase="final", lr=1e-2, seed=s, validation=v) for s, v in ((0, 2.9), (1, 39.0))]
    assert stats.chosen_lr(probes + finals, False, [1e-3, 1e-2, 3e-2], floor=7.7, oracle=0.84) == 3e-2
    assert stats.chosen_lr(probes + finals, False, [1e-3, 1e-2, 3e-2]) == 1e-2  # no floor: finite is enough


def test_a_rate_that_diverges_at_full_length_is_passed_over(tmp_path, monkeypatch):
    """The probe prefers 1e-2, one seed diverges there at full length: every seed trains at 3e-3 instead."""
    data = _run_with_fake_training(  # diverged: seed 1 at 1e-2, full length
        tmp_path, monkeypatch, lambda task, lr, seed, steps: None if (lr, seed, steps) == (0.01, 1, 4) else 0.5 + lr)
    finals = {(r["lr"], r["seed"]) for r in data["results"] if r["phase"] == "final"}
    assert finals == {(0.01, 0), (0.01, 1), (0.003, 0), (0.003, 1)}  # the diverged rate's runs are kept
    entry = data["summary"]["tasks"]["root-k0"]["kernels"]["prf-4"]
    assert entry["lr"] == 0.003 and entry["seeds"] == [0, 1] and entry["diverged"] == []
    assert "Status: complete." in (tmp_path / "compare_kernels_quick.md").read_text()  # 2 probes + 2 seeds


def test_probes_at_the_floor_compare_the_rates_at_full_length():
    grid = (1e-3, 1e-2)
    at_floor = [dict(phase="probe", lr=1e-3, seed=0, validation=0.251), dict(phase="probe", lr=1e-2, seed=0,
                                                                             validation=0.262)]
    assert stats.probes_at_floor(at_floor, grid, floor=0.25, oracle=1.0)  # 1.6% of the gap closed
    assert not stats.probes_at_floor(at_floor, grid, floor=0.24, oracle=1.0)  # 2.9%: the probes rank
    assert not stats.probes_at_floor(at_floor, grid)  # no floor or oracle: the probes decide
    assert not stats.probes_at_floor(at_floor[:1], grid, floor=0.25, oracle=1.0)  # a probe still missing
    # lower is better (an error): the gap runs downwards from the floor
    mse = [dict(phase="probe", lr=lr, seed=0, validation=v) for lr, v in zip(grid, (0.995, 0.99))]
    assert stats.probes_at_floor(mse, grid, floor=1.0, oracle=0.0) and not stats.probes_at_floor(
        mse, grid, floor=1.0, oracle=0.8)
    assert stats.chosen_lr(at_floor, True, grid, 0.25, 1.0) is None  # full-length runs still missing
    full = [dict(phase="final", lr=1e-3, seed=0, validation=0.9), dict(phase="final", lr=1e-2, seed=0,
                                                                       validation=0.3)]
    assert stats.chosen_lr(at_floor + full[:1], True, grid, 0.25, 1.0) is None
    assert stats.chosen_lr(at_floor + full, True, grid, 0.25, 1.0) == 1e-3  # against the better probe
    assert stats.chosen_lr(at_floor + full, True, grid) == 1e-2  # without a floor: the probes decide


def test_a_run_whose_probes_stay_at_the_floor_chooses_the_rate_at_full_length(tmp_path, monkeypatch):
    """Probes (2 steps) all at the floor: seed 0 trains at both rates for the full 4 steps, seed 1 at the best."""
    def value(task, lr, seed, steps):
        return task.floor if steps == 2 else (0.9 if lr == 0.003 else 0.5)

    data = _run_with_fake_training(tmp_path, monkeypatch, value)
    finals = {(r["lr"], r["seed"]) for r in data["results"] if r["phase"] == "final"}
    assert finals == {(0.003, 0), (0.01, 0), (0.003, 1)}
    entry = data["summary"]["tasks"]["root-k0"]["kernels"]["prf-4"]
    assert entry["lr"] == 0.003 and entry["seeds"] == [0, 1]
    assert "Status: complete." in (tmp_path / "compare_kernels_quick.md").read_text()


def test_resuming_a_task_under_another_budget_is_refused(tmp_path, monkeypatch):
    def value(task, lr, seed, steps):
        return 0.9

    _run_with_fake_training(tmp_path, monkeypatch, value)
    with pytest.raises(ValueError, match=r"task 'root-k0': a stored probe run \(prf-4, lr 0.003, seed 0\) trained "
                                         r"2 steps at batch 64, but the budget is now 3 at batch 64"):
        _run_with_fake_training(tmp_path, monkeypatch, value, "--steps", "12")  # the later --steps wins
    data = _run_with_fake_training(tmp_path, monkeypatch, value, "--tasks", "root-k0", "digits")  # a task joins
    assert {r["task"] for r in data["results"]} == {"root-k0", "digits"}


def test_a_non_finite_step_is_skipped_and_counted():
    """One overflowing batch leaves the parameters as they were; the steps before and after it train."""
    class _Task:
        calls = 0

        def sample(self, n, rng):
            return torch.from_numpy(rng.standard_normal((n, 3))).float()

        def loss(self, model, x):
            self.calls += 1
            out = model(x).square().mean()
            return out * float("nan") if self.calls == 2 else out

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    history = []
    for step, loss, applied in compare.training_steps(_Task(), model, 1e-2, 4, 8, 0):
        history.append((applied, [p.detach().clone() for p in model.parameters()]))
    assert [a for a, _ in history] == [True, False, True, True]
    assert all(torch.equal(a, b) for a, b in zip(history[0][1], history[1][1]))  # the skipped step: no change
    assert not torch.equal(history[1][1][0], history[2][1][0]) and all(
        torch.isfinite(p).all() for p in model.parameters())


def test_history_counts_invocations_commits_and_training_time():
    runs = [dict(started="2026-11-30T14:31:55+00:00", command="python compare_kernels.py", git_commit="551e001c5"),
            dict(started="2026-11-30T16:20:00+00:00", command="compare_kernels.py --out a", git_commit="d936b7d00"),
            dict(started="2026-11-30T18:52:24+00:00", command="compare_kernels.py --merge a/x.json",
                 git_commit="d936b7d00")]
    rows = [dict(cpu_seconds=3600.0), dict(cpu_seconds=1800.0), dict(value=1.0)]
    assert report_mod.history(runs, rows) == (
        "2 invocation(s) (resumed runs and merged `--tasks` shards), started 2026-11-30 14:31 to 2026-11-30 16:20 "
        "UTC, at commit(s) `551e001`, `d936b7d`; 1.5 CPU-hours of training stored")
    assert report_mod.history(runs[:1], [dict(cpu_seconds=90.0)]) == (
        "1 invocation(s), started 2026-11-30 14:31 UTC, at commit(s) `551e001`; 1.5 CPU-minutes of training stored")
    assert report_mod.history([], []) == "0 invocation(s), at commit(s) ?; 0.0 CPU-minutes of training stored"


def test_a_long_task_chooses_the_rate_at_full_length_without_probes(tmp_path, monkeypatch):
    """root-k0-long (EDP and linear): seed 0 at both rates for the full 4 steps, seed 1 at the better one."""
    def value(task, lr, seed, steps):
        assert steps == 4  # no probes
        return 0.9 if lr == 0.01 else 0.8

    data = _run_with_fake_training(tmp_path, monkeypatch, value, "--tasks", "root-k0-long", "--kernels", "edp",
                                   "linear")
    rows = data["results"]
    assert {r["phase"] for r in rows} == {"final"}
    assert {(r["kernel"], r["lr"], r["seed"]) for r in rows} == {
        (k, lr, s) for k in ("edp", "linear") for lr, s in ((0.003, 0), (0.01, 0), (0.01, 1))}
    assert tasks_mod.selects_at_full_length("root-k0-long") and not tasks_mod.selects_at_full_length("root-k0")
    assert data["summary"]["tasks"]["root-k0-long"]["kernels"]["edp"]["lr"] == 0.01
    assert "Status: complete." in (tmp_path / "compare_kernels_quick.md").read_text()  # 3 runs per kernel
    assert stats.chosen_lr(rows[:1], True, (0.003, 0.01), at_full_length=True) is None  # a rate missing


def test_icl_plot_draws_every_seed_and_marks_the_ones_off_the_scale(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    calls = []
    original = Axes.scatter

    def recording(self, x, y, *args, **kwargs):
        calls.append((list(x), list(y), kwargs.get("marker")))
        return original(self, x, y, *args, **kwargs)

    monkeypatch.setattr(Axes, "scatter", recording)
    meta = dict(oracle=0.1, baselines={"ridge": 0.9})

    def entry(tests, diverged=()):
        return dict(meta, kernels={"linear": dict(test=dict(enumerate(tests)), diverged=list(diverged))})

    table = {"icl-tree-L1-mlp": entry([2.0, 3.0, 4.0]),
             "icl-tree-L8-mlp": entry([0.5, 0.4, 6.8e19], diverged=[3])}  # one seed overflowed, one diverged
    path = report_mod.plot_icl(table, tmp_path / "icl.png", top=30.0)
    assert path is not None and path.exists()
    depth8 = [c for c in calls if c[0] and c[0][0] == pytest.approx(8 * 1.05)]
    assert sorted(depth8[0][1]) == [0.4, 0.5] and depth8[0][2] is None  # the seeds on the scale, as points
    assert depth8[1][1] == [30.0, 30.0] and depth8[1][2] == "^"  # the overflowed and the diverged seed
    assert report_mod.plot_icl({"root-k0": entry([1.0])}, tmp_path / "none.png") is None  # no in-context task


def test_clip_sensitivity_reproduces_the_probes_and_records_each_statistics_rate(tmp_path):
    # 100 steps: the 25-step probes leave the floor, so the comparison chooses by them (not at full length)
    common = ["--quick", "--out", str(tmp_path), "--no-progress", "--tasks", "icl-tree-L1-attn", "--steps", "100",
              "--lr-grid", "0.001", "0.03", "--seeds", "0", "1"]
    compare.main(common)  # the comparison's probes, which the sensitivity run retrains
    results = compare.main([*common, "--clip-sensitivity"])
    probes = results.select(phase="probe")
    assert sorted(r["lr"] for r in probes) == [0.001, 0.03] and all(r["steps"] == 25 for r in probes)
    for r in probes:  # the same runs: the comparison's stored validation error is the clipped one at CLIP
        assert r["statistics"][f"clip {tasks_mod.CLIP:g}"] == pytest.approx(r["stored_validation"], rel=1e-12)
        clipped = [r["statistics"][f"clip {f:g}"] for f in (3, 10, 30, 100, 300, 1000)]
        assert clipped == sorted(clipped) and clipped[-1] <= r["statistics"]["mean"]  # a higher cap, a higher mean
    choices = results.summary["choices"]["icl-tree-L1-attn"]
    stored = json.loads((tmp_path / "compare_kernels_quick.json").read_text())
    stored_finals = {(r["lr"], r["seed"]): r["test"] for r in stored["results"] if r["phase"] == "final"}
    assert {choices[f"clip {tasks_mod.CLIP:g}"]} == {lr for lr, _ in stored_finals}  # the comparison's choice
    assert set(choices) == {"clip 3", "clip 10", "clip 30", "clip 100", "clip 300", "clip 1000", "mean", "median"}
    finals = results.select(phase="final")  # each seed at each rate a clipping factor chose
    chosen = {choices[f"clip {f:g}"] for f in (3, 10, 30, 100, 300, 1000)}
    assert {(r["lr"], r["seed"]) for r in finals} == {(lr, s) for lr in chosen for s in (0, 1)}
    for r in finals:  # the comparison's runs are reused, not retrained
        assert (r["source"] == "comparison") == ((r["lr"], r["seed"]) in stored_finals)
        assert r["test"] == stored_finals.get((r["lr"], r["seed"]), r["test"])
    outcome = results.summary["outcomes"]["icl-tree-L1-attn"][str(choices["clip 100"])]
    assert outcome["seeds"] == 2 and outcome["test"] == pytest.approx(np.median(list(stored_finals.values())))
    text = (tmp_path / "compare_kernels_clip_quick.md").read_text()
    assert "2 probes match the comparison's stored validation error" in text and "| same rate as clip 100" in text
    assert "| icl-tree-L1-attn | 0.03 | clip 3, 10, 30, 100, 300, 1000 |" in text
    with pytest.raises(SystemExit, match="needs in-context tasks"):
        compare.main([*common[:5], "root-k0", "--clip-sensitivity"])


def test_clipped_mean_caps_each_error_and_counts_overflow_as_the_cap():
    target = torch.tensor([1.0, -1.0, 1.0, -1.0])  # mean squared target 1
    errors = torch.tensor([0.5, 2.0, float("inf"), float("nan")], dtype=torch.float64)
    assert tasks_mod.clipped_mean(errors, target, clip=1.0) == pytest.approx((0.5 + 1 + 1 + 1) / 4)
    assert tasks_mod.clipped_mean(errors[:2], target, clip=100.0) == pytest.approx(1.25)
    with pytest.raises(ValueError, match="clip must be a positive multiple"):
        tasks_mod.clipped_mean(errors, target, clip=0.0)
    recall = tasks_mod.make_tasks(["recall-4"], dict(compare.QUICK["cfg"]), 9)["recall-4"]
    with pytest.raises(ValueError, match="squared errors are defined for a regression .mse. task, not for metric "
                                         "'accuracy'"):
        recall.squared_errors(recall.build("edp", 0), recall.test)


@pytest.mark.parametrize("steps", [2, 3, 9, 10, 11, 20, 300])
def test_the_schedule_runs_for_every_step_count(steps):
    model = torch.nn.Linear(2, 1)
    optimizer, schedule = compare.make_optimizer(model, 1e-3, steps)
    for _ in range(steps):
        optimizer.step()
        schedule.step()
    assert schedule.get_last_lr()[0] < 1e-3  # annealed from the peak
