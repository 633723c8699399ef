"""Multi-query associative recall: ``n_pairs`` (key, value) tokens, then queries of some of the keys.

A sequence is ``k_1 v_1 k_2 v_2 ... k_n v_n q_1 ... q_m``: distinct random keys, random values, and ``m``
queries drawn (without repetition) from the sequence's keys; the target at query ``q_j`` is the value paired with
that key. The answer is always in the context, so the oracle is 100% accuracy; the task measures how many
bindings one attention layer can hold. A kernel with ``m`` features compresses the context into an ``m x d``
state, so once ``n_pairs`` outgrows ``m`` it can no longer retrieve every value (Arora et al., "Zoology", 2023).
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

from ._validation import check_int

__all__ = ["make_associative_recall"]


def make_associative_recall(
    n_samples: int = 1000,
    n_pairs: int = 16,
    n_keys: int = 64,
    n_values: int = 64,
    n_queries: int | None = None,
    random_state=None,
):
    """Sample multi-query associative-recall sequences.

    Parameters
    ----------
    n_samples : int, default=1000
        Number of sequences.
    n_pairs : int, default=16
        (key, value) pairs per sequence, at most ``n_keys`` (keys are distinct within a sequence).
    n_keys : int, default=64
        Key vocabulary; key tokens are ``0..n_keys - 1``.
    n_values : int, default=64
        Value vocabulary; value tokens are ``n_keys..n_keys + n_values - 1`` and targets are ``0..n_values - 1``.
    n_queries : int, optional
        Queries per sequence, in ``1..n_pairs`` (distinct keys of the sequence); default ``n_pairs``.
    random_state : int, RandomState instance or None
        Seed, as in scikit-learn.

    Returns
    -------
    X : ndarray of shape (n_samples, 2 * n_pairs + n_queries), dtype int64
        Token ids; the vocabulary size is ``n_keys + n_values``.
    y : ndarray of shape (n_samples, n_queries), dtype int64
        The value (``0..n_values - 1``) bound to each query's key; the query tokens are ``X[:, 2 * n_pairs:]``.

    Examples
    --------
    >>> X, y = make_associative_recall(2, n_pairs=3, n_keys=5, n_values=4, n_queries=2, random_state=0)
    >>> X.shape, y.shape
    ((2, 8), (2, 2))
    >>> keys, values = X[0, 0:6:2], X[0, 1:6:2] - 5
    >>> bool(np.all(y[0] == [values[list(keys).index(q)] for q in X[0, 6:]]))
    True
    """
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    n_keys = check_int(n_keys, "n_keys", minimum=1)
    n_values = check_int(n_values, "n_values", minimum=1)
    n_pairs = check_int(n_pairs, "n_pairs", minimum=1, maximum=n_keys)
    n_queries = n_pairs if n_queries is None else check_int(n_queries, "n_queries", minimum=1, maximum=n_pairs)
    rng = check_random_state(random_state)
    # distinct keys per sequence: the first n_pairs of a random permutation of the key vocabulary
    keys = np.argsort(rng.random_sample((n_samples, n_keys)), axis=1)[:, :n_pairs]
    values = rng.randint(n_values, size=(n_samples, n_pairs))
    asked = np.argsort(rng.random_sample((n_samples, n_pairs)), axis=1)[:, :n_queries]
    X = np.empty((n_samples, 2 * n_pairs + n_queries), dtype=np.int64)
    X[:, 0 : 2 * n_pairs : 2] = keys
    X[:, 1 : 2 * n_pairs : 2] = n_keys + values
    X[:, 2 * n_pairs :] = np.take_along_axis(keys, asked, axis=1)
    y = np.take_along_axis(values, asked, axis=1).astype(np.int64)
    return X, y
