# Two entry points: `make demo` and `make test`. Both set up .venv themselves.
PY ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
TORCH_WHEEL ?= torch==2.13.0

.PHONY: demo test setup system-packages

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "need $(PY): apt-get install python3.11 python3.11-venv"; exit 1; }
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q "$(TORCH_WHEEL)"
	$(VENV)/bin/pip install -q -e ".[all,fleet]"
	touch $(STAMP)

system-packages:
	@bash scripts/system_packages.sh

setup: system-packages $(STAMP)

demo: setup
	$(VENV)/bin/lpbf-edge demo --layers 6 --out demo-out

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/python scripts/code_size.py edge calib firmware_bridge trt_build lpbf_common
	$(VENV)/bin/python -m pytest -q
