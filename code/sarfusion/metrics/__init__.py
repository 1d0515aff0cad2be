"""Bundled scorers: SpaceNet building F1, SpaceNet 9 tie-point offsets, translation image quality.

Each metric is computed in two stages (counts or per-item errors first, then each score a
one-liner) by pure functions; ``sarfusion score ...`` (:mod:`sarfusion.metrics.commands`) is a
thin wrapper. Submodules are imported on first use so ``sarfusion --help`` stays fast.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "score_buildings": "sarfusion.metrics.buildings",
    "score_tiepoints": "sarfusion.metrics.tiepoints",
    "score_translation": "sarfusion.metrics.image_quality",
    "psnr": "sarfusion.metrics.image_quality",
    "ssim": "sarfusion.metrics.image_quality",
    "multiearth_score": "sarfusion.metrics.image_quality",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sarfusion.metrics' has no attribute {name!r}")
