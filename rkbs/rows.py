"""Training rows read block by block: in-memory tensors, numpy arrays and memory maps, or chunk iterables.

The large-n solvers (:mod:`rkbs.solvers.nystroem`) make several passes over the rows and never hold more than
one block of them on the device, so the data may live on disk (``numpy.load(..., mmap_mode="r")``) or be
produced chunk by chunk (:class:`RowChunks`, e.g. from a Parquet or HDF5 reader).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

__all__ = ["RowChunks", "RowSource", "as_row_source"]

# Rows read from a numpy array or memory map at a time (then split into kernel blocks).
_CHUNK_ROWS = 1 << 16


def _check_chunk(X: Any, y: Any, n_features: int | None) -> tuple[np.ndarray | torch.Tensor, np.ndarray | None]:
    if not isinstance(X, torch.Tensor):
        X = np.asarray(X)
        if X.dtype.kind not in "fiub":
            raise ValueError(f"X chunks must be numeric, got dtype {X.dtype}")
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X chunks must be non-empty 2-d arrays, got shape {tuple(X.shape)}")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"X chunks must all have {n_features} features, got one with {X.shape[1]}")
    if y is not None:
        y = np.asarray(y, dtype=np.float64)
        y = y.reshape(y.shape[0], -1) if y.ndim > 0 else y
        if y.ndim != 2 or y.shape[0] != X.shape[0]:
            raise ValueError(f"a chunk has {X.shape[0]} rows of X but y of shape {y.shape}")
        if not np.isfinite(y).all():
            raise ValueError("y contains NaN or infinity")
    return X, y


class RowSource:
    """Rows ``(X, Z)`` read in chunks; the base of the sources below.

    Subclasses implement :meth:`chunks`, an iterator (restartable: each call starts a new pass) of pairs of an
    ``(c, d)`` array or tensor and the matching ``(c, k)`` float64 targets (or None when there are none).
    """

    n: int
    n_features: int
    n_targets: int

    def chunks(self) -> Iterator[tuple[np.ndarray | torch.Tensor, np.ndarray | None]]:
        raise NotImplementedError

    def blocks(self, rows: int, device: torch.device, dtype: torch.dtype,
               with_targets: bool = True) -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None]]:
        """``(start, X_block, Z_block)`` with at most ``rows`` rows each, on ``device`` in ``dtype`` (targets in
        float64); ``start`` is the index of the block's first row."""
        start = 0
        for X, Z in self.chunks():
            for i in range(0, X.shape[0], rows):
                Xb = X[i : i + rows]
                Xb = (Xb.to(device=device, dtype=dtype) if isinstance(Xb, torch.Tensor)
                      else torch.tensor(np.asarray(Xb), dtype=dtype, device=device))  # a block copy
                # tensors come checked from the estimators; a per-block check would sync a GPU every block
                if not isinstance(X, torch.Tensor) and not bool(torch.isfinite(Xb).all()):
                    raise ValueError("X contains NaN or infinity")
                Zb = None
                if with_targets and Z is not None:
                    Zb = torch.tensor(np.asarray(Z[i : i + rows]), dtype=torch.float64, device=device)
                yield start + i, Xb, Zb
            start += X.shape[0]

    def take(self, indices: np.ndarray) -> np.ndarray:
        """The rows at the sorted local ``indices`` as a float64 array, in one pass."""
        out = np.empty((len(indices), self.n_features))
        start, pos = 0, 0
        for X, _ in self.chunks():
            stop = start + X.shape[0]
            end = pos + int(np.searchsorted(indices[pos:], stop))
            if end > pos:
                sel = indices[pos:end] - start
                rows = X[torch.as_tensor(sel)] if isinstance(X, torch.Tensor) else np.asarray(X[sel])
                out[pos:end] = rows.double().cpu().numpy() if isinstance(rows, torch.Tensor) else rows
            pos, start = end, stop
        return out


class _ArrayRows(RowSource):
    """An in-memory array, a numpy memory map or a tensor, read ``_CHUNK_ROWS`` rows at a time."""

    def __init__(self, X: Any, Z: np.ndarray | None):
        self.X, self.Z = X, Z
        self.n, self.n_features = X.shape
        self.n_targets = 0 if Z is None else Z.shape[1]

    def chunks(self):
        step = self.n if isinstance(self.X, torch.Tensor) else _CHUNK_ROWS
        for i in range(0, self.n, step):
            yield self.X[i : i + step], None if self.Z is None else self.Z[i : i + step]


class RowChunks(RowSource):
    """Training rows produced chunk by chunk, for data that does not fit in memory.

    Parameters
    ----------
    factory : callable
        Called with no argument at the start of every pass over the data; returns an iterable of ``X`` chunks
        (2-d arrays with the same number of columns) or of ``(X, y)`` pairs. The passes must yield the same
        rows in the same order.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(1000, 3)), rng.normal(size=1000)
    >>> rows = RowChunks(lambda: ((X[i:i + 300], y[i:i + 300]) for i in range(0, 1000, 300)))
    >>> rows.n, rows.n_features, rows.n_targets
    (1000, 3, 1)
    """

    def __init__(self, factory: Callable[[], Iterable[Any]]):
        if not callable(factory):
            raise TypeError(f"factory must be a callable returning an iterable of chunks, got "
                            f"{type(factory).__name__}; wrap a list in a lambda")
        self.factory = factory
        n, n_features, n_targets = 0, None, None
        for X, y in self._pairs():
            n += X.shape[0]
            n_features = X.shape[1]
            k = 0 if y is None else y.shape[1]
            if n_targets is not None and k != n_targets:
                raise ValueError("every chunk must have the same number of targets (or none)")
            n_targets = k
        if n == 0:
            raise ValueError("factory yielded no rows")
        self.n, self.n_features, self.n_targets = n, n_features, n_targets

    def _pairs(self):
        n_features = getattr(self, "n_features", None)
        for item in self.factory():
            X, y = item if isinstance(item, tuple) else (item, None)
            X, y = _check_chunk(X, y, n_features)
            n_features = X.shape[1]
            yield X, y

    def chunks(self):
        return self._pairs()


def as_row_source(X: Any, Z: np.ndarray | None = None) -> RowSource:
    """A :class:`RowSource` for ``X`` (a RowChunks is returned as it is; arrays, memory maps and tensors are
    wrapped without a copy) with targets ``Z`` of shape (n, k)."""
    if isinstance(X, RowSource):
        if Z is not None:
            raise ValueError("y must be None when X is a RowChunks: its chunks carry the targets")
        return X
    if Z is not None and Z.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {Z.shape[0]}")
    return _ArrayRows(X, Z)
