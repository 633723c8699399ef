"""Hierarchical filtering (Garnier-Brun, Mezard, Moscato & Saglietti): tree-structured sequences.

A full binary tree of depth ``l`` carries symbols in ``{0, .., q - 1}``; the root is uniform and every node
emits an ordered pair of children from ``M[parent]`` (the grammar). Filtering at level ``k`` replaces the top
``k`` levels by independent draws of the depth-``k`` nodes given the root, which keeps every single-node
marginal ``P(x_j | root)`` and removes the correlations created above depth ``k``. The exact posterior under
the filtered model is computed by :func:`hierarchical_bp` (module ``hierarchical_bp``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.utils import check_random_state

from ._validation import check_float, check_int

__all__ = [
    "HierarchicalGrammar",
    "make_hierarchical_grammar",
    "make_hierarchical_sequences",
    "mask_leaves",
]

MIN_SYMBOLS = 2


@dataclass(frozen=True)
class HierarchicalGrammar:
    """Transition tensor of the binary tree process.

    Parameters
    ----------
    transitions : ndarray of shape (q, q, q)
        ``transitions[a, b, c] = P(children = (b, c) | parent = a)``; each ``transitions[a]`` sums to one.

    Attributes
    ----------
    n_symbols : int
        The alphabet size ``q``.
    left, right : ndarray of shape (q, q)
        One-step marginals ``M^L[a, b] = sum_c M[a, b, c]`` and ``M^R[a, c] = sum_b M[a, b, c]``.
    """

    transitions: np.ndarray

    def __post_init__(self) -> None:
        m = np.asarray(self.transitions, dtype=np.float64)
        if m.ndim != 3 or not (m.shape[0] == m.shape[1] == m.shape[2]):
            raise ValueError(f"transitions must have shape (q, q, q), got {m.shape}")
        if m.shape[0] < MIN_SYMBOLS:
            raise ValueError(f"transitions needs n_symbols >= {MIN_SYMBOLS}, got {m.shape[0]}")
        if not np.all(np.isfinite(m)) or np.any(m < 0):
            raise ValueError("transitions must be finite and non-negative")
        sums = m.reshape(m.shape[0], -1).sum(axis=1)
        if not np.allclose(sums, 1.0, atol=1e-8):
            raise ValueError(f"transitions[a] must sum to 1 for every parent a, got sums {sums}")
        m = m.copy()
        m.setflags(write=False)
        object.__setattr__(self, "transitions", m)

    @property
    def n_symbols(self) -> int:
        return self.transitions.shape[0]

    @property
    def left(self) -> np.ndarray:
        return self.transitions.sum(axis=2)

    @property
    def right(self) -> np.ndarray:
        return self.transitions.sum(axis=1)

    def path_matrices(self, level: int) -> np.ndarray:
        """Closed-form ``P(x_j = b | root = a)`` for the ``2**level`` nodes at depth ``level``.

        Parameters
        ----------
        level : int
            Depth of the nodes (0 is the root).

        Returns
        -------
        ndarray of shape (2**level, q, q)
            Entry ``[j, a, b]``: the product ``M^{s_1} ... M^{s_level}`` along the path to node ``j``, whose
            turns ``s_i`` are the binary digits of ``j`` (most significant first; 0 = left).
        """
        level = check_int(level, "level", minimum=0)
        paths = np.eye(self.n_symbols)[None]
        for _ in range(level):
            # heap order: the children of node j are 2j (left) and 2j + 1 (right)
            paths = np.stack([paths @ self.left, paths @ self.right], axis=1).reshape(-1, *paths.shape[1:])
        return paths


def make_hierarchical_grammar(n_symbols: int = 4, sigma: float = 1.0, random_state=None) -> HierarchicalGrammar:
    """Draw a random grammar in which every ordered pair of children has exactly one possible parent.

    All ``q**2`` ordered pairs are shuffled and each parent receives a disjoint block of ``q`` of them, with
    logits ``sigma * N(0, 1)`` on its block and ``-inf`` elsewhere (softmax per parent). Because the blocks are
    disjoint, the parent is a function of its children, so at filtering level 0 the root is a deterministic
    function of the leaves.

    Parameters
    ----------
    n_symbols : int, default=4
        Alphabet size ``q``. Any ``q >= 1`` admits the disjoint-block construction, but ``q = 1`` yields a
        single possible sequence and a constant root (nothing to infer), so ``q >= 2`` is required.
    sigma : float, default=1.0
        Spread of the logits; 0 gives uniform probabilities over each parent's block.
    random_state : int, RandomState instance or None
        Seed, as in scikit-learn.

    Returns
    -------
    HierarchicalGrammar
    """
    q = check_int(n_symbols, "n_symbols")
    if q < MIN_SYMBOLS:
        raise ValueError(
            f"n_symbols must be >= {MIN_SYMBOLS} (with one symbol every sequence and root are identical), got {q}"
        )
    sigma = check_float(sigma, "sigma", minimum=0.0)
    rng = check_random_state(random_state)
    pairs = rng.permutation(q * q).reshape(q, q)  # row a: the flat indices b * q + c owned by parent a
    logits = np.full((q, q * q), -np.inf)
    np.put_along_axis(logits, pairs, sigma * rng.standard_normal((q, q)), axis=1)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return HierarchicalGrammar(probs.reshape(q, q, q))


def _sample_categorical(probs: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """One draw per row of ``probs`` (shape (..., m)) by inverse-CDF sampling."""
    cdf = np.cumsum(probs, axis=-1)
    u = rng.random_sample(probs.shape[:-1] + (1,)) * cdf[..., -1:]
    return np.minimum((u >= cdf).sum(axis=-1), probs.shape[-1] - 1)


def make_hierarchical_sequences(
    n_samples: int = 1000,
    depth: int = 4,
    n_symbols: int | None = None,
    filter_level: int = 0,
    sigma: float = 1.0,
    grammar: HierarchicalGrammar | None = None,
    random_state=None,
):
    """Sample leaf sequences of the (filtered) hierarchical model.

    Parameters
    ----------
    n_samples : int, default=1000
        Number of sequences.
    depth : int, default=4
        Tree depth ``l >= 1``; each sequence has ``2**depth`` leaves.
    n_symbols : int, optional
        Alphabet size ``q >= 2`` of a freshly drawn grammar (default 4); with ``grammar`` given it may be
        omitted, and must match the grammar when passed.
    filter_level : int, default=0
        Filtering level ``k`` in ``0..depth``: nodes at depth ``k`` are drawn independently given the root;
        0 is the full tree model, ``depth`` makes the leaves i.i.d. given the root.
    sigma : float, default=1.0
        Logit spread of a freshly drawn grammar (see :func:`make_hierarchical_grammar`).
    grammar : HierarchicalGrammar, optional
        Reuse a grammar (e.g. the training grammar for a test set). Drawn from ``random_state`` when None.
    random_state : int, RandomState instance or None
        Seed, as in scikit-learn.

    Returns
    -------
    X : ndarray of shape (n_samples, 2**depth), dtype int64
        Leaf symbols, left to right.
    y : ndarray of shape (n_samples,), dtype int64
        Root symbols (the classification target).
    grammar : HierarchicalGrammar
        The grammar used.
    """
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    depth = check_int(depth, "depth", minimum=1)
    filter_level = check_int(filter_level, "filter_level")
    if not 0 <= filter_level <= depth:
        raise ValueError(f"filter_level must be in 0..depth = 0..{depth}, got {filter_level}")
    rng = check_random_state(random_state)
    if grammar is None:
        grammar = make_hierarchical_grammar(4 if n_symbols is None else n_symbols, sigma, rng)
    else:
        if not isinstance(grammar, HierarchicalGrammar):
            raise TypeError(f"grammar must be a HierarchicalGrammar, got {type(grammar).__name__}")
        if n_symbols is not None and check_int(n_symbols, "n_symbols") != grammar.n_symbols:
            raise ValueError(f"n_symbols={n_symbols} does not match the grammar's {grammar.n_symbols} symbols")
    q = grammar.n_symbols

    roots = rng.randint(q, size=n_samples)
    paths = grammar.path_matrices(filter_level)  # (2^k, q, q)
    nodes = _sample_categorical(paths[:, roots].transpose(1, 0, 2), rng)  # (n, 2^k)
    flat = grammar.transitions.reshape(q, q * q)
    for _ in range(depth - filter_level):
        pair = _sample_categorical(flat[nodes], rng)
        nodes = np.stack([pair // q, pair % q], axis=-1).reshape(n_samples, -1)
    return nodes.astype(np.int64), roots.astype(np.int64), grammar


def mask_leaves(X, n_symbols: int, n_masked: int = 1, random_state=None):
    """Replace ``n_masked`` random leaves per sequence by the mask token ``n_symbols``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_leaves)
        Leaf symbols in ``0..n_symbols - 1``.
    n_symbols : int
        Alphabet size; the mask token is ``n_symbols``.
    n_masked : int, default=1
        Masked positions per sequence, in ``1..n_leaves``.
    random_state : int, RandomState instance or None
        Seed, as in scikit-learn.

    Returns
    -------
    X_masked : ndarray of shape (n_samples, n_leaves), dtype int64
        Copy of ``X`` with the mask token at the masked positions.
    mask : ndarray of shape (n_samples, n_leaves), dtype bool
        True at the masked positions (the targets are ``X[mask]``).
    """
    n_symbols = check_int(n_symbols, "n_symbols", minimum=MIN_SYMBOLS)
    X = _check_leaves(X, n_symbols, allow_mask=False)
    n_masked = check_int(n_masked, "n_masked", minimum=1, maximum=X.shape[1])
    rng = check_random_state(random_state)
    order = np.argsort(rng.random_sample(X.shape), axis=1)[:, :n_masked]
    mask = np.zeros(X.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return np.where(mask, n_symbols, X), mask


def _check_leaves(X, n_symbols: int, *, allow_mask: bool) -> np.ndarray:
    """Validate an integer leaf array of shape (n, 2**depth) with symbols in range (mask token if allowed)."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-dimensional (n_samples, n_leaves), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError("X must contain at least one sequence")
    if not np.issubdtype(X.dtype, np.integer):
        raise TypeError(f"X must hold integer symbols, got dtype {X.dtype}")
    n_leaves = X.shape[1]
    if n_leaves < 2 or n_leaves & (n_leaves - 1):
        raise ValueError(f"X must have 2**depth leaves per row (depth >= 1), got {n_leaves}")
    top = n_symbols if allow_mask else n_symbols - 1
    if X.min() < 0 or X.max() > top:
        hint = "" if allow_mask or X.max() != n_symbols else (
            f" (symbol {n_symbols} is the mask token of mask_leaves: pass mask_token={n_symbols})")
        raise ValueError(f"X symbols must be in 0..{top}, got range {X.min()}..{X.max()}{hint}")
    return X.astype(np.int64)
