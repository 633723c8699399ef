"""Shared test settings: float64 references, deterministic hypothesis profiles, GPU marker handling."""

import os

import torch

# Triton decides at decoration time whether a kernel is interpreted, so the switch must be set before any test
# module (or a package it imports) defines a Triton kernel; without a GPU every Triton test runs interpreted.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Under pytest-xdist each worker is one process per core: one torch thread each, instead of every worker's
# thread pool spanning all cores (oversubscribed, tiny-tensor tests ran 10-20x slower on a busy machine).
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# Docstring examples that fit a model on a real data set: seconds alone, a minute on two busy cores.
_SLOW_DOCTESTS = {"rkbs.estimators.classifier.RKBSClassifier"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.name in _SLOW_DOCTESTS:
            item.add_marker(pytest.mark.slow)
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
