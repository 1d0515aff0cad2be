#!/usr/bin/env python
"""Generate synthetic scenes: same as ``sarfusion synth ...`` (see ``--help``)."""
import sys

from sarfusion.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["synth", *sys.argv[1:]]))
