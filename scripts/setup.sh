#!/usr/bin/env bash
# Idempotent setup for a fresh Debian machine (root, Python 3.11, no GPU needed):
# system GDAL (+ Chromium for the report test), a venv at .venv, the pinned requirements, GDAL's
# Python bindings, the package.
# Fast when already done: a stamp records the hash of what was installed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
STAMP=$VENV/.sarfusion-installed
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}

want=$(cat requirements.txt pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$VENV/bin/python" -c "from osgeo import gdal_array" 2>/dev/null; then
  exit 0
fi

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
if ! command -v gdal-config >/dev/null 2>&1; then
  echo "[setup] installing system GDAL (libgdal-dev gdal-bin)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libgdal-dev gdal-bin >/dev/null
fi
# Headless Chromium renders the run report in the test suite; without it that one test skips.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "[setup] installing chromium (the report's browser test)"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null; } \
    || echo "[setup] chromium not installed: the report's browser test will skip"
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
echo "[setup] installing pinned requirements into $VENV (first time: several minutes, ~6 GB for torch)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip wheel setuptools 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "is ignored" || true
# GDAL bindings must be built after numpy is present, or they silently lack array support.
if ! "$VENV/bin/python" -c "from osgeo import gdal_array" 2>/dev/null; then
  echo "[setup] building GDAL $(gdal-config --version) Python bindings"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir --no-build-isolation "GDAL==$(gdal-config --version)" 2>&1 | grep -v "is ignored" || true
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -W ignore -c "from osgeo import gdal_array; import torch, segmentation_models_pytorch, sarfusion" \
  || { echo "[setup] FAILED: the environment does not import (see messages above)" >&2; exit 1; }
echo "$want" > "$STAMP"
echo "[setup] done: $VENV ready"
