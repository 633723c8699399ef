"""scikit-learn conformance of the rkbs estimators (parametrize_with_checks)."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from rkbs.estimators import BinaryKernelLearner, BinaryKernelRidge, RKBSClassifier, RKBSRegressor


@parametrize_with_checks(
    [
        RKBSRegressor(),
        RKBSRegressor(kernel="tanh", penalty="coef", alpha=0.1),
        RKBSClassifier(),
        RKBSClassifier(loss="logistic", alpha=0.1),
        # the options the regressor and classifier tests exercise: intercepts, a Krylov solver, the coef penalty
        RKBSRegressor(fit_intercept=True, solver="cg"),
        RKBSClassifier(loss="logistic", penalty="coef", fit_intercept=True, alpha=0.1),
        BinaryKernelRidge(),  # mode='auto': Kronecker for the Mercer default, whatever the column split
        BinaryKernelRidge(mode="kronecker"),
        BinaryKernelLearner(n_heads=2, head_dim=2, max_iter=50),
        BinaryKernelLearner(n_heads=2, head_dim=2, max_iter=20, head="rbf", ensemble_size=2),
    ],
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
