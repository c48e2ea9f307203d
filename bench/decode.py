"""Sparse, frame-exact decoding vs decoding every frame: frames decoded and wall time, as ratios.

A multi-turn episode looks at a few dozen frames of a video; the reference pipeline decodes all of
them. This measures, for each usable backend, what reading k of N frames costs with
``videoseg_o3.io.open_video`` (seek to the previous keyframe, decode forward, skip unrequested
non-reference frames) against decoding every frame, on a generated H.264 video (or --video).

Deliberate simplifications: one video, generated in-process (size, GOP and B-frames are flags), wall
time from ``time.perf_counter`` over a few repeats (best of; the machine may be shared); "decode
everything" converts every frame to RGB and keeps them all in one tensor, as a decode-all loader does.

    python bench/decode.py                       # 300 frames at 480x640, GOP 30, 30 requested
    python bench/decode.py --height 1080 --width 1920 --json runs/decode.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from videoseg_o3 import device as devices
from videoseg_o3.io import FrameCacheConfig, available_backends, open_video, write_video


def make_video(path: Path, num_frames: int, height: int, width: int, gop: int, bframes: int) -> None:
    """Moving gradients plus noise blocks: enough motion and detail for realistic P/B-frame sizes."""
    ys, xs = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 64, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8).repeat(16, 0).repeat(16, 1)[:height, :width]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        frames[t, ..., 0] = (xs + 2 * t) % 256
        frames[t, ..., 1] = (ys + 3 * t) % 256
        frames[t, ..., 2] = ((xs + ys) // 2 + t) % 256
        frames[t] = frames[t] // 2 + np.roll(texture, t, axis=1)
    write_video(path, frames, fps=30, gop=gop, bframes=bframes, crf=23)


def request_patterns(num_frames: int, k: int, seed: int) -> dict[str, list[list[int]]]:
    """Requests per pattern, as a list of turns (each a list of frame indices)."""
    def spread(a: int, b: int, n: int) -> list[int]:
        return [int(round(x)) for x in np.linspace(a, b, n)]

    rng = random.Random(seed)
    last = num_frames - 1
    turns = [sorted(set(spread(0, last, 10) + spread(0, last, 5)))]
    for _ in range(2):  # two <select> turns: 5 frames over an interval + its keyframe
        s = rng.randrange(0, max(1, num_frames - num_frames // 6))
        e = min(last, s + num_frames // 10)
        turns.append(sorted(set(spread(s, e, 5) + [(s + e) // 2])))
    return {
        "random": [sorted(rng.sample(range(num_frames), min(k, num_frames)))],
        "even": [spread(0, last, min(k, num_frames))],
        "episode": turns,
    }


def decode_everything_pyav(path: Path) -> tuple[int, float]:
    """Decode every frame and keep them all in one (N, H, W, 3) tensor, as a decode-all loader does."""
    start = time.perf_counter()
    with av.open(str(path)) as container:
        frames = torch.stack([torch.from_numpy(frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)])
    return frames.shape[0], time.perf_counter() - start


def sparse(path: Path, backend: str, turns: list[list[int]]) -> tuple[int, int, float]:
    """(frames requested, frames decoded, seconds) for one episode on a fresh reader (index build included)."""
    dev = devices.default_device()
    start = time.perf_counter()
    with open_video(path, backend=backend) as reader:
        for turn in turns:
            reader.get_frames(turn)
        decoded = reader.num_decoded
        if backend == "torchcodec":  # torchcodec does not report its pass-through frames: estimate them
            decoded = reader.index.decode_cost(sorted({i for t in turns for i in t}))
    devices.synchronize(dev)
    return len({i for t in turns for i in t}), decoded, time.perf_counter() - start


def decode_everything_backend(path: Path, backend: str) -> tuple[int, float]:
    """Every frame through the backend, in chunks of 32 (sequential, so each chunk continues the last),
    kept in one tensor, as a decode-all loader does."""
    dev = devices.default_device()
    start = time.perf_counter()
    with open_video(path, backend=backend, cache=FrameCacheConfig(max_frames=0)) as reader:
        n = reader.num_frames
        frames = torch.cat([reader.get_frames(range(c, min(c + 32, n))) for c in range(0, n, 32)])
    devices.synchronize(dev)
    return frames.shape[0], time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, help="an existing video instead of a generated one")
    parser.add_argument("--frames", type=int, default=300, help="frames of the generated video")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--gop", type=int, default=30, help="keyframe interval of the generated video")
    parser.add_argument("--bframes", type=int, default=2)
    parser.add_argument("--requested", type=int, default=30, help="frames requested by the random/even patterns")
    parser.add_argument("--repeats", type=int, default=3, help="best-of repeats for wall times")
    parser.add_argument("--backends", nargs="*", default=None, help="default: every usable file backend")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = args.video or Path(tmp) / "bench.mp4"
        if args.video is None:
            make_video(path, args.frames, args.height, args.width, args.gop, args.bframes)
        backends = args.backends or [b for b in available_backends() if b in ("pyav", "torchcodec", "nvdec")]
        rows = []
        for backend in backends:
            if backend == "pyav":
                all_frames, all_s = min((decode_everything_pyav(path) for _ in range(args.repeats)), key=lambda r: r[1])
            else:
                all_frames, all_s = min((decode_everything_backend(path, backend) for _ in range(args.repeats)), key=lambda r: r[1])
            for name, turns in request_patterns(all_frames, args.requested, args.seed).items():
                requested, decoded, seconds = min((sparse(path, backend, turns) for _ in range(args.repeats)), key=lambda r: r[2])
                rows.append({
                    "backend": backend, "pattern": name, "turns": len(turns), "requested": requested,
                    "decoded": decoded, "decoded_all": all_frames, "frames_ratio": all_frames / max(decoded, 1),
                    "seconds": seconds, "seconds_all": all_s, "time_ratio": all_s / seconds,
                })
    header = f"{'backend':<11} {'pattern':<8} {'turns':>5} {'requested':>9} {'decoded':>7} {'all':>5} {'x fewer':>7} {'ms':>8} {'ms all':>8} {'x faster':>8}"
    print(f"video: {args.video or f'generated {args.frames} frames {args.height}x{args.width} gop {args.gop} bframes {args.bframes}'}; "
          f"device: {devices.default_device()}")
    print(header)
    for r in rows:
        print(f"{r['backend']:<11} {r['pattern']:<8} {r['turns']:>5} {r['requested']:>9} {r['decoded']:>7} {r['decoded_all']:>5} "
              f"{r['frames_ratio']:>7.2f} {1e3 * r['seconds']:>8.1f} {1e3 * r['seconds_all']:>8.1f} {r['time_ratio']:>8.2f}")
    print("torchcodec 'decoded' is estimated from the seek plan (torchcodec does not report pass-through frames);"
          " nvdec 'decoded' counts frames returned.")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
