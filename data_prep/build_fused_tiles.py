#!/usr/bin/env python
"""Build SN6 fused RGB+SAR tiles and SPAN tiles for an AOI folder (a thin wrapper around
``sarfusion fuse``, which see for inputs, outputs and options).

    python data_prep/build_fused_tiles.py /data/train/AOI_11_Rotterdam --out /wdata/fused [--mode notebook] [--preview DIR]
"""
from __future__ import annotations

import sys

from sarfusion.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["fuse", *sys.argv[1:]]))
