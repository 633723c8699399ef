"""Seed-paper testbeds, each with its oracle (scikit-learn ``make_*`` naming; numpy outputs)."""

from .belief_propagation import hierarchical_bp
from .hierarchical import (
    HierarchicalGrammar,
    make_hierarchical_grammar,
    make_hierarchical_sequences,
    mask_leaves,
)

__all__ = [
    "HierarchicalGrammar",
    "hierarchical_bp",
    "make_hierarchical_grammar",
    "make_hierarchical_sequences",
    "mask_leaves",
]
