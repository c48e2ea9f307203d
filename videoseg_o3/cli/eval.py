"""``videoseg-o3 eval``: score predicted masks on a benchmark, or pack them for a server.

The predictions come from a folder (``--pred``) or from a model (``--ckpt``: the pipeline runs on every
expression; with ``--pred`` too, its masks are saved there first, then scored from the folder).

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
    parser.add_argument("--pred", default=None, help="Predictions folder: PRED/<video>/<expression_id>/<frame>.png (with --ckpt: where to save the model's masks).")
    parser.add_argument("--ckpt", default=None, help="Run this checkpoint on every expression instead of reading predictions.")
    parser.add_argument("--device", default="auto", help="With --ckpt: auto, cpu, or a CUDA device.")
    parser.add_argument("--limit", type=int, default=None, help="Score only the first N expressions (a quick check).")
    parser.add_argument("--max-turns", dest="max_turns", type=int, default=None,
                        help="With --ckpt: most assistant turns per episode instead of the checkpoint's (1: answer from the "
                             "first view; a <select> in the last turn still ends the episode with its [SEG]).")
    parser.add_argument("--out", default=None, help="Write the full result (per expression, per subset, overall) as JSON here.")
    parser.add_argument("--submission", default=None, help="Also write the server submission zip here (mevis, refytvos).")
    parser.add_argument("--meta-file", dest="meta_file", default=None, help="Expression file, if not the layout's default name.")
    parser.add_argument(
        "--missing", choices=("error", "empty", "zero"), default="error",
        help="A missing prediction PNG is an error (default), an empty mask, or scores the expression 0 (the official scripts' rule).",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="Hide the progress bar.")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from videoseg_o3.data import load_benchmark
    from videoseg_o3.evaluation import SUBMISSION_FORMATS, PredictionsDir, evaluate, write_submission

    if args.pred is None and args.ckpt is None:
        raise ValueError("Give --pred PRED_DIR (a predictions folder) or --ckpt CKPT_DIR (run a model), or both.")
    if args.ckpt is not None and args.submission and args.pred is None:
        raise ValueError("With --ckpt and --submission, also give --pred PRED_DIR so the model runs once and both read its saved masks.")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"Invalid --limit ({args.limit}): use a positive number of expressions.")
    if args.max_turns is not None and (args.max_turns < 1 or args.ckpt is None):
        raise ValueError(f"Invalid --max-turns ({args.max_turns}): use a positive number of turns, with --ckpt.")
    dataset = load_benchmark(args.root, args.format, meta_file=args.meta_file)
    if args.limit is not None:
        dataset = list(dataset)[: args.limit]
    model = None
    if args.ckpt is not None:
        from videoseg_o3.evaluation import write_predictions
        from videoseg_o3.pipeline import BenchmarkPredictor, VideoSegO3

        protocol = None
        if args.max_turns is not None:
            from videoseg_o3.checkpoint import read_checkpoint_config

            protocol = dataclasses.replace(read_checkpoint_config(args.ckpt).protocol, max_turns=args.max_turns)
        model = BenchmarkPredictor(VideoSegO3.from_pretrained(args.ckpt, device=args.device, protocol=protocol))
        if args.pred is not None:
            count = write_predictions(dataset, model, args.pred, progress=args.progress)
            print(f"wrote {count} predicted masks to {args.pred}")
    predictions = PredictionsDir(args.pred, missing=args.missing) if args.pred is not None else model
    if args.submission:
        if args.format not in SUBMISSION_FORMATS:
            raise ValueError(f"Invalid --submission for format {args.format}: server zips exist for "
                             f"{' and '.join(SUBMISSION_FORMATS)} only.")
        count = write_submission(dataset, predictions, args.submission, format=args.format, progress=args.progress)
        print(f"wrote {count} masks to {args.submission}")
    if not getattr(dataset, "has_ground_truth", all(r.has_masks for r in dataset)):
        if args.submission:
            return 0
        if args.format in SUBMISSION_FORMATS:
            raise ValueError(f"No ground truth under {args.root} (no mask_dict.json / Annotations): score this split "
                             "with --submission on the benchmark server.")
        raise ValueError(f"No ground truth under {args.root} (no mask_dict.json / Annotations): --format {args.format} "
                         "is scored locally and needs its ground-truth masks; point --root at a split that has them "
                         f"(server submission zips exist for {' and '.join(SUBMISSION_FORMATS)} only).")
    result = evaluate(dataset, predictions, progress=args.progress)
    print(result.format_table())
    if isinstance(predictions, PredictionsDir) and predictions.num_missing_frames:
        print(f"note: {predictions.num_missing_frames} missing prediction frames were scored as empty masks")
    if model is not None:
        stats = model.stats()
        print(f"turns per episode: {stats['turns']}  stop reasons: {stats['stop_reasons']}")
    if args.out:
        result.save_json(args.out)
        if model is not None:
            import json
            from pathlib import Path

            record = json.loads(Path(args.out).read_text())
            record["model"] = {"checkpoint": str(args.ckpt), "max_turns": model.pipeline.protocol.max_turns, **model.stats()}
            Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0
