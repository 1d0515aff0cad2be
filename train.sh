#!/usr/bin/env bash
# train.sh /data : train every capability /data supports; models are written to weights/.
# /data may be read-only; scratch goes to $WDATA (default: ./wdata). PRESET=demo|cpu|full
# (default: full on a machine with an NVIDIA GPU, cpu otherwise; cpu is demo where a capability
# has no CPU recipe of its own).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -eq 1 ] || { echo "usage: train.sh /data" >&2; exit 2; }
PY="${SARFUSION_PYTHON:-$here/.venv/bin/python}"; [ -x "$PY" ] || PY=python3
if [ -z "${PRESET:-}" ]; then command -v nvidia-smi >/dev/null 2>&1 && PRESET=full || PRESET=cpu; fi
# ENCODER_WEIGHTS=imagenet|none|PATH: the building encoder's start (default: the preset's; full: imagenet).
# FOLDS=K: building models on K easting-band folds (default: the preset's; full: 8).
exec "$PY" -m sarfusion train "$1" --weights "$here/weights" --work "${WDATA:-$here/wdata}" --preset "$PRESET" \
    ${ENCODER_WEIGHTS:+--encoder-weights "$ENCODER_WEIGHTS"} ${FOLDS:+--folds "$FOLDS"}
