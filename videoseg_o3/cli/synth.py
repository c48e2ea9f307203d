"""``videoseg-o3 synth``: render the synthetic reasoning-VOS task in a benchmark layout.

Writes ``OUT/<split>/`` for each split: frames, ``meta_expressions.json``, masks (``mask_dict.json`` +
``mask_dict_foreground.json`` in the default ReVOS layout) and, for mask_dict layouts, the VTS-CoT SFT
records (``vts_cot.json``) and RL records (``rl_data.json``). See ``videoseg_o3.data.synthetic`` for the
query grammar and the difficulty knobs.
"""

from __future__ import annotations

import argparse
import json

NAME = "synth"
HELP = "Render the synthetic reasoning-VOS task (videos, masks, queries, VTS-CoT and RL records)."

_LAYOUTS = ("revos", "mevis", "reasonvos", "refytvos", "davis")
_SPLITS = ("train", "val", "test")


def _int_range(text: str) -> tuple[int, int]:
    parts = text.split("-")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid range {text!r}: expected MIN-MAX or N (integers)") from None
    if len(values) == 1:
        return values[0], values[0]
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"invalid range {text!r}: expected MIN-MAX or N")
    return values  # type: ignore[return-value]


def _splits(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in _SPLITS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"invalid split {text!r}: supported values are {', '.join(_SPLITS)} (comma-separated)")
    return list(dict.fromkeys(names))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="Output folder; each split goes to OUT/<split>/.")
    parser.add_argument("--videos", type=int, default=100, help="Videos per split (default 100).")
    parser.add_argument("--seed", type=int, default=0, help="Random seed; the same seed gives the same files.")
    parser.add_argument("--split", type=_splits, default=["train"], help="Comma-separated splits: train,val,test (default train).")
    parser.add_argument("--frames", type=_int_range, default=(16, 48), help="Frames per video, MIN-MAX (default 16-48).")
    parser.add_argument("--size", type=_int_range, default=(64, 160), help="Frame height and width in pixels, MIN-MAX (default 64-160).")
    parser.add_argument("--objects", type=_int_range, default=(2, 4), help="Objects per video, MIN-MAX (default 2-4).")
    parser.add_argument("--queries-per-video", dest="queries_per_video", type=int, default=3, help="Expressions per video (default 3).")
    parser.add_argument("--think", dest="think_style", choices=("full", "terse"), default="full",
                        help="Think text of the VTS-CoT traces: full sentences or terse notes (default full).")
    parser.add_argument("--turns", dest="turn_plan", choices=("random", "adaptive"), default="random",
                        help="Turns of the VTS-CoT traces: random (1-3, whatever the query; default) or adaptive (one, "
                             "or a closer look first when the first user turn does not show the keyframe).")
    parser.add_argument("--layout", choices=_LAYOUTS, default="revos", help="Benchmark layout to write (default revos).")
    parser.add_argument("--no-records", dest="records", action="store_false", help="Skip vts_cot.json and rl_data.json.")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="Hide the progress bar.")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from videoseg_o3.data.synthetic import SynthConfig, generate_split

    if args.videos < 1:
        raise ValueError(f"Invalid --videos ({args.videos}). Expected >= 1.")
    cfg = SynthConfig(frames=args.frames, size=args.size, objects=args.objects, queries_per_video=args.queries_per_video,
                      think_style=args.think_style, turn_plan=args.turn_plan)
    for split in args.split:
        info = generate_split(
            Path(args.out) / split, args.videos, seed=args.seed, split=split, layout=args.layout, cfg=cfg,
            records=args.records, progress=args.progress,
        )
        print(json.dumps({k: v for k, v in info.items() if k != "config"} | {"path": str(Path(args.out) / split)}))
    return 0
