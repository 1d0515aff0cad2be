"""Presets: one config dataclass per capability, a ``demo`` (CPU minutes) and a ``full`` recipe."""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
from typing import Any, Mapping, TypeVar

from sarfusion.errors import InputError

T = TypeVar("T")
PRESETS = ("demo", "full")
log = logging.getLogger(__name__)


def choose_preset(presets: Mapping[str, T], name: str) -> T:
    """A fresh copy of preset ``name``; an unknown name lists the valid ones."""
    if name not in presets:
        raise InputError(f"unknown preset {name!r}; choose one of: {', '.join(presets)}")
    return copy.deepcopy(presets[name])


def describe(config: Any) -> str:
    """The config as indented JSON, printed at the start of every run."""
    data = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return json.dumps(data, indent=2, default=str)
