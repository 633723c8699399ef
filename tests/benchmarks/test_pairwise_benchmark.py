"""benchmarks/pairwise.py on a tiny run: the results file, the paired differences from Kronecker, the table."""

import importlib
import json
import sys
from pathlib import Path

import pytest

_BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(_BENCH))  # benchmarks/ is a folder of scripts; its modules import each other by name
pairwise = importlib.import_module("pairwise")


def test_quick_synthetic_run_reports_paired_differences_from_kronecker(tmp_path, monkeypatch):
    # a small learner, so that the test stays fast; the table's logic is what is tested here
    monkeypatch.setitem(pairwise.LEARNERS, "learned", dict(pairwise.LEARNERS["learned"], ensemble_size=2,
                                                           max_iter=40))
    pairwise.main(["--quick", "--out", str(tmp_path), "--no-progress", "--part", "synthetic", "--seeds", "0", "1",
                   "--settings", "rows", "--methods", "mean", "kronecker", "learned"])
    data = json.loads((tmp_path / "pairwise_quick_synthetic.json").read_text())
    rows = data["results"]
    assert {(r["method"], r["seed"]) for r in rows} == {(m, s) for m in ("mean", "kronecker", "learned")
                                                        for s in (0, 1)} and len(rows) == 3 * 2 * 3
    learned = [r for r in rows if r["method"] == "learned"]
    assert all(len(r["n_iter"]) == 2 for r in learned)  # one entry per ensemble member
    table = data["summary"]["table"]
    assert table["rows/kronecker"]["folds"] == 6 and "vs_kronecker" not in table["rows/kronecker"]
    mean, low, high = table["rows/learned"]["vs_kronecker"]
    by_key = {(r["method"], r["seed"], r["fold"]): r["r2"] for r in rows}
    diffs = [by_key[("learned", s, f)] - by_key[("kronecker", s, f)] for s in (0, 1) for f in range(3)]
    assert mean == pytest.approx(sum(diffs) / 6) and low < mean < high
    markdown = (tmp_path / "pairwise_quick_synthetic.md").read_text()
    assert "| learned | " in markdown and f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]" in markdown
    assert (tmp_path / "pairwise_quick_synthetic.png").exists()
