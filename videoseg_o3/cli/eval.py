"""``videoseg-o3 eval``: score a folder of predicted masks on a benchmark, or pack it for a server.

Predictions are ``PRED/<video>/<expression_id>/<frame>.png`` (0 = background, nonzero = foreground), the
layout the official evaluation scripts read. Prints a table (J&F, J, F; A and R for ReVOS; one row per
subset), writes the full result as JSON with ``--out``, and writes the MeViS / Ref-YouTube-VOS server zip
with ``--submission``.
"""

from __future__ import annotations

import argparse

NAME = "eval"
HELP = "Score predicted masks on ReVOS / MeViS / ReasonVOS / Ref-YouTube-VOS / Ref-DAVIS17 layouts (J, F, J&F, A, R)."

_FORMATS = ("revos", "mevis", "reasonvos", "refytvos", "davis")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=_FORMATS, help="Benchmark layout and aggregation rule.")
    parser.add_argument("--root", required=True, help="Dataset split folder (JPEGImages, meta_expressions.json, masks).")
    parser.add_argument("--pred", required=True, help="Predictions folder: PRED/<video>/<expression_id>/<frame>.png.")
    parser.add_argument("--out", default=None, help="Write the full result (per expression, per subset, overall) as JSON here.")
    parser.add_argument("--submission", default=None, help="Also write the server submission zip here (mevis, refytvos).")
    parser.add_argument("--meta-file", dest="meta_file", default=None, help="Expression file, if not the layout's default name.")
    parser.add_argument(
        "--missing", choices=("error", "empty", "zero"), default="error",
        help="A missing prediction PNG is an error (default), an empty mask, or scores the expression 0 (the official scripts' rule).",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="Hide the progress bar.")


def run(args: argparse.Namespace) -> int:
    from videoseg_o3.data import load_benchmark
    from videoseg_o3.evaluation import PredictionsDir, evaluate, write_submission

    dataset = load_benchmark(args.root, args.format, meta_file=args.meta_file)
    predictions = PredictionsDir(args.pred, missing=args.missing)
    if args.submission:
        if args.format not in ("mevis", "refytvos"):
            raise ValueError(f"Invalid --submission for format {args.format}: server zips exist for mevis and refytvos only.")
        count = write_submission(dataset, predictions, args.submission, format=args.format, progress=args.progress)
        print(f"wrote {count} masks to {args.submission}")
    if not dataset.has_ground_truth:
        if args.submission:
            return 0
        raise ValueError(f"No ground truth under {args.root} (no mask_dict.json / Annotations): score this split with --submission on the benchmark server.")
    result = evaluate(dataset, predictions, progress=args.progress)
    print(result.format_table())
    if predictions.num_missing_frames:
        print(f"note: {predictions.num_missing_frames} missing prediction frames were scored as empty masks")
    if args.out:
        result.save_json(args.out)
        print(f"wrote {args.out}")
    return 0
