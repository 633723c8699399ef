# Two entry points: `make demo` and `make test`. Both create or reuse .venv and install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# A local wheel of the CPU build of torch, where the machine provides one (avoids the multi-GB CUDA build).
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels)
export NO_MKDOCS_2_WARNING := 1

.PHONY: demo test docs bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(FIND_LINKS) -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

test: $(STAMP)
	$(PY) -m pytest -n 2 -q
	$(PY) -m mkdocs build --strict -q -d .site

docs: $(STAMP)
	$(PY) -m mkdocs build --strict -d .site

clean:
	rm -rf $(VENV) .site .pytest_cache build *.egg-info
