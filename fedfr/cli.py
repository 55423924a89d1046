"""The ``fedfr`` command line: one sub-command per task, each in ``fedfr/commands/<name>.py``.

A command module defines ``add_arguments(parser)`` and ``main(args) -> int``; its one-line help
lives in ``COMMANDS`` so that only the module of the command being run is imported.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from fedfr.errors import run_entry_point

#: command name -> (module under fedfr.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "export": ("export", "write each client's partition and the public set to its own folder"),
    "evaluate": ("evaluate", "evaluate a checkpoint on IJB-C (1:1, 1:N), verification .bin sets "
                             "or a re-ID dataset (CMC, mAP, mINP)"),
    "prune": ("prune", "prune a model to FLOPs/params/latency targets (CAIE, CPO, Taylor, L1, "
                       "uniform), fine-tune, save it and report"),
    "track": ("track", "online multi-camera tracking: detector, BYTE, re-ID clip features, "
                       "cross-camera gallery, result files and an evaluation table"),
    "split": ("split", "build the paper's MS-Celeb-1M split manifest (and node data)"),
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``selected``'s module is imported (all of them if None)."""
    parser = argparse.ArgumentParser(prog="fedfr", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of a user error (default: one line, exit 2)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if selected in (None, name):
            module = importlib.import_module(f"fedfr.commands.{module_name}")
            module.add_arguments(p)
            p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; a user error (config, data, files) prints one line and returns 2
    (``fedfr.errors.run_entry_point``)."""
    argv = sys.argv[1:] if argv is None else argv
    selected = next((a for a in argv if a in COMMANDS), "")
    args = build_parser(selected).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_entry_point(lambda: args._module.main(args), f"fedfr {args.command}",
                           debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
