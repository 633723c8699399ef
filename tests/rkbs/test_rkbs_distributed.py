"""torch.distributed data parallelism (gloo, 2 CPU processes): the 1-process Nystroem coefficients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rkbs.estimators import RKBSRegressor

# (penalty, solver, landmarks): direct normal equations and Falkon CG, both penalties, both landmark rules
CASES = [("rkhs", "cholesky", "uniform"), ("rkhs", "falkon", "leverage"), ("coef", "falkon", "uniform"),
         ("coef", "cholesky", "uniform")]


def _data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(403, 3))  # 403 rows: unequal shards
    return X, np.sin(X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * rng.normal(size=403)


def _model(penalty, solver, landmarks):
    return RKBSRegressor(kernel_params={"gamma": 2.0}, alpha=1.0, penalty=penalty, solver=solver,
                         landmarks=landmarks, n_components=37, random_state=0, tol=1e-13, max_iter=2000)


def _worker(rank, world, store, path, tmp):
    from rkbs.distributed import data_parallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        X, y = _data()
        shard = np.array_split(np.arange(len(X)), world)[rank]
        np.save(f"{tmp}/X{rank}.npy", X[shard])
        out = {}
        with data_parallel():
            for case in CASES:
                out[case] = _model(*case).fit(X[shard], y[shard]).dual_coef_
            # out of core and distributed at once: each process's shard as a memory map
            mm = np.load(f"{tmp}/X{rank}.npy", mmap_mode="r")
            out["memmap"] = _model("rkhs", "falkon", "uniform").fit(mm, y[shard]).dual_coef_
            with pytest.raises(ValueError, match="set n_components"):
                RKBSRegressor().fit(X[shard], y[shard])
        if rank == 0:
            torch.save(out, path)
        # both ranks leave together: a rank that tears gloo down while the other still talks to it aborts
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_fit_gives_the_single_process_coefficients(tmp_path):
    path = str(tmp_path / "coef.pt")
    mp.spawn(_worker, args=(2, str(tmp_path / "rendezvous"), path, str(tmp_path)), nprocs=2, join=True)
    out = torch.load(path, weights_only=False)
    X, y = _data()
    for case in CASES:
        np.testing.assert_allclose(out[case], _model(*case).fit(X, y).dual_coef_, rtol=0, atol=1e-10,
                                   err_msg=str(case))
    np.testing.assert_allclose(out["memmap"], _model("rkhs", "falkon", "uniform").fit(X, y).dual_coef_,
                               rtol=0, atol=1e-10)
