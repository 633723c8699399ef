"""The seed papers' testbeds: data sets with their oracles, the papers' models and the attention energy.

Kept apart from the attention layers so that ``import attention_kernels`` stays light (the testbeds pull in
scikit-learn's data utilities and the model zoo); ``attention_kernels.testbeds`` is imported on first use.

>>> from attention_kernels.testbeds import datasets
>>> grammar = datasets.make_hierarchical_grammar(n_symbols=4, random_state=0)
>>> grammar.n_symbols
4
"""

from . import datasets, energy, models

__all__ = ["datasets", "energy", "models"]
