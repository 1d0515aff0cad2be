"""Optical -> SAR registration (SpaceNet 9): scene alignment on a common grid, oriented-gradient
features, FFT template matching, robust offset fields, the keypoint U-Net baseline.

Public API (imported lazily so ``import sarfusion.registration`` stays light):
``register_pair``, ``register_scene`` (api), ``train_keypoints`` (keypoints).
"""
from __future__ import annotations

from typing import Any

__all__ = ["register_pair", "register_scene", "train_keypoints"]


def __getattr__(name: str) -> Any:
    if name in ("register_pair", "register_scene"):
        from sarfusion.registration import api
        return getattr(api, name)
    if name == "train_keypoints":
        from sarfusion.registration.keypoints import train_keypoints
        return train_keypoints
    raise AttributeError(name)
