"""The ``videoseg-o3`` command.

Each subcommand is one module in this package defining::

    NAME: str                       # the subcommand, e.g. "segment"
    HELP: str                       # one line for --help
    def add_arguments(parser): ...  # argparse arguments; flags equal config field names
    def run(args) -> int: ...       # exit code

Modules are discovered, so adding a command touches no shared file. Command modules keep their
top-level imports light (torch, transformers, sam2 load inside ``run``) so ``--help`` and ``info`` are fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from types import ModuleType
from typing import Sequence


def _command_modules() -> list[ModuleType]:
    modules = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "run"):
            modules.append(module)
    return modules


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per command module."""
    from videoseg_o3 import __version__

    parser = argparse.ArgumentParser(
        prog="videoseg-o3",
        description="Reasoning video object segmentation: multi-turn VLM policy + SAM2.",
    )
    parser.add_argument("--version", action="version", version=f"videoseg-o3 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _command_modules():
        command_parser = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        # Bad input is reported as one clear line, not a traceback; VIDEOSEG_DEBUG=1 shows the trace.
        import os

        if os.environ.get("VIDEOSEG_DEBUG") == "1":
            raise
        print(f"videoseg-o3 {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
