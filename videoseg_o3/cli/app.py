"""``videoseg-o3 app --ckpt CKPT [--host 127.0.0.1] [--port 7860]``: the interactive web demo.

Loads the checkpoint once, renders a few synthetic example videos, and serves a Gradio page where a
visitor uploads a clip, types a query and watches each turn of the policy (interval, keyframe,
thinking), then gets the overlay video, the mask PNGs (zip) and ``turns.json``. Ctrl-C (or SIGTERM)
stops it and deletes every upload and output.
"""

from __future__ import annotations

import argparse

from videoseg_o3.app.config import AppConfig

NAME = "app"
HELP = "Serve an interactive web demo (Gradio) that segments uploaded videos and shows each reasoning turn."

_DEFAULTS = AppConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, help="Checkpoint directory (videoseg-o3 init-tiny, training output, or a released VideoSEG-O3 directory).")
    parser.add_argument("--host", default=_DEFAULTS.host, help="Interface to listen on (default 127.0.0.1: this machine only; 0.0.0.0 serves the network).")
    parser.add_argument("--port", type=int, default=_DEFAULTS.port, help=f"TCP port (default {_DEFAULTS.port}).")
    parser.add_argument("--device", default="auto", help="auto, cpu, or a CUDA device such as cuda:0.")
    parser.add_argument("--max-frames", dest="max_frames", type=int, default=_DEFAULTS.max_frames, help=f"Longest video accepted, in frames (default {_DEFAULTS.max_frames}).")
    parser.add_argument("--max-megabytes", dest="max_megabytes", type=float, default=_DEFAULTS.max_megabytes, help=f"Largest upload accepted, in MB (default {_DEFAULTS.max_megabytes:g}).")
    parser.add_argument("--examples", type=int, default=_DEFAULTS.examples, help=f"Synthetic example videos rendered at start (default {_DEFAULTS.examples}; 0: none).")
    parser.add_argument("--examples-seed", dest="examples_seed", type=int, default=_DEFAULTS.examples_seed, help="Seed of the example videos.")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from videoseg_o3.app.ui import import_gradio, serve
    from videoseg_o3.pipeline import VideoSegO3

    config = AppConfig(host=args.host, port=args.port, max_frames=args.max_frames, max_megabytes=args.max_megabytes,
                       examples=args.examples, examples_seed=args.examples_seed)
    import_gradio()  # fail before loading a model when the optional dependency is missing
    if not Path(args.ckpt).is_dir():
        raise FileNotFoundError(f"Checkpoint directory not found: {args.ckpt}. Create a tiny one with `videoseg-o3 init-tiny {args.ckpt}`.")
    print(f"videoseg-o3 app: loading {args.ckpt}", flush=True)
    pipeline = VideoSegO3.from_pretrained(args.ckpt, device=args.device)

    def ready(url: str, workdir: Path) -> None:
        print(f"videoseg-o3 app: serving {url} (uploads and outputs in {workdir}, removed at stop; Ctrl-C stops)", flush=True)

    serve(pipeline, config, checkpoint=Path(args.ckpt).name, on_ready=ready)
    print("videoseg-o3 app: stopped; temporary files removed", flush=True)
    return 0
