"""scikit-learn conformance of the rkbs estimators (parametrize_with_checks)."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from rkbs.estimators import BinaryKernelLearner, BinaryKernelRidge, RKBSClassifier, RKBSRegressor

_N_ITER_REASON = (
    "n_iter_ is None after a direct (non-iterative) solve, as in sklearn's Ridge; max_iter only caps the "
    "iterative solvers"
)


def _expected_failed_checks(estimator):
    direct = isinstance(estimator, RKBSRegressor) or (
        isinstance(estimator, RKBSClassifier) and estimator.loss == "squared"
    )
    if direct:
        return {"check_non_transformer_estimators_n_iter": _N_ITER_REASON}
    return {}


@parametrize_with_checks(
    [
        RKBSRegressor(),
        RKBSRegressor(kernel="tanh", penalty="coef", alpha=0.1),
        RKBSClassifier(),
        RKBSClassifier(loss="logistic", alpha=0.1),
        BinaryKernelRidge(),  # mode='auto': Kronecker for the Mercer default, whatever the column split
        BinaryKernelRidge(mode="kronecker"),
        BinaryKernelLearner(n_heads=2, head_dim=2, max_iter=50),
    ],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
