"""Dot-product family: kappa = phi(s * q.k, |q|^2, |k|^2).

These are the kernels a fused attention kernel evaluates as an epilogue on a tensor-core matmul: each describes
its fused form with ``_fused_spec(d)``, a ``triton_ops.KernelSpec`` (epilogue id and resolved constants).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from triton_ops import Epilogue, KernelSpec

from ._base import Kernel, _softcap
from ._monomials import monomial_features, n_monomials_up_to
from ._validation import check_int, check_positive, check_real, default_gamma, default_scale

__all__ = ["EDP", "RBF", "Laplacian", "Polynomial", "Linear", "Cosine", "Sigmoid", "Tanh"]


def _dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return x @ y.transpose(-1, -2)


def _tracks_grad(x: torch.Tensor, y: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and (x.requires_grad or y.requires_grad)


def _scaled_dot(x: torch.Tensor, y: torch.Tensor, scale: float) -> torch.Tensor:
    # the scale multiplies the (n, d) side, not the (n, m) product: one pass less over the product in the
    # forward pass, and none in its backward
    return _dot(x * scale, y)


# |z| beyond which tanh(z) rounds to +-1 in float64 (and float32): keeps expm1(2 z) finite
_TANH_CLIP = 20.0


def _tanh_expm1_(z: torch.Tensor) -> torch.Tensor:
    e = z.clamp_(-_TANH_CLIP, _TANH_CLIP).mul_(2.0).expm1_()
    return e.div_(e + 2.0)  # tanh z = (e^2z - 1) / (e^2z + 1), accurate near 0 through expm1


class _TanhExpm1(torch.autograd.Function):
    """``tanh`` by ``expm1``: torch 2.13's CPU ``tanh`` costs ~25 multiplies per element (1.1 ms per 2^18
    float32 on AVX512), ``expm1`` and a division a third of that; the values agree to 2 ulp (float32 and
    float64). The derivative is tanh's own (``1 - tanh^2``), itself differentiable."""

    @staticmethod
    def forward(ctx, z):
        y = _tanh_expm1_(z.clone())
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


def _tanh_(z: torch.Tensor) -> torch.Tensor:
    """``tanh`` of a fresh tensor ``z``, in place where autograd allows."""
    if not z.is_cpu:
        return z.tanh_()
    if torch.is_grad_enabled() and z.requires_grad:
        return _TanhExpm1.apply(z)
    return _tanh_expm1_(z)


def _sq_norm(x: torch.Tensor) -> torch.Tensor:
    # one fused reduction: (x * x).sum(-1) would build an (n, d) temporary (64 MiB for a decoding step's keys)
    return torch.linalg.vector_norm(x, dim=-1).square()


def _sq_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """|x - y|^2 through the dot-product form (as the fused kernel computes it), clipped at 0."""
    sq_x = _sq_norm(x).unsqueeze(-1)
    sq_y = _sq_norm(y).unsqueeze(-2)
    # in place on the fresh matmul output: one (n, m) buffer instead of four (autograd-safe: matmul does not
    # save its output, and the in-place add/relu record what their backward needs). -2 multiplies the (n, d)
    # side (exact: a power of two); relu_ is the clip at 0 whose backward reads its output, one pass
    return _dot(x * -2.0, y).add_(sq_x).add_(sq_y).relu_()


class _DotKernel(Kernel):
    """``kappa = outer(u)``: an outer function of the scaled dot product ``u = s * q.k`` (cosine: ``q.k / (|q| |k|)``).

    ``softcap`` caps ``u`` before the outer function (``softcap_target = "argument"``); the exponential kernels
    (edp, rbf, laplacian) cap their exponent instead, the log-kernel (``"log"``).
    """

    family = "dot"
    depends_on = "dot"
    softcap_target = "argument"

    def _scale(self, d: int) -> float:
        return default_scale(check_positive("scale", self.scale), d)

    def _argument(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``u = s * q.k`` (the kernels whose argument is not the scaled dot product override it)."""
        return self._scale(x.shape[-1]) * _dot(x, y)

    def _outer(self, u: torch.Tensor, d: int) -> torch.Tensor:
        raise NotImplementedError(f"kernel {self.name!r} defines no outer function (_outer), which softcap needs")

    def softcap_evaluate(self, x, y, softcap):
        if self.softcap_target == "log":
            return super().softcap_evaluate(x, y, softcap)
        return self._outer(_softcap(self._argument(x, y), softcap), x.shape[-1])


class EDP(_DotKernel):
    """Exponentiated dot product ``exp(s * q.k)``: softmax attention's kernel.

    Parameters
    ----------
    scale : float, default=None
        Multiplies ``q.k``; ``None`` means ``1 / sqrt(d)`` for inputs of dimension ``d``.
    """

    name = "edp"
    formula = "exp(s q.k)"
    has_log_kernel = True
    softcap_target = "log"

    def __init__(self, scale: float | None = None):
        self.scale = scale
        check_positive("scale", scale)

    positive_definite = True
    positive_valued = True

    def resolved_params(self, d: int) -> dict[str, Any]:
        return {"scale": self._scale(d)}

    def _fused_spec(self, d: int) -> KernelSpec:
        return self._spec(Epilogue.EDP, c0=self._scale(d))

    def log_evaluate(self, x, y):
        return _scaled_dot(x, y, self._scale(x.shape[-1]))

    def evaluate(self, x, y):
        return torch.exp(self.log_evaluate(x, y))


class RBF(_DotKernel):
    """Gaussian kernel ``exp(-gamma |q - k|^2)``.

    Parameters
    ----------
    gamma : float, default=None
        Bandwidth; ``None`` means ``1 / (2 sqrt(d))``, so that normalized RBF attention and softmax attention
        share the ``q.k / sqrt(d)`` term.
    """

    name = "rbf"
    formula = "exp(-gamma |q - k|^2)"
    depends_on = "dot_and_norms"
    has_log_kernel = True
    softcap_target = "log"
    positive_definite = True
    positive_valued = True

    def __init__(self, gamma: float | None = None):
        self.gamma = gamma
        check_positive("gamma", gamma)

    def _gamma(self, d: int) -> float:
        return default_gamma(check_positive("gamma", self.gamma), d)

    def resolved_params(self, d: int) -> dict[str, Any]:
        return {"gamma": self._gamma(d)}

    def _fused_spec(self, d: int) -> KernelSpec:
        return self._spec(Epilogue.RBF, c0=self._gamma(d))

    def log_evaluate(self, x, y):
        sq, gamma = _sq_dist(x, y), self._gamma(x.shape[-1])
        return sq * -gamma if _tracks_grad(x, y) else sq.mul_(-gamma)  # relu_'s backward reads sq

    def evaluate(self, x, y):
        return torch.exp(self.log_evaluate(x, y))


class Laplacian(RBF):
    """Laplacian kernel ``exp(-gamma |q - k|)`` (Euclidean distance, as in the dot-product family).

    Parameters
    ----------
    gamma : float, default=None
        ``None`` means ``1 / (2 sqrt(d))``.
    """

    name = "laplacian"
    formula = "exp(-gamma |q - k|)"

    def _fused_spec(self, d: int) -> KernelSpec:
        return self._spec(Epilogue.LAPLACIAN, c0=self._gamma(d))

    def log_evaluate(self, x, y):
        sq = _sq_dist(x, y)
        gamma = self._gamma(x.shape[-1])
        if not _tracks_grad(x, y):
            return sq.sqrt_().mul_(-gamma)  # in place: the attention forward pass evaluates this per tile
        return _ScaledDistance.apply(sq, gamma)


class _ScaledDistance(torch.autograd.Function):
    """``-gamma sqrt(sq)`` whose derivative at ``sq = 0`` is taken as 0 (sqrt's is infinite there).

    One pass forward and four backward, where ``torch.where`` around a clamped ``sqrt`` took five and eight:
    the attention backward pass differentiates this once per tile.
    """

    @staticmethod
    def forward(ctx, sq, gamma):
        out = sq.sqrt().mul_(-gamma)
        ctx.gamma = gamma
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        # d(-gamma sqrt(sq)) / d sq = -gamma / (2 sqrt(sq)) = gamma^2 / (2 out)
        d_sq = grad.div(out).mul_(0.5 * ctx.gamma**2)
        return d_sq.masked_fill_(out == 0, 0.0), None


class Polynomial(_DotKernel):
    """Polynomial kernel ``(s * q.k + c)^p``, equal to scikit-learn's ``polynomial_kernel(gamma=s, coef0=c, degree=p)``.

    Its exact feature map has ``C(d + p, p)`` monomial features, for any sign of ``coef0`` (the sign goes to the
    query side, so the two maps differ when ``coef0 < 0``).

    Parameters
    ----------
    degree : int, default=2
    scale : float, default=None
        ``None`` means ``1 / sqrt(d)``.
    coef0 : float, default=1.0
    """

    name = "polynomial"
    formula = "(s q.k + c)^p"

    def __init__(self, degree: int = 2, scale: float | None = None, coef0: float = 1.0):
        self.degree = degree
        self.scale = scale
        self.coef0 = coef0
        self._check()

    def _check(self) -> tuple[int, float]:
        check_positive("scale", self.scale)
        return check_int("degree", self.degree, 0), check_real("coef0", self.coef0)

    @property
    def positive_definite(self) -> bool:
        return self._check()[1] >= 0

    @property
    def positive_valued(self) -> bool:
        return self._check()[0] % 2 == 0

    def feature_dim(self, d: int) -> int:
        return n_monomials_up_to(d, self._check()[0])

    has_features = True

    def resolved_params(self, d: int) -> dict[str, Any]:
        degree, coef0 = self._check()
        return {"degree": degree, "scale": self._scale(d), "coef0": coef0}

    def _fused_spec(self, d: int) -> KernelSpec:
        p = self.resolved_params(d)
        return self._spec(Epilogue.POLYNOMIAL, c0=p["scale"], c1=p["coef0"], degree=p["degree"])

    def evaluate(self, x, y):
        p = self.resolved_params(x.shape[-1])
        base = _scaled_dot(x, y, p["scale"]).add_(p["coef0"])  # in place on the fresh matmul output
        if _tracks_grad(x, y):
            return base ** p["degree"]  # pow's backward needs its input
        return base.pow_(p["degree"])

    def _outer(self, u, d):
        p = self.resolved_params(d)
        return (u + p["coef0"]) ** p["degree"]

    def _features(self, x: torch.Tensor, query_side: bool) -> torch.Tensor:
        p = self.resolved_params(x.shape[-1])
        degree, s, c = p["degree"], p["scale"], p["coef0"]
        blocks = []
        for t in range(degree + 1):
            # (s q.k + c)^p = sum_t C(p, t) c^(p - t) s^t (q.k)^t
            weight = math.comb(degree, t) * abs(c) ** (degree - t) * s**t
            sign = -1.0 if (query_side and c < 0 and (degree - t) % 2 == 1) else 1.0
            blocks.append(sign * math.sqrt(weight) * monomial_features(x, t))
        return torch.cat(blocks, dim=-1)

    def feature_map_x(self, x):
        return self._features(x, query_side=True)

    def feature_map_y(self, y):
        return self._features(y, query_side=False)


class Linear(_DotKernel):
    """Linear kernel ``s * q.k`` with exact features ``sqrt(s) x``.

    Parameters
    ----------
    scale : float, default=None
        ``None`` means ``1 / sqrt(d)``.
    """

    name = "linear"
    formula = "s q.k"
    positive_definite = True
    positive_valued = False
    has_features = True

    def __init__(self, scale: float | None = None):
        self.scale = scale
        check_positive("scale", scale)

    def feature_dim(self, d: int) -> int:
        return d

    def resolved_params(self, d: int) -> dict[str, Any]:
        return {"scale": self._scale(d)}

    def _fused_spec(self, d: int) -> KernelSpec:
        return self._spec(Epilogue.LINEAR, c0=self._scale(d))

    def evaluate(self, x, y):
        return _scaled_dot(x, y, self._scale(x.shape[-1]))

    def _outer(self, u, d):
        return u

    def feature_map_x(self, x):
        return math.sqrt(self._scale(x.shape[-1])) * x

    feature_map_y = feature_map_x


class Cosine(_DotKernel):
    """Cosine similarity ``q.k / (|q| |k|)``; a zero vector has similarity 0 with everything."""

    name = "cosine"
    formula = "q.k / (|q| |k|)"
    depends_on = "dot_and_norms"
    positive_definite = True
    positive_valued = False
    has_features = True

    def __init__(self):
        pass

    def feature_dim(self, d: int) -> int:
        return d

    def _fused_spec(self, d: int) -> KernelSpec:
        return self._spec(Epilogue.COSINE, c0=1.0)

    def feature_map_x(self, x):
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        return x / norm.clamp_min(torch.finfo(x.dtype).tiny)

    feature_map_y = feature_map_x

    def evaluate(self, x, y):
        return _dot(self.feature_map_x(x), self.feature_map_y(y))

    def _argument(self, x, y):
        return self.evaluate(x, y)

    def _outer(self, u, d):
        return u


class _AffineDotKernel(_DotKernel):
    """A squashing function of the affine score ``s * q.k + coef0``."""

    def __init__(self, scale: float | None = None, coef0: float = 0.0):
        self.scale = scale
        self.coef0 = coef0
        check_positive("scale", scale)
        check_real("coef0", coef0)

    def resolved_params(self, d: int) -> dict[str, Any]:
        return {"scale": self._scale(d), "coef0": check_real("coef0", self.coef0)}

    def _score(self, x, y):
        # in place on the fresh matmul output (matmul's backward does not need it; a scalar add saves nothing)
        p = self.resolved_params(x.shape[-1])
        return _scaled_dot(x, y, p["scale"]).add_(p["coef0"])

    def _squash(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _outer(self, u, d):
        return self._squash(u + self.resolved_params(d)["coef0"])

    def _affine_spec(self, epilogue: Epilogue, d: int) -> KernelSpec:
        p = self.resolved_params(d)
        return self._spec(epilogue, c0=p["scale"], c1=p["coef0"])


class Sigmoid(_AffineDotKernel):
    """Logistic kernel ``1 / (1 + exp(-(s * q.k + b)))``, as in sigmoid attention. Not Mercer.

    Parameters
    ----------
    scale : float, default=None
        ``None`` means ``1 / sqrt(d)``.
    coef0 : float, default=0.0
        The bias ``b`` (sigmoid attention often uses ``-log(n)``).
    """

    name = "sigmoid"
    formula = "1 / (1 + exp(-(s q.k + b)))"
    has_log_kernel = True
    positive_definite = False
    positive_valued = True

    def _fused_spec(self, d: int) -> KernelSpec:
        return self._affine_spec(Epilogue.SIGMOID, d)

    def evaluate(self, x, y):
        return self._score(x, y).sigmoid_()  # sigmoid's backward needs only its output

    def _squash(self, t):
        return torch.sigmoid(t)

    def log_evaluate(self, x, y):
        return F.logsigmoid(self._score(x, y))


class Tanh(_AffineDotKernel):
    """Hyperbolic tangent kernel ``tanh(s * q.k + c)``: scikit-learn's "sigmoid" kernel. Indefinite.

    Parameters
    ----------
    scale : float, default=None
        ``None`` means ``1 / sqrt(d)``.
    coef0 : float, default=0.0
    """

    name = "tanh"
    formula = "tanh(s q.k + c)"
    positive_definite = False
    positive_valued = False

    def _fused_spec(self, d: int) -> KernelSpec:
        return self._affine_spec(Epilogue.TANH, d)

    def evaluate(self, x, y):
        return _tanh_(self._score(x, y))

    def _squash(self, t):
        return _tanh_(t)
