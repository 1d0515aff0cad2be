"""Presets: one config dataclass per capability, a ``demo`` (CPU minutes) and a ``full`` recipe.

A capability may also have a ``cpu`` recipe (the best it can do on a CPU in reasonable time, e.g.
translation on real pairs); asking a capability without one for ``cpu`` gives its ``demo``.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
from typing import Any, Mapping, TypeVar

from sarfusion.errors import InputError

T = TypeVar("T")
PRESETS = ("demo", "cpu", "full")
log = logging.getLogger(__name__)


def choose_preset(presets: Mapping[str, T], name: str) -> T:
    """A fresh copy of preset ``name`` (``cpu`` falls back to ``demo`` where a capability has no
    CPU recipe of its own); an unknown name lists the valid ones."""
    if name == "cpu" and name not in presets and "demo" in presets:
        name = "demo"
    if name not in presets:
        raise InputError(f"unknown preset {name!r}; choose one of: {', '.join(presets)}")
    return copy.deepcopy(presets[name])


def describe(config: Any) -> str:
    """The config as indented JSON, printed at the start of every run."""
    data = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return json.dumps(data, indent=2, default=str)
