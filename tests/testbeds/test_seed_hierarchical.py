"""Hierarchical filtering generator and its exact belief-propagation oracle."""

import itertools

import numpy as np
import pytest
from scipy import stats

from attention_kernels.testbeds.datasets import (
    HierarchicalGrammar,
    hierarchical_bp,
    make_hierarchical_grammar,
    make_hierarchical_sequences,
    mask_leaves,
)


def _brute_force(x, hidden, grammar, k):
    """Root and leaf posteriors by summing the filtered joint over every hidden assignment (float64)."""
    q = grammar.n_symbols
    n_leaves = len(x)
    depth = n_leaves.bit_length() - 1
    M = grammar.transitions
    paths = grammar.path_matrices(k)
    # variables: root, then the nodes at depths k..depth-1 (heap order), then the leaves
    internal = [(d, j) for d in range(k, depth) for j in range(2**d)]
    free_leaves = [j for j in range(n_leaves) if hidden[j]]
    n_free = 1 + len(internal) + len(free_leaves)
    grid = np.array(list(itertools.product(range(q), repeat=n_free)))
    root = grid[:, 0]
    value = {(d, j): grid[:, 1 + i] for i, (d, j) in enumerate(internal)}
    leaves = np.tile(np.asarray(x), (len(grid), 1))
    for i, j in enumerate(free_leaves):
        leaves[:, j] = grid[:, 1 + len(internal) + i]
    for j in range(n_leaves):
        value[(depth, j)] = leaves[:, j]
    prob = np.full(len(grid), 1.0 / q)
    for j in range(2**k):
        prob = prob * paths[j, root, value[(k, j)]]
    for d, j in internal:
        prob = prob * M[value[(d, j)], value[(d + 1, 2 * j)], value[(d + 1, 2 * j + 1)]]
    root_post = np.bincount(root, weights=prob, minlength=q)
    leaf_post = np.stack([np.bincount(leaves[:, j], weights=prob, minlength=q) for j in range(n_leaves)])
    return root_post / prob.sum(), leaf_post / prob.sum()


@pytest.mark.parametrize("depth,q", [(2, 2), (2, 3), (3, 2), (3, 3)])
def test_bp_matches_brute_force_at_every_filter_level(depth, q):
    grammar = make_hierarchical_grammar(q, sigma=1.0, random_state=depth * 10 + q)
    for k in range(depth + 1):
        X, _, _ = make_hierarchical_sequences(3, depth, q, filter_level=k, grammar=grammar, random_state=k)
        n_masked = 2 if depth == 2 else 1
        X_masked, mask = mask_leaves(X, q, n_masked=n_masked, random_state=k + 1)
        # one sequence fully observed, the others with masked leaves (mask token and mask array both used)
        X_masked[0] = X[0]
        mask[0] = False
        root, leaf = hierarchical_bp(X_masked, grammar, k, mask_token=q)
        root_via_mask, _ = hierarchical_bp(np.where(mask, X, X_masked), grammar, k, mask=mask)
        np.testing.assert_allclose(root_via_mask, root, atol=1e-12)
        for i in range(len(X)):
            expected_root, expected_leaf = _brute_force(X_masked[i], mask[i], grammar, k)
            np.testing.assert_allclose(root[i], expected_root, atol=1e-10)
            np.testing.assert_allclose(leaf[i], expected_leaf, atol=1e-10)


def test_bp_root_accuracy_is_exactly_one_at_filter_level_zero():
    X, y, grammar = make_hierarchical_sequences(2000, depth=4, n_symbols=4, filter_level=0, random_state=0)
    root, _ = hierarchical_bp(X, grammar, 0)
    assert np.mean(root.argmax(axis=1) == y) == 1.0
    # filtering removes information: accuracy strictly below one at the top level
    Xf, yf, _ = make_hierarchical_sequences(2000, 4, 4, filter_level=4, grammar=grammar, random_state=1)
    assert np.mean(hierarchical_bp(Xf, grammar, 4)[0].argmax(axis=1) == yf) < 0.9


@pytest.mark.parametrize("k", [0, 1, 3])
def test_sampled_leaf_marginals_match_closed_form(k):
    depth, q, n = 3, 3, 30000
    X, y, grammar = make_hierarchical_sequences(n, depth, q, filter_level=k, random_state=7)
    paths = grammar.path_matrices(depth)
    p_values = []
    for a in range(q):
        rows = X[y == a]
        for j in range(2**depth):
            observed = np.bincount(rows[:, j], minlength=q)
            expected = paths[j, a] * len(rows)
            keep = expected > 0
            assert observed[~keep].sum() == 0
            if keep.sum() > 1:
                p_values.append(stats.chisquare(observed[keep], expected[keep]).pvalue)
    # Bonferroni over all (root, leaf) tests at family-wise level 1e-3
    assert min(p_values) > 1e-3 / len(p_values)


@pytest.mark.parametrize("k", [2, 3])
def test_sibling_pairs_follow_the_filtered_joint(k):
    """Leaves 0 and 1 are siblings: drawn jointly from M below the filter, independently at k = depth."""
    depth, q, n = 3, 3, 30000
    X, y, grammar = make_hierarchical_sequences(n, depth, q, filter_level=k, random_state=11)
    parent_paths = grammar.path_matrices(depth - 1)[0]  # (q, q): root -> leftmost depth-2 node
    leaf_paths = grammar.path_matrices(depth)
    for a in range(q):
        rows = X[y == a]
        if k < depth:
            joint = np.einsum("b,bcd->cd", parent_paths[a], grammar.transitions)
        else:
            joint = np.outer(leaf_paths[0, a], leaf_paths[1, a])
        observed = np.bincount(rows[:, 0] * q + rows[:, 1], minlength=q * q)
        expected = joint.ravel() * len(rows)
        keep = expected > 0
        assert observed[~keep].sum() == 0
        assert stats.chisquare(observed[keep], expected[keep]).pvalue > 1e-4


def test_grammar_gives_each_pair_one_parent():
    g = make_hierarchical_grammar(5, sigma=2.0, random_state=3)
    support = g.transitions > 0
    assert np.all(support.sum(axis=0) == 1)
    assert np.all(support.reshape(5, -1).sum(axis=1) == 5)
    np.testing.assert_allclose(g.transitions.reshape(5, -1).sum(axis=1), 1.0)


def test_random_state_reproducible():
    a = make_hierarchical_sequences(50, 3, 3, 1, random_state=5)
    b = make_hierarchical_sequences(50, 3, 3, 1, random_state=np.random.RandomState(5))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].shape == (50, 8) and a[0].dtype == np.int64


def test_mask_leaves_masks_exactly_n_per_row():
    X, _, _ = make_hierarchical_sequences(20, 3, 4, random_state=0)
    Xm, mask = mask_leaves(X, 4, n_masked=3, random_state=0)
    assert np.all(mask.sum(axis=1) == 3)
    assert np.all(Xm[mask] == 4) and np.all(Xm[~mask] == X[~mask])


def test_bad_input_messages():
    with pytest.raises(ValueError, match="depth must be >= 1"):
        make_hierarchical_sequences(10, depth=0)
    with pytest.raises(TypeError, match="depth must be an integer"):
        make_hierarchical_sequences(10, depth=2.5)
    with pytest.raises(ValueError, match="filter_level must be in 0..depth"):
        make_hierarchical_sequences(10, depth=3, filter_level=4)
    with pytest.raises(ValueError, match="filter_level must be in 0..depth"):
        make_hierarchical_sequences(10, depth=3, filter_level=-1)
    with pytest.raises(ValueError, match="n_symbols must be >= 2"):
        make_hierarchical_sequences(10, depth=3, n_symbols=1)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        make_hierarchical_grammar(3, sigma=-1.0)
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        make_hierarchical_sequences(0)
    g = make_hierarchical_grammar(3, random_state=0)
    with pytest.raises(ValueError, match="does not match the grammar"):
        make_hierarchical_sequences(10, 3, n_symbols=4, grammar=g)
    with pytest.raises(ValueError, match=r"transitions must have shape \(q, q, q\)"):
        HierarchicalGrammar(np.ones((3, 3)))
    with pytest.raises(ValueError, match="must sum to 1"):
        HierarchicalGrammar(np.ones((3, 3, 3)))
    X, _, _ = make_hierarchical_sequences(5, 3, 3, grammar=g, random_state=0)
    with pytest.raises(ValueError, match="filter_level must be in 0..depth"):
        hierarchical_bp(X, g, filter_level=4)
    with pytest.raises(ValueError, match="2\\*\\*depth leaves"):
        hierarchical_bp(X[:, :6], g)
    with pytest.raises(ValueError, match="X symbols must be in 0..2"):
        hierarchical_bp(X + 2, g)
    with pytest.raises(TypeError, match="X must hold integer symbols"):
        hierarchical_bp(X.astype(float), g)
    with pytest.raises(ValueError, match="mask must have the shape of X"):
        hierarchical_bp(X, g, mask=np.zeros((5, 4), dtype=bool))
    with pytest.raises(TypeError, match="grammar must be a HierarchicalGrammar"):
        hierarchical_bp(X, g.transitions)
    with pytest.raises(ValueError, match="n_masked must be <= 8"):
        mask_leaves(X, 3, n_masked=9)
    # a grammar whose parents emit only equal pairs gives (0, 1) zero probability
    copy = np.zeros((2, 2, 2))
    copy[0, 0, 0] = copy[1, 1, 1] = 1.0
    with pytest.raises(ValueError, match="zero probability under the grammar"):
        hierarchical_bp(np.array([[0, 1, 0, 0]]), HierarchicalGrammar(copy), filter_level=0)
