"""Whether Triton runs in its interpreter: the one place the library reads ``TRITON_INTERPRET``."""

from __future__ import annotations

import os

__all__ = ["interpreting"]


def interpreting() -> bool:
    """True when ``TRITON_INTERPRET=1``: Triton kernels then run on CPU tensors through numpy (for tests).

    Triton reads the variable when a kernel is defined, so it must be set before ``triton_ops`` launches
    anything (``tests/conftest.py`` sets it before any import).
    """
    return os.environ.get("TRITON_INTERPRET", "0") == "1"
