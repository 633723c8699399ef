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
    torch.manual_seed(0)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for i, code in enumerate(_blocks(page)):
        exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)


def test_every_page_is_collected():
    assert {"index.md", "attention.md", "triton_ops.md", "rkbs.md"} <= {p.name for p in PAGES}
