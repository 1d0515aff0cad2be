# One-command entry points. Both set everything up first (idempotent, fast when done).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export NO_ALBUMENTATIONS_UPDATE := 1
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test bench clean

setup:
	@bash scripts/setup.sh

## make demo: generate the synthetic scenes, train every pipeline (demo preset), test, score
demo: setup
	@$(PY) -m sarfusion demo --out demo_out --weights weights

## make test: the whole test suite
test: setup
	@$(PY) -m pytest -q tests

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf demo_out .pytest_cache
