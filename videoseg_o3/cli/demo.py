"""``videoseg-o3 demo``: the whole inference path on its embedded default — tiny model, generated data, CPU.

It renders a few synthetic reasoning-VOS videos (ReVOS layout), writes a random tiny checkpoint,
segments one video (mask PNGs, overlay video, turns JSON) and scores the checkpoint on every
expression with the benchmark evaluator. What it deliberately simplifies: the tiny model is random,
so its turns are not well-formed and its masks mean nothing — the demo shows that every stage runs
and every file is right; point ``--ckpt`` at a real checkpoint for real masks.
"""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "Run the whole pipeline on generated videos with a tiny random checkpoint (CPU, about a minute)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="Output folder (default runs/demo).")
    parser.add_argument("--videos", type=int, default=3, help="Synthetic videos to render (default 3).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the videos and of the tiny model.")
    parser.add_argument("--ckpt", default=None, help="Use this checkpoint instead of writing a tiny random one.")
    parser.add_argument("--device", default="auto", help="auto, cpu, or a CUDA device.")


def run(args: argparse.Namespace) -> int:
    import json
    import shutil
    from pathlib import Path

    from videoseg_o3.checkpoint import init_tiny_checkpoint
    from videoseg_o3.data import load_benchmark
    from videoseg_o3.data.synthetic import SynthConfig, generate_split
    from videoseg_o3.evaluation import evaluate
    from videoseg_o3.output import frame_names, write_mask_folder, write_overlay_video
    from videoseg_o3.pipeline import BenchmarkPredictor, VideoSegO3

    if args.videos < 1:
        raise ValueError(f"Invalid --videos ({args.videos}): use at least 1.")
    out = Path(args.out)
    data = out / "data"
    if data.exists():
        shutil.rmtree(data)  # the demo's own generated data: regenerate it for this seed
    print(f"[1/4] rendering {args.videos} synthetic videos -> {data}")
    generate_split(data, args.videos, seed=args.seed, split="test", cfg=SynthConfig(frames=(12, 20), size=(64, 96)))
    ckpt = Path(args.ckpt) if args.ckpt else out / "ckpt"
    if args.ckpt is None:
        print(f"[2/4] writing a tiny random checkpoint -> {ckpt}")
        init_tiny_checkpoint(ckpt, seed=args.seed, overwrite=True)
    else:
        print(f"[2/4] using checkpoint {ckpt}")
    pipeline = VideoSegO3.from_pretrained(ckpt, device=args.device)

    dataset = load_benchmark(data, "revos")
    first = next(iter(dataset))
    print(f"[3/4] segmenting video {first.video_id!r} for {first.expression!r}")
    reader = first.open_video()
    result = pipeline.segment(reader, first.expression)
    seg_dir = out / "segment"
    write_mask_folder(seg_dir / "masks", result.masks, frame_names(reader))
    write_overlay_video(seg_dir / "overlay.mp4", reader, result.masks)
    (seg_dir / "turns.json").write_text(json.dumps({"query": first.expression, **result.to_json()}, indent=2) + "\n")
    if args.ckpt is None:
        print("      (the tiny model has random weights: malformed turns and empty or arbitrary masks are expected;"
              " the demo shows that every stage runs and every file is written)")
    for turn in result.turns:
        print(f"      turn {turn['index']}: {turn['action']}" + (f" ({turn['error']})" if turn["error"] else ""))
    print(f"      anchor frame {result.anchor_frame}; masks, overlay.mp4 and turns.json in {seg_dir}")
    # The ground-truth reasoning trace of the same expression, teacher-forced through the policy: it
    # shows the coarse-to-fine path (select an interval, look at the keyframe, answer) end to end.
    trace = next(
        (r for r in json.loads((data / "vts_cot.json").read_text())
         if r["video_name"] == first.video_id and r["exp"] == first.expression),
        None,
    )
    if trace is not None:
        import dataclasses

        replay = VideoSegO3(pipeline.policy, pipeline.segmenter, pipeline.protocol,
                            dataclasses.replace(pipeline.generation, max_new_tokens=512), mode=pipeline.mode)
        scripted = [c["value"] for c in trace["conversations"] if c["from"] == "gpt"]
        forced = replay.segment(reader, first.expression, forced_turns=scripted)
        path = " -> ".join(f"{t['action']} {t['interval']} key {t['keyframe']}" for t in forced.turns)
        print(f"      replaying the ground-truth trace: {path}; anchor frame {forced.anchor_frame}; "
              f"prefill tokens {forced.trajectory.prefill_tokens}, frames decoded {getattr(reader, 'num_decoded', '?')}")

    print(f"[4/4] scoring the checkpoint on all {len(list(dataset))} expressions")
    predictor = BenchmarkPredictor(pipeline)
    scores = evaluate(dataset, predictor, progress=False)
    print(scores.format_table())
    print(f"turns per episode: {predictor.stats()['turns']}")
    if args.ckpt is None:
        print("(random weights: these scores are what empty or arbitrary masks get, not a measure of the method;"
              " pass --ckpt with a trained checkpoint for real numbers)")
    record = {**scores.to_dict(), "model": {"checkpoint": str(ckpt), **predictor.stats()}}
    (out / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out / 'results.json'}")
    return 0
