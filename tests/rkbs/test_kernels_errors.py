"""Bad input: a ValueError or TypeError that names the argument."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import ParameterGrid

from rkbs.kernels import AttentionKernel, get_kernel, list_kernels, polynomial, rbf


@pytest.mark.parametrize(
    "name,params,exc,match",
    [
        ("rbf", {"gamma": -1.0}, ValueError, "gamma must be positive"),
        ("rbf", {"gamma": float("nan")}, ValueError, "gamma must be finite"),
        ("laplacian", {"gamma": "big"}, TypeError, "gamma must be a real number"),
        ("edp", {"scale": 0.0}, ValueError, "scale must be positive"),
        ("polynomial", {"degree": 2.5}, TypeError, "degree must be an integer"),
        ("polynomial", {"degree": -1}, ValueError, "degree must be >= 0"),
        ("polynomial", {"degree": True}, TypeError, "degree must be an integer"),
        ("polynomial", {"coef0": float("inf")}, ValueError, "coef0 must be finite"),
        ("taylor_edp", {"degree": -2}, ValueError, "degree must be >= 0"),
        ("positive_random_features", {"n_features": 0}, ValueError, "n_features must be >= 1"),
        ("edp", {"gamma": 1.0}, TypeError, "kernel 'edp' got an unexpected parameter 'gamma'; valid parameters: scale"),
        ("rbf", {"gama": 1}, TypeError, "kernel 'rbf' got an unexpected parameter 'gama'; valid parameters: gamma"),
        ("polynomial", {"coef": 1}, TypeError, "valid parameters: coef0, degree, scale"),
        ("cosine", {"scale": 1}, TypeError, "valid parameters: none"),
    ],
)
def test_invalid_parameters(name, params, exc, match):
    with pytest.raises(exc, match=match):
        get_kernel(name, **params)


def test_invalid_parameters_set_after_construction_fail_at_call():
    k = rbf().set_params(gamma=-2.0)
    with pytest.raises(ValueError, match="gamma must be positive"):
        k(np.ones((2, 2)))


def test_unknown_name_lists_the_catalogue():
    with pytest.raises(ValueError, match="unknown kernel 'gauss'.*rbf"):
        get_kernel("gauss")
    with pytest.raises(TypeError, match="kernel must be a name or a Kernel"):
        get_kernel(3)


def test_mismatched_feature_dimensions():
    with pytest.raises(ValueError, match="Y has 3 features but X has 2.*AttentionKernel"):
        rbf()(np.ones((4, 2)), np.ones((4, 3)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input(bad):
    X = np.ones((3, 2))
    X[1, 0] = bad
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        rbf()(X)
    with pytest.raises(ValueError, match="Y contains NaN or infinity"):
        rbf()(np.ones((3, 2)), torch.from_numpy(X).numpy())
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        polynomial().features_x(X)


def test_non_numeric_and_malformed_input():
    with pytest.raises(TypeError, match="X must be numeric"):
        rbf()(np.array([["a", "b"]]))
    with pytest.raises(TypeError, match="X must be a real numeric tensor"):
        rbf()(torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(TypeError, match="same array type"):
        rbf()(np.ones((2, 2)), torch.ones(2, 2))
    with pytest.raises(ValueError, match="X must be 2-D"):
        rbf()(np.ones(3))
    with pytest.raises(ValueError, match="X is empty"):
        rbf()(np.ones((0, 3)))


def test_features_of_infinite_kernels_point_to_approximations():
    with pytest.raises(ValueError, match="no finite feature map.*taylor_edp"):
        get_kernel("rbf").features_x(np.ones((2, 2)))


def test_attention_kernel_map_errors():
    with pytest.raises(ValueError, match="query_map maps to dimension 3 but key_map to 4"):
        AttentionKernel(rbf(), np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(TypeError, match="base must be a catalogue kernel"):
        AttentionKernel("rbf")
    k = AttentionKernel(rbf(), np.ones((2, 3)), np.ones((5, 3)))
    with pytest.raises(ValueError, match="X has 4 features but query_map expects 2"):
        k(np.ones((3, 4)), np.ones((3, 5)))
    with pytest.raises(ValueError, match="Y has 2 features but key_map expects 5"):
        k(np.ones((3, 2)), np.ones((3, 2)))


def test_integer_input_is_promoted_and_dtype_preserved():
    K = rbf()(np.array([[1, 2], [3, 4]]))
    assert K.dtype == np.float64
    assert rbf()(torch.ones(2, 2, dtype=torch.float32)).dtype == torch.float32


@pytest.mark.parametrize("name", list_kernels())
def test_kernels_are_clonable_parameter_objects(name):
    k = get_kernel(name)
    c = clone(k)
    assert c is not k and c.get_params() == k.get_params()
    assert get_kernel(k) is k


def test_kernels_work_as_grid_search_parameters():
    grid = list(ParameterGrid({"kernel": [rbf(gamma=0.1), polynomial(degree=3)], "alpha": [1.0]}))
    assert [g["kernel"].name for g in grid] == ["rbf", "polynomial"]
    k = get_kernel(polynomial(degree=3), coef0=2.0)
    assert k.get_params()["coef0"] == 2.0 and k.get_params()["degree"] == 3
    nested = AttentionKernel(rbf(), np.eye(2), np.eye(2)).set_params(base__gamma=0.5)
    assert nested.base.gamma == 0.5
