"""``videoseg-o3 init-tiny OUT_DIR``: write a complete random tiny checkpoint that every command loads."""

from __future__ import annotations

import argparse

NAME = "init-tiny"
HELP = "Write a random tiny checkpoint (tiny Qwen-VL policy + tiny SAM2 + config) for tests and smoke runs."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", help="Directory to create (must be empty or absent).")
    parser.add_argument("--family", default="qwen3_vl", choices=["qwen3_vl", "qwen2_5_vl"],
                        help="Policy family (default: qwen3_vl).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random weights (default: 0).")
    parser.add_argument("--overwrite", action="store_true", help="Replace OUT_DIR if it already holds files.")


def run(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from videoseg_o3.checkpoint import init_tiny_checkpoint

    hf_logging.disable_progress_bar()  # a few-MB write needs no shard progress bar

    try:
        path = init_tiny_checkpoint(args.out_dir, family=args.family, seed=args.seed, overwrite=args.overwrite)
    except FileExistsError as err:
        raise ValueError(str(err)) from err
    print(f"wrote tiny {args.family} checkpoint to {path}")
    return 0
