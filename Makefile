# The README's two commands: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# CPU build of PyTorch; override (e.g. TORCH_SPEC="torch") on a machine with CUDA.
TORCH_SPEC ?= torch==2.13.0
export MUJOCO_GL ?= egl
DEMO_DIR ?= runs/demo

.PHONY: demo test test-slow lint bench install clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The tour replaces its previous files in $(DEMO_DIR): vantage demo refuses to without --overwrite.
demo: $(VENV)/.installed
	$(VENV)/bin/vantage demo --out $(DEMO_DIR) --overwrite

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -m "not slow"

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -m slow

bench: $(VENV)/.installed
	$(VENV)/bin/vantage bench env tracking --json --overwrite
	$(VENV)/bin/vantage bench rewards tracking

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info
