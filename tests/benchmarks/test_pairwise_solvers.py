"""benchmarks/pairwise_solvers.py: a tiny real run, its rows and the plain LSQR baseline."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
solvers = importlib.import_module("pairwise_solvers")


def test_plain_lsqr_baseline_solves_the_two_sided_problem():
    Xx, Xy, observed, a, b, z, params, K = solvers._problem("rbf/sqrt(d)", 7, 5, 0.6, seed=0)
    C, iterations, converged = solvers._plain_lsqr(K, a, b, z, alpha=0.1)
    design = np.kron(K.T, K)[a + K.shape[0] * b]  # column-major vec(K C K) restricted to the observed pairs
    expected = np.linalg.solve(design.T @ design + 0.1 * np.eye(K.size), design.T @ z)
    assert converged and iterations > 1
    np.testing.assert_allclose(C.ravel(order="F"), expected, atol=1e-6)


def test_quick_run_writes_every_solver_of_every_problem(tmp_path, monkeypatch):
    monkeypatch.setattr(solvers, "ALPHAS", (1e-1,))
    monkeypatch.setattr(solvers, "KERNELS", ("rbf/sqrt(d)", "kronecker-rbf"))
    solvers.main(["--quick", "--out", str(tmp_path), "--no-progress"])
    rows = json.loads((tmp_path / "pairwise_solvers_quick.json").read_text())["results"]
    assert sorted((r["kernel"], r["solver"]) for r in rows) == [
        ("kronecker-rbf", "cg"), ("kronecker-rbf", "cholesky"), ("rbf/sqrt(d)", "cholesky"),
        ("rbf/sqrt(d)", "lsqr"), ("rbf/sqrt(d)", "plain-lsqr")]
    for r in rows:  # well-conditioned at alpha 0.1: every Krylov solver reaches the exact dual's responses
        assert r["converged"] and r["relative_error"] < 1e-5 and r["n_obs"] > 0
    assert (tmp_path / "pairwise_solvers_quick.png").exists()
