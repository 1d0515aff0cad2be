#!/usr/bin/env bash
# test.sh /data OUT.csv : run the models in weights/ (no retraining) on /data.
# Writes OUT.csv (SN6 submission), OUT_buildings.gpkg (map footprints), OUT_offsets/ and
# OUT_aligned/ (SN9 offset maps, SAR on the optical grid), OUT_colorized/, OUT_translated/,
# OUT_scores.json where truth is present, OUT_previews/ and OUT_report.html.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -eq 2 ] || { echo "usage: test.sh /data OUT.csv" >&2; exit 2; }
PY="${SARFUSION_PYTHON:-$here/.venv/bin/python}"; [ -x "$PY" ] || PY=python3
exec "$PY" -m sarfusion test "$1" "$2" --weights "$here/weights"
