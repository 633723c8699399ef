"""Seed-paper testbeds, each with its oracle (scikit-learn ``make_*`` naming; numpy outputs)."""

from .belief_propagation import hierarchical_bp
from .incontext import (
    GaussianTaskPrior,
    TreeTaskPrior,
    bayes_optimal_prediction,
    make_incontext_regression,
    make_tree_task_prior,
    ridge_prediction,
)
from .hierarchical import (
    HierarchicalGrammar,
    make_hierarchical_grammar,
    make_hierarchical_sequences,
    mask_leaves,
)
from .recall import make_associative_recall
from .subspace import make_subspace_tokens, subspace_snr
from .text import (
    STDLIB_TEXT_FILES,
    TEXT_VOCABULARY,
    TextCorpus,
    decode_text,
    encode_text,
    load_stdlib_text,
    make_char_windows,
)

__all__ = [
    "GaussianTaskPrior",
    "TreeTaskPrior",
    "bayes_optimal_prediction",
    "make_incontext_regression",
    "make_tree_task_prior",
    "ridge_prediction",
    "HierarchicalGrammar",
    "hierarchical_bp",
    "make_hierarchical_grammar",
    "make_hierarchical_sequences",
    "mask_leaves",
    "make_subspace_tokens",
    "subspace_snr",
    "make_associative_recall",
    "STDLIB_TEXT_FILES",
    "TEXT_VOCABULARY",
    "TextCorpus",
    "decode_text",
    "encode_text",
    "load_stdlib_text",
    "make_char_windows",
]
