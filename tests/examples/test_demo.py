"""The parts of ``make demo`` that report facts about the catalogue (the kernel comparison runs in the demo)."""

import importlib.util
import re
from pathlib import Path

import numpy as np

from rkbs.kernels import list_kernels

# The demo is a script in examples/, not a module of the runtime packages.
_SPEC = importlib.util.spec_from_file_location("demo", Path(__file__).resolve().parents[2] / "examples" / "demo.py")
demo = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(demo)


def test_catalogue_table_lists_every_kernel_with_its_dimension():
    table = demo._catalogue_table(d=4)
    for name in list_kernels():
        assert re.search(rf"^{name}\s", table, flags=re.M)
    assert re.search(r"^polynomial .* 15\s+yes", table, flags=re.M)  # C(4 + 2, 2) monomials, Mercer
    assert re.search(r"^tanh .* inf\s+no", table, flags=re.M)


def test_asymmetric_edp_report_shows_a_negative_eigenvalue():
    text = demo._asymmetric_edp(np.random.default_rng(0), n=60)
    smallest = float(re.search(r"smallest eigenvalue of \(K \+ K\^T\) / 2 = (\S+)", text).group(1))
    assert smallest < 0


def test_taylor_plot_is_written_and_errors_fall(tmp_path):
    text, path = demo._taylor_convergence(np.random.default_rng(0), tmp_path, d=4, n=32)
    assert path.exists() and path.stat().st_size > 0
    errors = [float(e) for e in re.findall(r"rel\. error (\S+)", text)]
    assert all(b < a for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 1e-2 < 0.5 < errors[0]


def test_negative_r2_row_is_explained_with_computed_scores():
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.datasets import load_diabetes
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from rkbs.estimators import RKBSRegressor
    from rkbs.kernels import get_kernel

    X, y = load_diabetes(return_X_y=True)
    reg = TransformedTargetRegressor(
        make_pipeline(StandardScaler(), RKBSRegressor(kernel=get_kernel("edp"), alpha=1.0, penalty="rkhs")),
        transformer=StandardScaler(),
    )
    note = demo._explain_negative_r2("edp", reg, X, y, -1.84)
    assert note.startswith("+ edp: R^2 = -1.840 < 0 is worse than predicting the mean")
    scores = [float(m) for m in re.findall(r"alpha=\d+: R\^2 = (-?\d+\.\d+)", note)]
    assert len(scores) == 2 and max(scores) > 0  # stronger regularization recovers a positive R^2
