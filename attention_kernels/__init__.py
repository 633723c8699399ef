"""attention_kernels: PyTorch attention with swappable kernels, and the models and data sets of the seed papers."""

__version__ = "0.1.0"
