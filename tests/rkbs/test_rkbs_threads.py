"""Random-feature kernels shared between threads draw their features once."""

from __future__ import annotations

import threading

import pytest
import torch

from rkbs.kernels import PositiveRandomFeatures, RandomFourierFeatures


@pytest.mark.parametrize("cls", [PositiveRandomFeatures, RandomFourierFeatures])
def test_two_threads_share_one_draw(cls):
    q, k = torch.randn(8, 16, dtype=torch.float64), torch.randn(8, 16, dtype=torch.float64)
    for _ in range(30):  # unlocked, about one trial in six mixed two draws
        kernel = cls(n_features=64)  # random_state=None: two draws would differ
        barrier, out = threading.Barrier(2), [None, None]

        def run(i, kernel=kernel, barrier=barrier, out=out):
            barrier.wait()
            out[i] = kernel.evaluate(q, k)  # query features, then key features

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ref = kernel.evaluate(q, k)
        assert torch.equal(out[0], ref) and torch.equal(out[1], ref)
