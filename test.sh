#!/usr/bin/env bash
# test.sh /data OUT.csv : run the models in weights/ (no retraining) on /data.
# Writes OUT.csv (SN6 submission), OUT_buildings.gpkg (map footprints), OUT_offsets/ and
# OUT_aligned/ (SN9 offset maps, SAR on the optical grid), OUT_colorized/, OUT_translated/,
# OUT_scores.json where truth is present, OUT_previews/ and OUT_report.html.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -eq 2 ] || { echo "usage: test.sh /data OUT.csv" >&2; exit 2; }
PY="${SARFUSION_PYTHON:-$here/.venv/bin/python}"; [ -x "$PY" ] || PY=python3
# NPROC=N: N processes (one GPU each) share the SN6 tiles, SN9 scenes and translation folders;
# rank 0 writes the same outputs one process writes (several nodes: README, "Several GPUs").
if [ "${NPROC:-1}" -gt 1 ]; then
    exec "$PY" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m sarfusion test "$1" "$2" \
        --weights "$here/weights"
fi
exec "$PY" -m sarfusion test "$1" "$2" --weights "$here/weights"
