"""In-context regression data and its Bayes-optimal predictor."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from attention_kernels.testbeds.datasets import (
    GaussianTaskPrior,
    bayes_optimal_prediction,
    make_incontext_regression,
    make_tree_task_prior,
    ridge_prediction,
)


def test_shapes_and_labels():
    X, y, w, prior = make_incontext_regression(7, 5, 3, noise=0.0, random_state=0)
    assert X.shape == (7, 6, 3) and y.shape == (7, 6) and w.shape == (7, 3)
    np.testing.assert_allclose(y, np.einsum("tnd,td->tn", X, w))
    assert isinstance(prior, GaussianTaskPrior)


def test_gaussian_bayes_equals_sklearn_ridge():
    noise = 0.3
    X, y, _, prior = make_incontext_regression(6, 9, 4, noise=noise, random_state=1)
    pred = bayes_optimal_prediction(X[:, :-1], y[:, :-1], X[:, -1], prior, noise)
    for t in range(len(X)):
        ridge = Ridge(alpha=noise**2, fit_intercept=False).fit(X[t, :-1], y[t, :-1])
        np.testing.assert_allclose(pred[t], ridge.predict(X[t, -1:])[0], rtol=1e-10)


def test_gaussian_bayes_mse_equals_ridge_mse():
    noise = 0.5
    X, y, _, prior = make_incontext_regression(4000, 6, 4, noise=noise, random_state=2)
    bayes = bayes_optimal_prediction(X[:, :-1], y[:, :-1], X[:, -1], prior, noise)
    ridge = ridge_prediction(X[:, :-1], y[:, :-1], X[:, -1], alpha=noise**2 / prior.variance)
    np.testing.assert_allclose(np.mean((bayes - y[:, -1]) ** 2), np.mean((ridge - y[:, -1]) ** 2), rtol=1e-12)


@pytest.mark.parametrize("n_context", [2, 6])
def test_tree_bayes_beats_ridge_well_outside_monte_carlo_error(n_context):
    noise = 0.25
    prior = make_tree_task_prior(6, tree_depth=2, branching=3, jitter=0.1, random_state=3)
    X, y, _, _ = make_incontext_regression(4000, n_context, 6, prior=prior, noise=noise, random_state=4)
    bayes = bayes_optimal_prediction(X[:, :-1], y[:, :-1], X[:, -1], prior, noise)
    ridge = ridge_prediction(X[:, :-1], y[:, :-1], X[:, -1], alpha=noise**2 / prior.variance)
    gap = (ridge - y[:, -1]) ** 2 - (bayes - y[:, -1]) ** 2
    standard_error = gap.std(ddof=1) / np.sqrt(len(gap))
    assert gap.mean() > 10 * standard_error


def test_tree_bayes_matches_direct_mixture_posterior():
    """Check the vectorized mixture against an explicit per-leaf posterior in the weight space."""
    noise = 0.4
    prior = make_tree_task_prior(3, tree_depth=1, branching=4, jitter=0.3, random_state=5)
    X, y, _, _ = make_incontext_regression(3, 4, 3, prior=prior, noise=noise, random_state=6)
    pred = bayes_optimal_prediction(X[:, :-1], y[:, :-1], X[:, -1], prior, noise)
    s2 = prior.jitter**2
    for t in range(3):
        A, b = X[t, :-1], y[t, :-1]
        precision = A.T @ A / noise**2 + np.eye(3) / s2
        log_ev, means = [], []
        for c in prior.centers:
            cov = s2 * A @ A.T + noise**2 * np.eye(4)
            r = b - A @ c
            log_ev.append(-0.5 * r @ np.linalg.solve(cov, r))
            means.append(np.linalg.solve(precision, A.T @ b / noise**2 + c / s2))
        weights = np.exp(np.array(log_ev) - max(log_ev))
        weights /= weights.sum()
        np.testing.assert_allclose(pred[t], X[t, -1] @ (weights @ np.array(means)), rtol=1e-9)


def test_zero_context_predicts_prior_mean():
    prior = make_tree_task_prior(2, tree_depth=1, branching=2, random_state=0)
    X, y, _, _ = make_incontext_regression(5, 0, 2, prior=prior, random_state=0)
    pred = bayes_optimal_prediction(X[:, :-1], y[:, :-1], X[:, -1], prior, 0.25)
    np.testing.assert_allclose(pred, X[:, -1] @ prior.centers.mean(axis=0))


def test_tree_prior_has_unit_second_moment_by_default():
    prior = make_tree_task_prior(4, tree_depth=3, branching=2, jitter=0.2, random_state=0)
    assert prior.centers.shape == (8, 4)
    assert len(prior.level_scales) == 3
    np.testing.assert_allclose(np.sum(np.square(prior.level_scales)) + prior.jitter**2, 1.0)


def test_bad_input_messages():
    with pytest.raises(ValueError, match="prior must be 'gaussian', 'tree'"):
        make_incontext_regression(5, 3, 2, prior="laplace")
    with pytest.raises(ValueError, match="noise must be >= 0"):
        make_incontext_regression(5, 3, 2, noise=-1.0)
    with pytest.raises(ValueError, match="n_context must be >= 0"):
        make_incontext_regression(5, -1, 2)
    with pytest.raises(ValueError, match="does not match dim"):
        make_incontext_regression(5, 3, 2, prior=GaussianTaskPrior(3))
    with pytest.raises(TypeError, match="only apply to prior='tree'"):
        make_incontext_regression(5, 3, 2, prior="gaussian", branching=3)
    with pytest.raises(ValueError, match="level_scales must have tree_depth=2 entries"):
        make_tree_task_prior(3, tree_depth=2, level_scales=[1.0])
    with pytest.raises(ValueError, match="tree_depth must be >= 1"):
        make_tree_task_prior(3, tree_depth=0)
    X, y, _, prior = make_incontext_regression(4, 3, 2, random_state=0)
    with pytest.raises(ValueError, match="y_context must have shape"):
        bayes_optimal_prediction(X[:, :-1], y[:, :-2], X[:, -1], prior, 0.25)
    with pytest.raises(ValueError, match="x_query must have shape"):
        bayes_optimal_prediction(X[:, :-1], y[:, :-1], X[:-1, -1], prior, 0.25)
    with pytest.raises(ValueError, match="X_context must be 3-dimensional"):
        bayes_optimal_prediction(X[0], y[:, :-1], X[:, -1], prior, 0.25)
    with pytest.raises(ValueError, match="noise must be > 0"):
        bayes_optimal_prediction(X[:, :-1], y[:, :-1], X[:, -1], prior, 0.0)
    with pytest.raises(ValueError, match="does not match X_context's dim"):
        bayes_optimal_prediction(X[:, :-1], y[:, :-1], X[:, -1], GaussianTaskPrior(5), 0.25)
    with pytest.raises(TypeError, match="prior must be a GaussianTaskPrior or TreeTaskPrior"):
        bayes_optimal_prediction(X[:, :-1], y[:, :-1], X[:, -1], "gaussian", 0.25)
    bad = X[:, :-1].copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="must not contain NaN"):
        ridge_prediction(bad, y[:, :-1], X[:, -1], alpha=1.0)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        ridge_prediction(X[:, :-1], y[:, :-1], X[:, -1], alpha=0.0)
