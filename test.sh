#!/usr/bin/env bash
# test.sh /data OUT.csv : run the models in weights/ (no retraining) on /data.
# Writes OUT.csv (SN6 submission), OUT_offsets/ (SN9 offset maps), OUT_translated/,
# OUT_colorized/ and OUT_scores.json where truth is present.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -eq 2 ] || { echo "usage: test.sh /data OUT.csv" >&2; exit 2; }
PY="${SARFUSION_PYTHON:-$here/.venv/bin/python}"; [ -x "$PY" ] || PY=python3
exec "$PY" -m sarfusion test "$1" "$2" --weights "$here/weights"
