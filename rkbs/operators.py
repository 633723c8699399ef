"""Matrix-free kernel operators: ``K(X, C) @ B`` and ``K(X, C)^T @ B`` computed block by block.

The Gram matrix between ``n`` inputs and ``m`` centers is never formed unless asked for: rows of ``X`` are
processed ``block_size`` at a time, so the memory is O(block_size * m). The same loop optionally row-normalizes
each block (the attention / Nadaraya-Watson form ``K / K.sum(1)``, computed through the log-kernel when the
kernel has one, so exponential kernels never overflow).

On CUDA tensors, a dot-family kernel with a fused Triton epilogue goes through
:func:`triton_ops.kernel_attention` (one "head" whose values are the coefficients); that single seam is
:func:`_fused_matmul`. Everything else, and the CPU always, uses the blockwise torch path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator

from .kernels import AttentionKernel, Kernel

__all__ = [
    "KernelOperator",
    "kernel_matmul",
    "kernel_normal_matmul",
    "kernel_gram",
    "kernel_normal_equations",
    "kernel_block",
]

# Elements of one kernel block (rows x centers); a block costs a few temporaries of this size.
_BLOCK_ELEMENTS = 1 << 21


def _rows_per_block(m: int, block_size: int | None) -> int:
    if block_size is not None:
        return max(1, int(block_size))
    return max(1, _BLOCK_ELEMENTS // max(1, m))


def check_normalizable(kernel: Kernel) -> None:
    """Refuse row normalization for kernels that can be negative (a row sum near zero is meaningless)."""
    kernel.check_normalize(True)


def kernel_block(
    kernel: Kernel, X: torch.Tensor, C: torch.Tensor, normalize: bool = False, check: bool = True
) -> torch.Tensor:
    """One block of the (optionally row-normalized) Gram matrix, checked for non-finite values.

    Parameters
    ----------
    kernel : Kernel
    X : torch.Tensor of shape (n, d_x)
    C : torch.Tensor of shape (m, d_y)
    normalize : bool, default=False
        Divide each row by its sum; exponential kernels use log-sum-exp.
    check : bool, default=True
        Raise on non-finite kernel values. Products ``K @ B`` skip it and check their (much smaller) result
        instead: a non-finite entry of K makes its output row non-finite (inf * 0 is NaN).

    Returns
    -------
    torch.Tensor of shape (n, m)
    """
    if normalize and kernel.has_log_kernel:
        logK = kernel.log_evaluate(X, C)
        if torch.isnan(logK).any() or torch.isposinf(logK).any():
            raise _non_finite_error(kernel)
        lse = torch.logsumexp(logK, dim=1, keepdim=True)
        if torch.isneginf(lse).any():
            raise ValueError(f"kernel {kernel.name!r} is zero on every center for some inputs: row sum is 0")
        return torch.exp(logK - lse)
    K = kernel.evaluate(X, C)
    if check and not bool(torch.isfinite(K).all()):
        raise _non_finite_error(kernel)
    if normalize:
        s = K.sum(1, keepdim=True)
        if bool((s <= torch.finfo(K.dtype).tiny).any()):
            raise ValueError(
                f"kernel {kernel.name!r} has a zero row sum for some inputs (no center has a positive kernel "
                "value), so normalize=True is undefined there"
            )
        K = K / s
    return K


def _checked_product(out: torch.Tensor, kernel: Kernel) -> torch.Tensor:
    """``K @ B`` after a finiteness check: an overflowing kernel entry poisons its output row (inf * 0 = nan)."""
    if not bool(torch.isfinite(out).all()):
        raise _non_finite_error(kernel)
    return out


def _non_finite_error(kernel: Kernel) -> ValueError:
    return ValueError(
        f"kernel {kernel.name!r} produced non-finite values (overflow, e.g. exp of a large dot product); "
        "standardize X or lower the kernel's scale / gamma"
    )


def _unwrap(kernel: Kernel, X: torch.Tensor, C: torch.Tensor) -> tuple[Kernel, torch.Tensor, torch.Tensor]:
    """An AttentionKernel is its base kernel on the mapped points (so the fused kernel can run it)."""
    if isinstance(kernel, AttentionKernel):
        return kernel.base, kernel.map_x(X), kernel.map_y(C)
    return kernel, X, C


def _fused_matmul(kernel: Kernel, X: torch.Tensor, C: torch.Tensor, B: torch.Tensor) -> torch.Tensor | None:
    """The fused-primitive seam: ``K(X, C) @ B`` by ``triton_ops.kernel_attention``, or None when not applicable.

    Applies to CUDA tensors of a Triton-supported dtype and a dot-family kernel with a fused epilogue. Every
    dot-family kernel is symmetric in (q, k), so the transpose product is this call with X and C swapped.
    """
    if X.device.type != "cuda" or X.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return None
    base, Xm, Cm = _unwrap(kernel, X, C)
    if base.family != "dot":
        return None
    try:
        import triton_ops
    except ImportError:
        return None
    spec = base.fused_spec(Xm.shape[-1])
    if spec is None or not triton_ops.is_available():
        return None
    out = triton_ops.kernel_attention(
        Xm[None, None].contiguous(),
        Cm[None, None].contiguous(),
        B.to(X.dtype)[None, None].contiguous(),
        spec=spec,
        normalize=False,
        precision="ieee",
    )[0, 0]
    return _checked_product(out, kernel)


def kernel_matmul(
    kernel: Kernel,
    X: torch.Tensor,
    C: torch.Tensor,
    B: torch.Tensor,
    *,
    transpose: bool = False,
    normalize: bool = False,
    block_size: int | None = None,
) -> torch.Tensor:
    """``K(X, C) @ B`` (or ``K(X, C)^T @ B`` with ``transpose=True``) without forming ``K``.

    Parameters
    ----------
    kernel : Kernel
    X : torch.Tensor of shape (n, d_x)
        Query-side points.
    C : torch.Tensor of shape (m, d_y)
        Key-side points (centers).
    B : torch.Tensor of shape (m, k), or (n, k) with ``transpose=True``
    transpose : bool, default=False
    normalize : bool, default=False
        Use the row-normalized kernel ``K / K.sum(1)`` (rows indexed by ``X``).
    block_size : int, default=None
        Rows of ``X`` per block; ``None`` keeps a block near 2 million elements.

    Returns
    -------
    torch.Tensor of shape (n, k), or (m, k) with ``transpose=True``
    """
    n, m = X.shape[0], C.shape[0]
    if B.shape[0] != (n if transpose else m):
        raise ValueError(
            f"B has {B.shape[0]} rows but K(X, C){'^T' if transpose else ''} has "
            f"{n if transpose else m} columns"
        )
    if not normalize:
        fused = _fused_matmul(kernel, C, X, B) if transpose else _fused_matmul(kernel, X, C, B)
        if fused is not None:
            return fused.to(B.dtype)
    rows = _rows_per_block(m, block_size)
    if transpose:
        out = torch.zeros((m,) + tuple(B.shape[1:]), dtype=B.dtype, device=B.device)
        for i in range(0, n, rows):
            out += kernel_block(kernel, X[i : i + rows], C, normalize, check=False).to(B.dtype).T @ B[i : i + rows]
    else:
        out = torch.cat(
            [kernel_block(kernel, X[i : i + rows], C, normalize, check=False).to(B.dtype) @ B
             for i in range(0, n, rows)]
        )
    return _checked_product(out, kernel)


def kernel_gram(
    kernel: Kernel,
    X: torch.Tensor,
    C: torch.Tensor,
    *,
    normalize: bool = False,
    block_size: int | None = None,
) -> np.ndarray:
    """The full Gram matrix ``K(X, C)`` as a float64 numpy array, filled block by block.

    Filling a preallocated array keeps the peak at one n x m matrix plus one block's temporaries.
    """
    n, m = X.shape[0], C.shape[0]
    K = np.empty((n, m), dtype=np.float64)
    rows = _rows_per_block(m, block_size)
    for i in range(0, n, rows):
        K[i : i + rows] = kernel_block(kernel, X[i : i + rows], C, normalize).double().cpu().numpy()
    return K


def kernel_normal_equations(
    kernel: Kernel,
    X: torch.Tensor,
    C: torch.Tensor,
    Z: torch.Tensor,
    *,
    normalize: bool = False,
    block_size: int | None = None,
    row_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(A^T A, A^T Z)`` for ``A = K(X, C)``, accumulated block by block (memory O(m^2 + block * m)).

    With ``row_weights`` w of shape (n,), the weighted ``(A^T W A, A^T W Z)``.

    Returns
    -------
    AtA : numpy.ndarray of shape (m, m)
    AtZ : numpy.ndarray of shape (m, k)
    """
    m = C.shape[0]
    AtA = torch.zeros((m, m), dtype=torch.float64, device=X.device)
    AtZ = torch.zeros((m, Z.shape[1]), dtype=torch.float64, device=X.device)
    rows = _rows_per_block(m, block_size)
    w = None if row_weights is None else torch.as_tensor(row_weights, dtype=torch.float64, device=X.device)
    for i in range(0, X.shape[0], rows):
        A = kernel_block(kernel, X[i : i + rows], C, normalize).double()
        Aw = A if w is None else A * w[i : i + rows, None]
        AtA += Aw.T @ A
        AtZ += Aw.T @ Z[i : i + rows].double()
    return AtA.cpu().numpy(), AtZ.cpu().numpy()


def kernel_normal_matmul(
    kernel: Kernel,
    X: torch.Tensor,
    C: torch.Tensor,
    V: torch.Tensor,
    *,
    normalize: bool = False,
    block_size: int | None = None,
) -> torch.Tensor:
    """``K(X, C)^T (K(X, C) @ V)`` in one pass: each kernel block is evaluated once, not twice.

    Parameters
    ----------
    kernel : Kernel
    X : torch.Tensor of shape (n, d_x)
    C : torch.Tensor of shape (m, d_y)
    V : torch.Tensor of shape (m, k)
    normalize : bool, default=False
    block_size : int, default=None

    Returns
    -------
    torch.Tensor of shape (m, k)
    """
    rows = _rows_per_block(C.shape[0], block_size)
    out = torch.zeros_like(V)
    for i in range(0, X.shape[0], rows):
        A = kernel_block(kernel, X[i : i + rows], C, normalize).to(V.dtype)
        out += A.T @ (A @ V)
    return out


class KernelOperator(LinearOperator):
    """``K(X, C)`` as a :class:`scipy.sparse.linalg.LinearOperator`, applied block by block in torch.

    ``matvec`` / ``matmat`` compute ``K v``, ``rmatvec`` / ``rmatmat`` compute ``K^T v``; numpy in, float64
    numpy out, with the torch computation on the device and dtype of ``X``.

    Parameters
    ----------
    kernel : Kernel
    X : torch.Tensor of shape (n, d_x)
    C : torch.Tensor of shape (m, d_y), default=None
        ``None`` means ``X`` (a square operator).
    normalize : bool, default=False
        Row-normalized kernel (attention form).
    block_size : int, default=None
        Rows per block.

    Examples
    --------
    >>> import torch
    >>> from rkbs.kernels import get_kernel
    >>> X = torch.randn(500, 3, dtype=torch.float64)
    >>> op = KernelOperator(get_kernel("rbf"), X)
    >>> op.shape
    (500, 500)
    """

    def __init__(
        self,
        kernel: Kernel,
        X: torch.Tensor,
        C: torch.Tensor | None = None,
        *,
        normalize: bool = False,
        block_size: int | None = None,
    ):
        self.kernel = kernel
        self.X = X
        self.C = X if C is None else C
        self.normalize = normalize
        self.block_size = block_size
        if normalize:
            check_normalizable(kernel)
        super().__init__(dtype=np.float64, shape=(X.shape[0], self.C.shape[0]))

    def _apply(self, v: np.ndarray, transpose: bool) -> np.ndarray:
        V = torch.tensor(np.asarray(v), dtype=self._vector_dtype, device=self.X.device)  # a copy: v may be read-only
        one_d = V.ndim == 1
        out = kernel_matmul(
            self.kernel,
            self.X,
            self.C,
            V[:, None] if one_d else V,
            transpose=transpose,
            normalize=self.normalize,
            block_size=self.block_size,
        )
        out = out.double().cpu().numpy()
        return out[:, 0] if one_d else out

    @property
    def _vector_dtype(self) -> torch.dtype:
        # float32 points on the CPU: the kernel blocks are float32, but the vectors they multiply stay float64,
        # so a Krylov solve on the (fixed) float32 kernel is not stalled by rounding its iterates to float32
        return torch.float64 if self.X.device.type == "cpu" else self.X.dtype

    def _matvec(self, v: Any) -> np.ndarray:
        return self._apply(np.ravel(v), False)

    def _rmatvec(self, v: Any) -> np.ndarray:
        return self._apply(np.ravel(v), True)

    def _matmat(self, V: Any) -> np.ndarray:
        return self._apply(np.asarray(V), False)

    def _rmatmat(self, V: Any) -> np.ndarray:
        return self._apply(np.asarray(V), True)

    def _adjoint(self) -> LinearOperator:
        return LinearOperator(
            dtype=np.float64, shape=(self.shape[1], self.shape[0]), matvec=self._rmatvec,
            rmatvec=self._matvec, matmat=self._rmatmat, rmatmat=self._matmat,
        )

    def normal_matvec(self, v: np.ndarray) -> np.ndarray:
        """``K^T (K v)`` with one kernel evaluation per block (the CG normal-equations operator)."""
        V = torch.as_tensor(np.ascontiguousarray(np.ravel(v)), dtype=self._vector_dtype, device=self.X.device)
        out = kernel_normal_matmul(self.kernel, self.X, self.C, V[:, None], normalize=self.normalize,
                                   block_size=self.block_size)
        return out[:, 0].double().cpu().numpy()

    def to_dense(self) -> np.ndarray:
        """The full matrix (float64 numpy), filled block by block."""
        return kernel_gram(self.kernel, self.X, self.C, normalize=self.normalize, block_size=self.block_size)
