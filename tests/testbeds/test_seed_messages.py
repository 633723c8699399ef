"""Messages of the testbeds name the user's argument (issue 13, item 7)."""

import numpy as np
import pytest

from attention_kernels.testbeds.datasets import (
    GaussianTaskPrior,
    TreeTaskPrior,
    bayes_optimal_prediction,
    hierarchical_bp,
    make_hierarchical_sequences,
    make_incontext_regression,
    mask_leaves,
)


def test_tiny_noise_under_the_gaussian_prior_names_noise():
    X, y, _, prior = make_incontext_regression(5, 6, 3, random_state=0)
    with pytest.raises(ValueError, match=r"noise=1e-300 is too small: noise\*\*2 / scale\*\*2 underflows"):
        bayes_optimal_prediction(X[:, :-1], y[:, :-1], X[:, -1], prior, noise=1e-300)
    # a prior so narrow that alpha overflows pins w to zero
    narrow = GaussianTaskPrior(3, scale=1e-200)
    np.testing.assert_array_equal(bayes_optimal_prediction(X[:, :-1], y[:, :-1], X[:, -1], narrow, 0.5), 0.0)


def test_singular_tree_posterior_names_noise():
    X, y, _, prior = make_incontext_regression(50, 12, 4, prior="tree", noise=0.1, jitter=0.1, random_state=0)
    with pytest.raises(ValueError, match=r"noise=1e-12 is too small for this prompt.*singular"):
        bayes_optimal_prediction(X[:, :-1], y[:, :-1], X[:, -1], prior, noise=1e-12)


def test_nan_prior_parameters_raise():
    with pytest.raises(ValueError, match="scale must be finite"):
        make_incontext_regression(3, 2, 4, prior=GaussianTaskPrior(4, float("nan")))
    with pytest.raises(ValueError, match="scale must be >= 0"):
        GaussianTaskPrior(4, -1.0)
    with pytest.raises(ValueError, match="centers contains NaN"):
        TreeTaskPrior(np.array([[0.0, np.nan]]), 0.1)
    with pytest.raises(ValueError, match="jitter must be finite"):
        TreeTaskPrior(np.zeros((2, 2)), float("inf"))


def test_symbols_outside_the_grammar_are_not_read_as_masked():
    X, _, grammar = make_hierarchical_sequences(4, 3, 3, random_state=0)
    X_masked, mask = mask_leaves(X, 3, random_state=1)
    with pytest.raises(ValueError, match=r"X symbols must be in 0..2, got range 0..3 \(symbol 3 is the mask token"):
        hierarchical_bp(X_masked, grammar)
    root, leaf = hierarchical_bp(X_masked, grammar, mask_token=3)
    assert root.shape == (4, 3) and np.allclose(leaf.sum(-1), 1)
    with pytest.raises(ValueError, match="mask_token must be the grammar's mask symbol n_symbols=3"):
        hierarchical_bp(X_masked, grammar, mask_token=5)
