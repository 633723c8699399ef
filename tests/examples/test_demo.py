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
