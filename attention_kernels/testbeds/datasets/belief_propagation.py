"""Exact belief propagation for the filtered hierarchical model, vectorized over a batch of sequences.

The filtered model is a tree: the root, the ``2**k`` nodes at depth ``k`` (each attached to the root through
its path matrix ``P_j``), and full binary subtrees below them. Inside messages run up from the leaves to depth
``k``; the root combines them; outside messages run back down to the leaves. Messages are renormalized at
every level (posteriors are ratios) and the product over the ``2**k`` top nodes is taken in log space.
Cost: ``O(n * 2**depth * q**3)``.
"""

from __future__ import annotations

import numpy as np

from ._validation import check_int
from .hierarchical import HierarchicalGrammar, _check_leaves

__all__ = ["hierarchical_bp"]


def _normalize(msg: np.ndarray) -> np.ndarray:
    total = msg.sum(axis=-1, keepdims=True)
    if np.any(total <= 0):
        # only reachable when some sequence cannot be produced by the grammar
        raise ValueError("X contains a sequence with zero probability under the grammar at this filter_level")
    return msg / total


def hierarchical_bp(X, grammar: HierarchicalGrammar, filter_level: int = 0, mask=None, mask_token=None):
    """Exact root and leaf posteriors under the hierarchical model filtered at ``filter_level``.

    Parameters
    ----------
    X : array-like of int, shape (n_samples, 2**depth)
        Leaf symbols in ``0..q - 1``, and ``mask_token`` at masked (unobserved) leaves.
    grammar : HierarchicalGrammar
        The grammar that generated the data.
    filter_level : int, default=0
        Filtering level ``k`` in ``0..depth`` of the model assumed by the inference.
    mask : array-like of bool, shape (n_samples, 2**depth), optional
        Extra unobserved positions (True = masked), combined with the mask tokens in ``X``.
    mask_token : int, optional
        The symbol that marks a masked leaf in ``X``: ``q`` for the output of :func:`mask_leaves`
        (``mask_token=grammar.n_symbols``). Without it, every symbol of ``X`` must belong to the grammar, so that
        data from another alphabet is not silently read as masked.

    Returns
    -------
    root_posterior : ndarray of shape (n_samples, q)
        ``P(root | observed leaves)``; its argmax is the Bayes-optimal root classifier.
    leaf_posterior : ndarray of shape (n_samples, 2**depth, q)
        ``P(x_j | observed leaves)`` at every leaf (one-hot at observed leaves); at a masked leaf its argmax is
        the Bayes-optimal masked-token prediction.
    """
    if not isinstance(grammar, HierarchicalGrammar):
        raise TypeError(f"grammar must be a HierarchicalGrammar, got {type(grammar).__name__}")
    q = grammar.n_symbols
    if mask_token is not None:
        mask_token = check_int(mask_token, "mask_token")
        if mask_token != q:
            raise ValueError(f"mask_token must be the grammar's mask symbol n_symbols={q}, got {mask_token}")
    X = _check_leaves(X, q, allow_mask=mask_token is not None)
    n, n_leaves = X.shape
    depth = n_leaves.bit_length() - 1
    k = check_int(filter_level, "filter_level")
    if not 0 <= k <= depth:
        raise ValueError(f"filter_level must be in 0..depth = 0..{depth}, got {k}")
    hidden = X == q
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != X.shape:
            raise ValueError(f"mask must have the shape of X {X.shape}, got {mask.shape}")
        if mask.dtype != bool:
            raise TypeError(f"mask must be boolean, got dtype {mask.dtype}")
        hidden = hidden | mask

    M = grammar.transitions
    # evidence at the leaves: one-hot for observed symbols, uniform for masked ones
    leaf_evidence = np.where(hidden[..., None], 1.0, np.eye(q)[np.minimum(X, q - 1)])

    # upward (inside) messages, levels depth .. k; inside[d] has shape (n, 2**d, q)
    inside = {depth: leaf_evidence / leaf_evidence.sum(-1, keepdims=True)}
    for d in range(depth - 1, k - 1, -1):
        child = inside[d + 1]
        left, right = child[:, 0::2], child[:, 1::2]
        inside[d] = _normalize(np.einsum("abc,nib,nic->nia", M, left, right, optimize=True))

    # across the filtered top: mu_j(a) = sum_b P_j[a, b] inside_j(b); root ~ prior * prod_j mu_j
    paths = grammar.path_matrices(k)  # (2^k, q, q)
    with np.errstate(divide="ignore"):
        log_mu = np.log(np.einsum("jab,njb->nja", paths, inside[k]))  # (n, 2^k, q)
    log_root = log_mu.sum(axis=1)
    root_posterior = _softmax_log(log_root)

    # downward (outside) messages: at depth k, out_j(b) ~ sum_a [prior(a) prod_{j' != j} mu_j'(a)] P_j[a, b]
    exclusive = _leave_one_out_sums(log_mu)  # (n, 2^k, q), uniform root prior drops out
    outside = _normalize(np.einsum("nja,jab->njb", _softmax_log(exclusive), paths))
    for d in range(k, depth):
        child = inside[d + 1]
        left, right = child[:, 0::2], child[:, 1::2]
        out_left = np.einsum("nia,abc,nic->nib", outside, M, right, optimize=True)
        out_right = np.einsum("nia,abc,nib->nic", outside, M, left, optimize=True)
        outside = _normalize(np.stack([out_left, out_right], axis=2).reshape(n, -1, q))
    leaf_posterior = _normalize(outside * leaf_evidence)
    return root_posterior, leaf_posterior


def _softmax_log(log_p: np.ndarray) -> np.ndarray:
    top = log_p.max(axis=-1, keepdims=True)
    if np.any(~np.isfinite(top)):
        raise ValueError("X contains a sequence with zero probability under the grammar at this filter_level")
    p = np.exp(log_p - top)
    return p / p.sum(axis=-1, keepdims=True)


def _leave_one_out_sums(log_mu: np.ndarray) -> np.ndarray:
    """``sum_{j' != j} log_mu[:, j']`` by prefix and suffix sums (no ``-inf - -inf``)."""
    zeros = np.zeros_like(log_mu[:, :1])
    prefix = np.concatenate([zeros, np.cumsum(log_mu, axis=1)[:, :-1]], axis=1)
    suffix = np.concatenate([np.cumsum(log_mu[:, ::-1], axis=1)[:, ::-1][:, 1:], zeros], axis=1)
    return prefix + suffix
