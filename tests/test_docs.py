"""Every python block of every docs page runs (per page: in order, in one namespace) and its asserts hold.

A block that is a template rather than a runnable example (say, the skeleton of a benchmark script) is preceded by
the line ``<!-- docs-test: skip (why) -->``.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import torch

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "```python" in p.read_text())
# pages whose examples import optional packages
NEEDS = {"attention.md": "transformers"}
SLOW = {"rkbs.md"}  # about a minute on two busy cores


_BLOCK = re.compile(r"(<!-- docs-test: skip[^\n]*-->\s*\n)?[ \t]*```python\n(.*?)```", flags=re.S)


def _blocks(page: Path) -> list[str]:
    return [textwrap.dedent(code) for skip, code in _BLOCK.findall(page.read_text()) if not skip]


@pytest.mark.parametrize(
    "page",
    [pytest.param(p, id=p.name, marks=[pytest.mark.slow] if p.name in SLOW else []) for p in PAGES],
)
def test_docs_examples_run(page, tmp_path, monkeypatch):
    if page.name in NEEDS:
        pytest.importorskip(NEEDS[page.name])
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    monkeypatch.syspath_prepend(str(DOCS.parent / "benchmarks"))  # the harness page imports benchmarks/_harness
    torch.manual_seed(0)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for i, code in enumerate(_blocks(page)):
        exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)


def test_every_page_is_collected():
    assert {"index.md", "attention.md", "triton_ops.md", "rkbs.md"} <= {p.name for p in PAGES}


PUBLIC_MODULES = [
    "rkbs", "rkbs.kernels", "rkbs.estimators", "rkbs.solvers", "rkbs.operators", "rkbs.model_selection",
    "rkbs.datasets", "rkbs.distributed", "rkbs.rows", "attention_kernels", "attention_kernels.functional", "attention_kernels.modules",
    "attention_kernels.hf", "attention_kernels.swap", "triton_ops", "attention_kernels.testbeds.datasets",
    "attention_kernels.testbeds.models", "attention_kernels.testbeds.energy",
]


def _documented() -> tuple[set[str], set[str]]:
    """(names listed on the API pages, modules documented whole) from the mkdocstrings directives."""
    names, whole = set(), set()
    for page in (DOCS / "api").glob("*.md"):
        text = page.read_text()
        for target, options in re.findall(r"^::: ([\w.]+)\n((?:    .*\n)*)", text, flags=re.M):
            members = re.findall(r"^        - (\w+)$", options, flags=re.M)
            names.update(members or [target.rsplit(".", 1)[-1]])
            if not members:
                whole.add(target)
    return names, whole


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_public_name_is_in_the_api_reference(module):
    import importlib
    import types

    mod = importlib.import_module(module)
    names, whole = _documented()
    public = [n for n in mod.__all__ if not isinstance(getattr(mod, n), types.ModuleType)]
    # lower-case aliases of documented classes (rkbs.kernels.rbf is RBF) count as documented
    missing = [n for n in public if module not in whole and n not in names
               and getattr(getattr(mod, n), "__name__", None) not in names]
    assert not missing, f"{module}: {missing} missing from docs/api/"
