"""The shared benchmark harness: flags, the results layout (JSON + CSV with provenance) and resuming."""

import csv
import doctest
import importlib.util
import json
import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]


def _load(name, path):
    # benchmarks/ is a folder of scripts, not a package: load the module from its file.
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


harness = _load("_harness", _ROOT / "benchmarks" / "_harness.py")


def _args(tmp_path, *extra):
    return harness.make_parser("test", name="bench").parse_args(["--out", str(tmp_path), *extra])


def test_parser_has_the_shared_flags(tmp_path):
    args = _args(tmp_path, "--quick", "--seeds", "3", "4", "--device", "cpu", "--threads", "1")
    assert args.quick and args.seeds == [3, 4] and args.device == "cpu" and args.threads == 1
    assert args.out == tmp_path and args.name == "bench" and not args.fresh
    defaults = harness.make_parser(None, name="x", seeds=(0, 1, 2)).parse_args([])
    assert defaults.seeds == [0, 1, 2] and not defaults.quick and defaults.out == harness.RESULTS_DIR


def test_layout_json_and_csv_with_provenance(tmp_path):
    args = _args(tmp_path, "--quick")
    store = harness.Results.open(args, key=("task", "kernel", "seed"), config={"steps": 5})
    store.add({"task": "root", "kernel": "edp", "seed": 0, "accuracy": 0.5, "curve": [1.0, 0.5]})
    store.add({"task": "root", "kernel": "linear", "seed": 0, "accuracy": 0.25, "seconds": 1.5})
    data = json.loads((tmp_path / "bench_quick.json").read_text())
    assert data["layout"] == 1 and data["key"] == ["task", "kernel", "seed"] and data["config"] == {"steps": 5}
    run = data["runs"][0]
    assert set(run) >= {"started", "command", "git_commit", "git_dirty", "machine", "versions"}
    assert run["versions"]["torch"] and run["versions"]["numpy"] and run["machine"]["cpu_count"] >= 1
    assert len(run["git_commit"]) == 40  # the tests run inside the project's checkout
    assert [r["kernel"] for r in data["results"]] == ["edp", "linear"]
    with open(tmp_path / "bench_quick.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["task", "kernel", "seed", "accuracy", "curve", "run", "seconds"]
    assert rows[0]["curve"] == "[1.0, 0.5]" and rows[1]["accuracy"] == "0.25" and rows[0]["seconds"] == ""


def test_resume_skips_stored_results_and_records_each_run(tmp_path):
    keys = [dict(kernel=k, seed=s) for k in ("edp", "rbf") for s in (0, 1)]
    calls = []
    store = harness.Results(tmp_path / "r.json", key=("kernel", "seed"), config={"n": 1}, progress=False)
    with pytest.raises(RuntimeError, match="killed"):
        for key in store.pending(keys):
            if len(calls) == 3:
                raise RuntimeError("killed")  # the run dies after three results
            calls.append(key)
            store.add({**key, "score": len(calls)})
    store.close()
    resumed = harness.Results(tmp_path / "r.json", key=("kernel", "seed"), config={"n": 1}, progress=False)
    assert len(resumed) == 3 and resumed.done(kernel="rbf", seed=0) and not resumed.done(kernel="rbf", seed=1)
    todo = list(resumed.pending(keys))
    assert todo == [dict(kernel="rbf", seed=1)]
    resumed.add({**todo[0], "score": 4})
    data = json.loads((tmp_path / "r.json").read_text())
    assert [r["run"] for r in data["results"]] == [0, 0, 0, 1] and len(data["runs"]) == 2
    assert resumed.get(kernel="edp", seed=1)["score"] == 2
    assert [r["score"] for r in resumed.select(kernel="rbf")] == [3, 4]


def test_resume_refuses_a_different_config_and_fresh_starts_over(tmp_path):
    store = harness.Results(tmp_path / "r.json", key=("seed",), config={"steps": 10}, progress=False)
    store.add({"seed": 0, "x": 1.0})
    store.close()
    with pytest.raises(ValueError, match=r"different config \(changed: steps\).*--fresh"):
        harness.Results(tmp_path / "r.json", key=("seed",), config={"steps": 20})
    with pytest.raises(ValueError, match="keyed by"):
        harness.Results(tmp_path / "r.json", key=("kernel",), config={"steps": 10})
    fresh = harness.Results(tmp_path / "r.json", key=("seed",), config={"steps": 20}, fresh=True)
    assert len(fresh) == 0 and not fresh.done(seed=0)


def test_merge_adds_the_shards_missing_rows_with_their_provenance(tmp_path):
    """Two shards resumed from one stored file each add different keys; merging them loses nothing."""
    base = harness.Results(tmp_path / "main.json", key=("kernel", "seed"), config={"n": 1}, progress=False,
                           run={"command": "base"})
    base.add({"kernel": "edp", "seed": 0, "score": 1.0})
    base.set_summary(plan={"kernels": ["edp", "rbf", "prf"]})
    base.close()
    for shard, kernel in (("a", "rbf"), ("b", "prf")):
        (tmp_path / shard).mkdir()
        (tmp_path / shard / "main.json").write_text((tmp_path / "main.json").read_text())
        with harness.Results(tmp_path / shard / "main.json", key=("kernel", "seed"), config={"n": 1},
                             progress=False, run={"command": f"shard {shard}"}) as store:
            store.add({"kernel": kernel, "seed": 0, "score": 2.0})
            store.add({"kernel": "edp", "seed": 0, "score": -1.0})  # a key the target has: the target's stays
            store.set_summary(plan={"kernels": [kernel]}, shard=shard, meta={kernel: shard})
    with harness.Results(tmp_path / "main.json", key=("kernel", "seed"), config={"n": 1}, progress=False,
                         run={"command": "merge"}) as store:
        assert store.merge(tmp_path / "a" / "main.json") == 1
        assert store.merge(tmp_path / "b" / "main.json") == 1
        assert store.merge(tmp_path / "b" / "main.json") == 0  # merging twice adds nothing
        with pytest.raises(ValueError, match="into itself"):
            store.merge(tmp_path / "main.json")
    data = json.loads((tmp_path / "main.json").read_text())
    rows = {r["kernel"]: r for r in data["results"]}
    assert sorted(rows) == ["edp", "prf", "rbf"] and rows["edp"]["score"] == 1.0
    assert [r["command"] for r in data["runs"]] == ["base", "merge", "shard a", "shard b"]
    assert data["runs"][rows["rbf"]["run"]]["command"] == "shard a"
    assert data["runs"][rows["prf"]["run"]]["merged_from"].endswith("b/main.json")
    # the target's entries stay; a dictionary entry gains the items it lacks (each shard's new task)
    assert data["summary"] == {"plan": {"kernels": ["edp", "rbf", "prf"]}, "shard": "a",
                               "meta": {"rbf": "a", "prf": "b"}}
    assert len(list(csv.DictReader((tmp_path / "main.csv").open()))) == 3


def test_merge_refuses_another_benchmark_or_config(tmp_path):
    for name, key, config in (("other_key", ("task",), {"n": 1}), ("other_config", ("seed",), {"n": 2}),
                              ("target", ("seed",), {"n": 1})):
        with harness.Results(tmp_path / f"{name}.json", key=key, config=config, progress=False) as store:
            store.add({k: 0 for k in key})
    with harness.Results(tmp_path / "target.json", key=("seed",), config={"n": 1}, progress=False) as store:
        with pytest.raises(ValueError, match=r"keyed by \['task'\]"):
            store.merge(tmp_path / "other_key.json")
        with pytest.raises(ValueError, match=r"different config \(changed: n\)"):
            store.merge(tmp_path / "other_config.json")
    (tmp_path / "old.json").write_text(json.dumps({"results": []}))
    with harness.Results(tmp_path / "target.json", key=("seed",), config={"n": 1}, progress=False) as store:
        with pytest.raises(ValueError, match="not a results file of layout"):
            store.merge(tmp_path / "old.json")


def test_rows_need_their_key_and_keys_compare_by_value(tmp_path):
    store = harness.Results(tmp_path / "r.json", key=("kernel", "m"), progress=False)
    with pytest.raises(KeyError, match=r"missing key field\(s\) \['m'\]"):
        store.add({"kernel": "edp"})
    import numpy as np

    store.add({"kernel": "prf", "m": np.int64(16), "value": np.float32(0.5), "missing": float("nan")})
    assert store.done(kernel="prf", m=16) and not store.done(kernel="prf", m=64)
    assert json.loads((tmp_path / "r.json").read_text())["results"][0]["missing"] is None
    with pytest.raises(ValueError, match="key must be a non-empty sequence"):
        harness.Results(tmp_path / "s.json", key="kernel")


def test_summary_and_figure(tmp_path):
    store = harness.Results(tmp_path / "r.json", key=("seed",), progress=False)
    store.set_summary(table={"edp": 1.0})
    assert json.loads((tmp_path / "r.json").read_text())["summary"] == {"table": {"edp": 1.0}}
    fig, ax = harness.pyplot().subplots()
    ax.plot([0, 1], [1, 0])
    path = harness.save_figure(fig, tmp_path / "plot", caption=harness.provenance_caption(store))
    assert path.suffix == ".png" and path.stat().st_size > 1000


def test_resolve_device_names_the_flag():
    assert str(harness.resolve_device("cpu")) == "cpu"
    with pytest.raises(ValueError, match="--device 'nonsense'"):
        harness.resolve_device("nonsense")


@pytest.mark.parametrize("name", ["seed_tasks.json", "linear_vs_quadratic.json", "launch_overhead.json",
                                  "attention_speed.json"])
def test_committed_results_of_older_layouts_stay_readable(name):
    data = harness.load_results(_ROOT / "benchmarks" / "results" / name)
    assert data["results"] and data["runs"]


def test_seed_tasks_plots_its_committed_results_and_new_rows(tmp_path):
    seed_tasks = _load("seed_tasks", _ROOT / "benchmarks" / "seed_tasks.py")
    legacy = harness.load_results(_ROOT / "benchmarks" / "results" / "seed_tasks.json")["results"]
    seed_tasks.plot(legacy, tmp_path / "legacy.png")
    two_seeds = [dict(r, seed=s, accuracy=r.get("accuracy", 0) + 0.01 * s) for r in legacy for s in (0, 1)]
    seed_tasks.plot(two_seeds, tmp_path / "seeds.png", caption="x")
    assert (tmp_path / "legacy.png").stat().st_size > 1000 and (tmp_path / "seeds.png").stat().st_size > 1000


def test_an_open_store_is_locked_against_a_second_writer(tmp_path):
    with harness.Results(tmp_path / "r.json", key=("seed",), progress=False) as store:
        store.add({"seed": 0})
        with pytest.raises(RuntimeError, match="in use by another run"):
            harness.Results(tmp_path / "r.json", key=("seed",))
    with harness.Results(tmp_path / "r.json", key=("seed",), progress=False) as again:  # released on exit
        assert again.done(seed=0)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="VmHWM is Linux's")
def test_peak_memory_of_a_child_is_its_own():
    # A child started from a large parent inherits the parent's ru_maxrss; its VmHWM starts afresh.
    import subprocess

    import numpy as np

    ballast = np.ones(256 * 2**20 // 8)  # 256 MiB touched in this process
    code = ("import resource, sys; sys.path.insert(0, 'benchmarks'); import _harness; "
            "print(_harness.peak_rss_mib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    own, inherited = map(float, subprocess.run([sys.executable, "-c", code], cwd=_ROOT, capture_output=True,
                                               text=True, check=True).stdout.split())
    assert ballast.sum() > 0
    assert own < 150 and inherited >= own  # ru_maxrss would report the parent's 256 MiB here


def test_paired_ci_matches_a_hand_computation():
    import math

    import numpy as np

    mean, low, high = harness.paired_ci([1.0, 2.0, 4.0], [0.5, 1.0, 2.0])
    d = np.array([0.5, 1.0, 2.0])
    half = 4.302652729749464 * d.std(ddof=1) / math.sqrt(3)  # t(0.975, 2)
    assert mean == pytest.approx(d.mean()) and low == pytest.approx(d.mean() - half)
    assert high == pytest.approx(d.mean() + half)
    assert harness.paired_ci([1.0], [0.0]) == (1.0, None, None)


def test_merge_results_into_a_folder_creates_or_extends_the_file_of_the_same_name(tmp_path):
    (tmp_path / "shard").mkdir()
    with harness.Results(tmp_path / "shard" / "bench.json", key=("seed",), config={"n": 1}, progress=False) as store:
        store.add({"seed": 0, "x": 1.0})
    done = harness.merge_results([tmp_path / "shard" / "bench.json"], tmp_path / "main")
    assert done == [(tmp_path / "main" / "bench.json", 1)]  # created with the shard's key and config
    data = json.loads((tmp_path / "main" / "bench.json").read_text())
    assert data["config"] == {"n": 1} and data["key"] == ["seed"] and data["results"][0]["x"] == 1.0
    assert harness.merge_results([tmp_path / "shard" / "bench.json"], tmp_path / "main")[0][1] == 0


def test_the_harness_examples_run():
    # benchmarks/ is outside the doctest paths (its scripts are not importable modules): run its examples here
    result = doctest.testmod(harness, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
