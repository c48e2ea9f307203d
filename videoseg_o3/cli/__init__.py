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
import os
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


def quiet_libraries() -> None:
    """Silence library chatter that says nothing to a user of the command: transformers' notice about
    ``mean_resizing`` when ``[SEG]`` grows the embeddings, its info logs, and the "Loading weights" bars
    shown on every checkpoint load. Errors still print. ``VIDEOSEG_DEBUG=1`` keeps everything; the
    ``TRANSFORMERS_VERBOSITY`` and ``HF_HUB_DISABLE_PROGRESS_BARS`` variables, when set, win.
    """
    if os.environ.get("VIDEOSEG_DEBUG") == "1":
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # imported already (e.g. main() called from Python): set it directly
        from transformers.utils import logging as hf_logging

        if os.environ["TRANSFORMERS_VERBOSITY"] == "error":
            hf_logging.set_verbosity_error()
        if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1":
            hf_logging.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_libraries()
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        # Bad input is reported as one clear line, not a traceback; VIDEOSEG_DEBUG=1 shows the trace.
        if os.environ.get("VIDEOSEG_DEBUG") == "1":
            raise
        print(f"videoseg-o3 {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
