"""One kernel, one definition: every back end computes the catalogue's kernel, and the catalogue computes the
formulas of the docs.

Parametrised over ``list_kernels()``: a new catalogue kernel is picked up with no edit here. For each kernel (at
its defaults, and with non-default parameters where it has any):

- the catalogue ``kernel(X, Y)`` against the independent float64 formula of ``tests/helpers.py`` (written from
  docs/theory.md, never calling the catalogue);
- ``kernel_attention`` with ``backend="torch"`` (chunked) and, where the kernel has a finite feature map,
  ``backend="linear"``, in float64, against the catalogue's Gram matrix;
- where ``fused_spec`` is not None, ``backend="triton"`` (Triton's interpreter on the CPU, float32) and the
  float64 reference of ``triton_ops`` fed the same spec, against the catalogue.
"""

import pytest
import torch
from helpers import FORMULAS

import triton_ops
from attention_kernels import kernel_attention
from rkbs.kernels import get_kernel, list_kernels
from triton_ops.reference import reference_attention as spec_reference

# Non-default parameters (the defaults are covered by the {} case of every kernel).
_PARAMS = {
    "laplacian": {"gamma": 0.3},
    "rbf": {"gamma": 0.2},
    "edp": {"scale": 0.3},
    "polynomial": {"degree": 3, "scale": 0.4, "coef0": 0.5},
    "linear": {"scale": 0.5},
    "sigmoid": {"scale": 0.4, "coef0": -0.5},
    "tanh": {"scale": 0.3, "coef0": 0.2},
    "exp_intersection": {"scale": 0.3},
    "taylor_edp": {"degree": 3, "scale": 0.4},
}
_RANDOM = {"n_features": 24, "random_state": 0}  # random-feature kernels: one fixed draw


def _cases():
    for name in list_kernels():
        base = _RANDOM if "random_state" in get_kernel(name).get_params() else {}
        yield pytest.param(name, dict(base), id=f"{name}-defaults")
        if name in _PARAMS:
            yield pytest.param(name, {**base, **_PARAMS[name]}, id=f"{name}-params")


CASES = list(_cases())
D, NQ, NK, DV = 40, 19, 33, 24  # lengths not multiples of the 16-wide blocks, head dim 40


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(1, 2, NQ, D, generator=g, dtype=torch.float64) * 0.5
    k = torch.randn(1, 2, NK, D, generator=g, dtype=torch.float64) * 0.5
    v = torch.randn(1, 2, NK, DV, generator=g, dtype=torch.float64)
    return q, k, v


def _expected(kern, q, k, v, normalize):
    w = kern.evaluate(q, k)
    if normalize:
        w = w / w.sum(-1, keepdim=True)
    return w @ v


def _modes(kern):
    return (False, True) if kern.positive_valued else (False,)


@pytest.mark.parametrize("name,params", CASES)
def test_catalogue_matches_the_documented_formula(name, params):
    if name not in FORMULAS:
        pytest.fail(f"write kernel {name!r}'s formula from docs/theory.md into tests/helpers.py FORMULAS")
    kern = get_kernel(name, **params)
    q, k, _ = _data(1)
    torch.testing.assert_close(kern(q[0, 0], k[0, 0]), FORMULAS[name](q[0, 0], k[0, 0], kern), rtol=1e-10,
                               atol=1e-12)


@pytest.mark.parametrize("name,params", CASES)
def test_torch_and_linear_back_ends_match_the_catalogue(name, params):
    kern = get_kernel(name, **params)
    q, k, v = _data()
    backends = ["torch"] + (["linear"] if kern.has_features else [])
    for normalize in _modes(kern):
        expected = _expected(kern, q, k, v, normalize)
        for backend in backends:
            out = kernel_attention(q, k, v, kernel=kern, normalize=normalize, backend=backend)
            torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9, msg=f"{backend} normalize={normalize}")


@pytest.mark.parametrize("name,params", CASES)
def test_fused_back_end_matches_the_catalogue(name, params):
    kern = get_kernel(name, **params)
    spec = kern.fused_spec(D)
    if spec is None:
        assert kern.family == "feature_map", "only feature-map kernels lack a fused form"
        return
    if not triton_ops.is_available():
        pytest.skip("triton is not available")
    q, k, v = _data()
    if name == "exp_intersection":  # min over coordinates: keep the weights O(1)
        q, k = q.abs(), k.abs()
    for normalize in _modes(kern):
        expected = _expected(kern, q, k, v, normalize)
        ref = spec_reference(q, k, v, spec=spec, normalize=normalize)
        torch.testing.assert_close(ref, expected, rtol=1e-9, atol=1e-9, msg="triton_ops' float64 reference")
        out = kernel_attention(q.float(), k.float(), v.float(), kernel=kern, normalize=normalize, backend="triton")
        scale = expected.abs().max().clamp_min(0.1)
        err = ((out.double() - expected).abs().max() / scale).item()
        assert err < 2e-4, f"fused normalize={normalize}: relative error {err:.1e}"


def test_user_subclass_takes_the_chunked_path():
    from rkbs.kernels import RBF

    class Squared(RBF):  # exp(-2 gamma |q - k|^2), which the rbf epilogue would not compute
        def log_evaluate(self, x, y):
            return 2.0 * super().log_evaluate(x, y)

        def evaluate(self, x, y):
            return torch.exp(self.log_evaluate(x, y))

    q, k, v = _data()
    kern = Squared()
    assert kern.fused_spec(D) is None
    out = kernel_attention(q, k, v, kernel=kern)
    torch.testing.assert_close(out, _expected(kern, q, k, v, True))
    with pytest.raises(ValueError, match="no fused form"):
        kernel_attention(q.float(), k.float(), v.float(), kernel=kern, backend="triton")
