"""The kernel base class: parameters, metadata, and the validated array-level entry points."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from sklearn.base import BaseEstimator
from triton_ops import KernelSpec, check_normalize

from ._validation import as_tensor, as_tensor_pair, check_int

__all__ = ["Kernel", "Family", "softcap_error"]

Family = str  # "dot" | "coordinate" | "feature_map"


def _softcap(u: torch.Tensor, c: float) -> torch.Tensor:
    """``c * tanh(u / c)``; in place on a fresh tensor that autograd does not track (the attention tiles)."""
    if torch.is_grad_enabled() and u.requires_grad:
        return c * torch.tanh(u / c)
    return u.div_(c).tanh_().mul_(c)


def softcap_error(kernel: "Kernel") -> str:
    """The error message for ``softcap`` with a kernel that defines no soft cap (one wording for every back end).

    Parameters
    ----------
    kernel : Kernel
        The kernel whose ``softcap_target`` is ``None``.

    Returns
    -------
    str
        The message naming the kernel, its family and the kernels that take a soft cap.

    Examples
    --------
    >>> from rkbs.kernels import get_kernel, softcap_error
    >>> "'elu'" in softcap_error(get_kernel("elu"))
    True
    """
    return (
        f"softcap caps the exponent of an exponential kernel or the argument of a dot-family kernel's outer "
        f"function, and kernel {kernel.name!r} ({kernel.family or 'no'} family) has neither; use a dot-family "
        "kernel (edp, rbf, laplacian, polynomial, linear, cosine, sigmoid, tanh) or exp_intersection"
    )


class Kernel(BaseEstimator):
    """Base class of the catalogue: a binary kernel ``kappa(x, y)`` between a query and a key domain.

    A kernel is a small parameter object (``get_params`` / ``set_params`` / ``sklearn.base.clone``), so it can
    be an estimator parameter and be searched over in a grid search. Calling it returns the Gram matrix.

    Two levels of entry points:

    - array level, validated: ``kernel(X, Y)``, ``log_kernel``, ``features_x``, ``features_y``. They accept numpy
      arrays or torch tensors (batched ``(..., n, d)``) and return the type they were given.
    - tensor level, no validation, differentiable, any device: ``evaluate``, ``log_evaluate``,
      ``feature_map_x``, ``feature_map_y``. Attention layers and solvers call these in their inner loops.

    Subclasses set the class attributes and implement ``evaluate`` (and, where they exist, ``log_evaluate`` and
    the feature maps).
    """

    name: ClassVar[str] = ""
    family: ClassVar[Family] = ""
    formula: ClassVar[str] = ""
    has_log_kernel: ClassVar[bool] = False
    # What kappa(q, k) depends on: "dot" (q.k only), "dot_and_norms" (q.k, |q| and |k|) or "points" (anything).
    # AttentionKernel reads it to decide when two different maps still give a symmetric kernel.
    depends_on: ClassVar[str] = "points"
    # Whether kappa(x, y) may take x and y of different dimensions (a kernel between two domains, through
    # query and key maps); attention then accepts queries and keys of different head dimensions.
    cross_domain: ClassVar[bool] = False

    # ----------------------------------------------------------------------------------------- metadata
    @property
    def symmetric(self) -> bool:
        """Whether kappa(x, y) == kappa(y, x) (same maps on both sides)."""
        return True

    @property
    def positive_definite(self) -> bool:
        """Whether the kernel is Mercer (every Gram matrix on one point set is positive semi-definite)."""
        raise NotImplementedError

    @property
    def positive_valued(self) -> bool:
        """Whether kappa >= 0 everywhere, so that attention may divide by the row sum."""
        raise NotImplementedError

    def feature_dim(self, d: int) -> int | float:
        """Dimension of the feature space for inputs of dimension ``d``: an int, or ``math.inf``."""
        return math.inf

    @property
    def has_features(self) -> bool:
        """Whether ``features_x`` / ``features_y`` exist (a finite feature map)."""
        return False

    @property
    def exact_features(self) -> bool:
        """Whether the finite feature map reproduces this kernel exactly (False for approximations)."""
        return self.has_features

    def resolved_params(self, d: int) -> dict[str, Any]:
        """The numeric constants of the kernel for input dimension ``d`` (``None`` defaults resolved)."""
        return {}

    def fused_spec(self, d: int) -> KernelSpec | None:
        """The kernel's fused form for inputs of dimension ``d``: a ``triton_ops.KernelSpec``, or None.

        None when the kernel has no fused epilogue (feature-map kernels, ``AttentionKernel``) and for every
        subclass that does not define ``_fused_spec`` itself: a subclass may override ``evaluate``, which the
        fused epilogue cannot see, so it takes the chunked path unless it opts in.

        Examples
        --------
        >>> from rkbs.kernels import RBF
        >>> RBF().fused_spec(64)
        KernelSpec(kernel_id=<Epilogue.RBF: 1>, c0=0.0625, c1=0.0, degree=0, nonnegative=True)
        """
        if "_fused_spec" not in type(self).__dict__:
            return None
        return self._fused_spec(check_int("d", d, 1))

    def _spec(self, epilogue: int, c0: float, c1: float = 0.0, degree: int = 0) -> KernelSpec:
        """The ``KernelSpec`` of a fused epilogue for this kernel (for ``_fused_spec`` implementations)."""
        return KernelSpec(epilogue, c0=c0, c1=c1, degree=degree, nonnegative=self.positive_valued)

    def check_normalize(self, normalize: Any) -> None:
        """Apply the positivity rule (``triton_ops.check_normalize``): ``normalize=True`` needs
        ``positive_valued``; a ``ValueError`` otherwise, a ``TypeError`` if ``normalize`` is not a bool."""
        check_normalize(normalize, self.positive_valued, repr(self.name))

    # ------------------------------------------------------------------------------------- tensor level
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Gram matrix ``(..., n, m)`` of torch tensors ``(..., n, d)`` and ``(..., m, d)``; no validation."""
        raise NotImplementedError

    def log_evaluate(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log(evaluate(x, y))`` computed without overflow; only when ``has_log_kernel``."""
        raise ValueError(
            f"kernel {self.name!r} has no log-kernel (has_log_kernel is False); use evaluate()"
        )

    # Where ``softcap`` acts; the one rule (docs/attention.md, "Soft-capping"): "log" caps the log-kernel (the
    # exponent of the exponential kernels: edp, rbf, laplacian, exp_intersection; Gemma 2's form for edp),
    # "argument" caps the argument of a dot kernel's outer function (``_DotKernel``), None: not defined.
    @property
    def softcap_target(self) -> str | None:
        return "log" if self.has_log_kernel else None

    def softcap_evaluate(self, x: torch.Tensor, y: torch.Tensor, softcap: float) -> torch.Tensor:
        """The kernel with ``c * tanh(u / c)`` (``c = softcap``) in place of ``u``, where ``u`` is given by
        ``softcap_target``: the capped log-kernel for "log", the kernel values for "argument"."""
        if self.softcap_target != "log":
            raise ValueError(softcap_error(self))
        return _softcap(self.log_evaluate(x, y), softcap)

    def feature_map_x(self, x: torch.Tensor) -> torch.Tensor:
        """Query-side features ``(..., n, m)``; only when ``has_features``."""
        raise ValueError(self._no_features_message())

    def feature_map_y(self, y: torch.Tensor) -> torch.Tensor:
        """Key-side features ``(..., n, m)``; only when ``has_features``."""
        raise ValueError(self._no_features_message())

    def _no_features_message(self) -> str:
        return (
            f"kernel {self.name!r} has no finite feature map (feature dimension is infinite); "
            "use a feature-map kernel such as 'taylor_edp', 'positive_random_features' or "
            "'random_fourier_features'"
        )

    # -------------------------------------------------------------------------------------- array level
    def _check_dims(self, X: torch.Tensor, Y: torch.Tensor) -> None:
        if X.shape[-1] != Y.shape[-1]:
            raise ValueError(
                f"Y has {Y.shape[-1]} features but X has {X.shape[-1]}; a kernel between domains of "
                "different dimensions needs AttentionKernel(base, query_map, key_map)"
            )

    def __call__(self, X: Any, Y: Any | None = None) -> Any:
        """Gram matrix ``K[..., i, j] = kappa(X[..., i, :], Y[..., j, :])``.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (..., n, d_x)
            Query-side points.
        Y : array-like or torch.Tensor of shape (..., m, d_y), default=None
            Key-side points; ``None`` means ``X``.

        Returns
        -------
        K : numpy.ndarray or torch.Tensor of shape (..., n, m)
            Same array type as ``X``.
        """
        Xt, Yt, back = as_tensor_pair(X, Y)
        self._check_dims(Xt, Yt)
        return back(self.evaluate(Xt, Yt))

    def log_kernel(self, X: Any, Y: Any | None = None) -> Any:
        """``log kappa(X, Y)`` evaluated stably (no overflow); only when ``has_log_kernel``."""
        if not self.has_log_kernel:
            return self.log_evaluate(None, None)  # raises the explanatory error
        Xt, Yt, back = as_tensor_pair(X, Y)
        self._check_dims(Xt, Yt)
        return back(self.log_evaluate(Xt, Yt))

    def features_x(self, X: Any) -> Any:
        """Query-side feature map: ``features_x(X) @ features_y(Y).T`` equals (or approximates) ``kernel(X, Y)``."""
        if not self.has_features:
            raise ValueError(self._no_features_message())
        Xt, back = as_tensor(X, "X")
        self._check_feature_input(Xt, "X")
        return back(self.feature_map_x(Xt))

    def features_y(self, Y: Any) -> Any:
        """Key-side feature map (see ``features_x``)."""
        if not self.has_features:
            raise ValueError(self._no_features_message())
        Yt, back = as_tensor(Y, "Y")
        self._check_feature_input(Yt, "Y")
        return back(self.feature_map_y(Yt))

    def _check_feature_input(self, T: torch.Tensor, name: str) -> None:
        """Hook for kernels whose feature maps constrain the input dimension."""

    def describe(self, d: int) -> dict[str, Any]:
        """One catalogue row: name, formula, feature dimension for ``d`` and the metadata."""
        return {
            "name": self.name,
            "formula": self.formula,
            "feature_dim": self.feature_dim(d),
            "mercer": self.positive_definite,
            "symmetric": self.symmetric,
            "positive_valued": self.positive_valued,
            "family": self.family,
        }
