"""``videoseg-o3 segment VIDEO "QUERY" --ckpt DIR --out OUT_DIR``: masks for one video and one question.

Writes, under OUT_DIR:
- ``masks/<frame>.png``: one 0/255 PNG per frame at the video's size (frame names follow the source
  frames for image folders, the benchmarks' convention; ``00000.png``... for video files);
- ``overlay.mp4``: the video with the mask blended in (``--no-overlay`` skips it);
- ``turns.json``: the turns (text, action, interval, keyframe, frames shown), the anchor frame and timings.
"""

from __future__ import annotations

import argparse

NAME = "segment"
HELP = "Segment the object a question refers to in every frame of a video (masks, overlay video, turns JSON)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", metavar="VIDEO", help="Video file (mp4, mkv, webm, avi, mov) or a folder of JPEG/PNG frames.")
    parser.add_argument("query", metavar="QUERY", help="The question or referring expression.")
    parser.add_argument("--ckpt", required=True, help="Checkpoint directory (videoseg-o3 init-tiny, training output, or a released VideoSEG-O3 directory).")
    parser.add_argument("--out", required=True, help="Output directory (created).")
    parser.add_argument("--device", default="auto", help="auto, cpu, or a CUDA device such as cuda:0.")
    parser.add_argument("--mode", choices=("kv", "reencode"), default="kv", help="Reuse the KV cache across turns (kv) or re-encode the dialogue each turn.")
    parser.add_argument("--backend", choices=("torch", "onnxruntime", "tensorrt"), default="torch",
                        help="Run eager PyTorch, or the exported graphs on ONNX Runtime or TensorRT (python -m export.trt).")
    parser.add_argument("--export-dir", dest="export_dir", default=None,
                        help="Directory written by python -m export.trt (default: CKPT/export).")
    # the modes of videoseg_o3.runtime.COMPILE_MODES, written out: importing it would load torch for --help
    parser.add_argument("--compile", choices=("off", "default", "reduce-overhead", "max-autotune"), default="off",
                        help="torch.compile the policy's decode step and SAM2's [SEG] decoder (--backend torch only): "
                             "default, reduce-overhead (CUDA graphs; runs as default on a CPU) or max-autotune. "
                             "The first decode step and decoder call compile (a minute or more on a CPU).")
    parser.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=None, help="Tokens per turn (default: the checkpoint's).")
    parser.add_argument("--no-overlay", dest="overlay", action="store_false", help="Do not write overlay.mp4.")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="Hide the progress bar.")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    from pathlib import Path

    from videoseg_o3.output import frame_names, overlay_size, write_mask_folder, write_overlay_video
    from videoseg_o3.pipeline import VideoSegO3

    if not args.query.strip():
        raise ValueError("Invalid QUERY (''): give the question or expression to segment.")
    if not Path(args.ckpt).is_dir():
        raise FileNotFoundError(f"Checkpoint directory not found: {args.ckpt}. Create a tiny one with `videoseg-o3 init-tiny {args.ckpt}`.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"Invalid --out ({out}): it is an existing file. Give a directory (created if missing).")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise ValueError(f"Invalid --max-new-tokens ({args.max_new_tokens}): use a positive number.")
    if args.compile != "off" and args.backend != "torch":
        raise ValueError(f"Invalid --compile ({args.compile}) with --backend {args.backend}: torch.compile applies to "
                         "--backend torch only; drop --compile for exported graphs.")
    # Check the video before loading the model (seconds to minutes): a missing or undecodable file fails now.
    reader = VideoSegO3.open(args.video)
    check_decodable(reader, args.video)
    pipeline = VideoSegO3.from_pretrained(args.ckpt, device=args.device, mode=args.mode, backend=args.backend,
                                          export_dir=args.export_dir, compile=args.compile)
    if args.max_new_tokens is not None:
        pipeline.generation = dataclasses.replace(pipeline.generation, max_new_tokens=args.max_new_tokens)
    out.mkdir(parents=True, exist_ok=True)
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:  # opened on the first propagated frame: no bar at all when propagation is skipped
            from tqdm import tqdm

            bar = tqdm(total=total, desc="propagating", unit="frame", disable=not args.progress)
        bar.update(done - bar.n)

    try:
        result = pipeline.segment(reader, args.query, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    names = frame_names(reader)
    write_mask_folder(out / "masks", result.masks, names)
    record = {"video": str(args.video), "query": args.query, "checkpoint": str(args.ckpt), **result.to_json()}
    if args.overlay:
        write_overlay_video(out / "overlay.mp4", reader, result.masks)
        record["overlay"] = "overlay.mp4"
    (out / "turns.json").write_text(json.dumps(record, indent=2) + "\n")
    if result.error:
        print(f"propagation skipped: {result.error}; the masks are empty.")
    print(f"{len(result.turns)} turn(s), anchor frame {result.anchor_frame}, "
          f"{record['foreground_frames']}/{reader.num_frames} frames with foreground -> {out}")
    if args.overlay and overlay_size(reader) != (reader.height, reader.width):
        h, w = overlay_size(reader)
        print(f"note: overlay.mp4 is {w}x{h}, the {reader.width}x{reader.height} video padded by one pixel "
              "(4:2:0 video needs even sides); the masks are at the video's size.")
    return 0


def check_decodable(reader, source: object) -> None:
    """Decode the first frame of ``reader`` (a missing file fails earlier, when it is opened).

    Raises:
        ValueError: no frames, or the first frame cannot be decoded (the message names the video).
    """
    if int(reader.num_frames) < 1:
        raise ValueError(f"Invalid video ({source}): it has no frames.")
    try:
        reader.get_frames([0])
    except Exception as err:  # decoder errors come in many types; all mean the same to the user
        raise ValueError(f"Invalid video ({source}): its first frame cannot be decoded ({err}).") from err
