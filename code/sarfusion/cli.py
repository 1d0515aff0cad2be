"""The one entry point: ``sarfusion <command> ...`` (also ``python -m sarfusion``).

Each capability owns its subcommands in its own ``commands`` module, exposing
``register(subparsers)``; this file only lists them and turns bad input into one clear line.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from typing import Any, Sequence

from sarfusion import __version__
from sarfusion.errors import InputError

# Modules that add subcommands, in the order --help lists them.
COMMAND_MODULES = (
    "sarfusion.synth.commands",        # synth sn6 | sn9 | sen12 | multiearth
    "sarfusion.tasks.fusion_commands",  # fuse, colorize
    "sarfusion.tasks.buildings_commands",  # buildings train/predict, experiment
    "sarfusion.registration.commands",  # register, keypoints train
    "sarfusion.tasks.translate_commands",  # translate train/predict, clouds
    "sarfusion.metrics.commands",      # score buildings | tiepoints | translation
    "sarfusion.pipeline",              # train, test, demo (what train.sh / test.sh / make demo run)
)


def print_json(obj: Any) -> None:
    """The one JSON object a ``--json`` command prints on stdout."""
    sys.stdout.write(json.dumps(obj, indent=None, sort_keys=False, default=float) + "\n")
    sys.stdout.flush()


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print exactly one JSON object on stdout (logs go to stderr)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sarfusion",
        description=(
            "SAR + optical satellite imagery: HSV fusion and Pix2Pix colorization, building "
            "footprints (SpaceNet 6), optical-SAR registration (SpaceNet 9), SAR-to-optical "
            "translation (MultiEarth / SEN1-2), and the bundled scorers."
        ),
        epilog="Run 'sarfusion <command> --help' for a command's inputs, outputs and defaults.",
    )
    parser.add_argument("--version", action="version", version=f"sarfusion {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # capability not installed in this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except InputError as exc:
        print(f"sarfusion {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
