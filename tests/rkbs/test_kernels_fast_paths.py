"""The catalogue's fast CPU formulas (tanh by expm1, the Laplacian distance with its own derivative, in-place
evaluation) against torch's plain formulas: same values, finite-difference gradients, the derivative at 0."""

import pytest
import torch

from rkbs.kernels import Cosine, get_kernel
from rkbs.kernels.dot_product import _sq_dist, _tanh_


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 4e-16), (torch.float32, 3e-7)])
def test_tanh_by_expm1_matches_torch_tanh(dtype, rtol):
    z = torch.cat([torch.linspace(-30, 30, 20001, dtype=torch.float64), torch.logspace(-30, 1, 500, dtype=torch.float64),
                   -torch.logspace(-30, 1, 500, dtype=torch.float64), torch.tensor([0.0, 19.5, 20.0, 1e6, -1e6])])
    z = torch.cat([z, torch.tensor([torch.inf, -torch.inf], dtype=torch.float64)]).to(dtype)
    got = _tanh_(z.clone())
    want = torch.tanh(z.double())
    rel = ((got.double() - want).abs() / want.abs().clamp_min(torch.finfo(dtype).tiny)).max()
    assert rel <= rtol  # relative, so small arguments keep their accuracy (expm1, not 2 sigmoid(2z) - 1)
    assert got[-2] == 1 and got[-1] == -1
    assert torch.isnan(_tanh_(torch.tensor([float("nan")], dtype=dtype))).all()


def test_tanh_kernel_gradients_are_tanh_derivatives():
    torch.manual_seed(0)
    kernel = get_kernel("tanh", scale=0.7, coef0=0.2)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(kernel.evaluate, (x, y))
    assert torch.autograd.gradgradcheck(kernel.evaluate, (x, y))
    torch.testing.assert_close(kernel.evaluate(x, y), torch.tanh(0.7 * x @ y.T + 0.2), rtol=1e-15, atol=0)


def test_laplacian_distance_gradient_and_its_value_at_coincident_points():
    torch.manual_seed(1)
    kernel = get_kernel("laplacian", gamma=0.4)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.cat([torch.randn(3, 3, dtype=torch.float64), x[:1].detach()]).requires_grad_(True)  # y[3] == x[0]
    assert torch.autograd.gradcheck(lambda a, b: kernel.log_evaluate(a, b)[:, :3], (x, y))
    assert torch.autograd.gradgradcheck(lambda a, b: kernel.log_evaluate(a, b)[:, :3], (x, y))
    # against the definition, away from coincident points; the subgradient there is 0 (not inf / NaN)
    want = -0.4 * torch.cdist(x, y)
    got = kernel.log_evaluate(x, y)
    torch.testing.assert_close(got, want)
    gx, gy = torch.autograd.grad(got[0, 3], (x, y), retain_graph=True)
    assert gx.abs().max() == 0 and gy.abs().max() == 0
    gx, gy = torch.autograd.grad(got[1:, :3].sum(), (x, y))
    wx, wy = torch.autograd.grad(want[1:, :3].sum(), (x, y))
    torch.testing.assert_close(gx, wx)
    torch.testing.assert_close(gy, wy)


def test_squared_distance_has_no_negative_values_and_plain_gradients():
    torch.manual_seed(2)
    x = torch.randn(2, 6, 5, dtype=torch.float64, requires_grad=True)
    y = torch.cat([torch.randn(2, 3, 5, dtype=torch.float64), x[:, :2].detach()], 1).requires_grad_(True)
    sq = _sq_dist(x, y)
    assert (sq >= 0).all()
    torch.testing.assert_close(sq, ((x[..., :, None, :] - y[..., None, :, :]) ** 2).sum(-1), rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(_sq_dist, (x, y))


@pytest.mark.parametrize("case", [("polynomial", {"degree": 3, "coef0": 0.5}), ("sigmoid", {"coef0": -1.0}),
                                  ("rbf", {}), ("laplacian", {}), ("edp", {}), ("linear", {})])
def test_in_place_evaluation_without_gradients_gives_the_same_values(case):
    name, params = case
    kernel = get_kernel(name, **params)
    torch.manual_seed(3)
    x = torch.randn(2, 7, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        fast = kernel.evaluate(x, y)
    torch.testing.assert_close(fast, kernel.evaluate(x, y).detach(), rtol=1e-14, atol=0)


def test_cosine_is_the_product_of_its_features():
    # the tiled attention path forms cosine's features once per call and tiles a plain matmul
    kernel = Cosine()
    torch.manual_seed(4)
    x, y = torch.randn(6, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    x[0] = 0.0
    torch.testing.assert_close(kernel.evaluate(x, y), kernel.feature_map_x(x) @ kernel.feature_map_y(y).T)
