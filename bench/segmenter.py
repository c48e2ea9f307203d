"""SAM2 segmenter micro-benchmark: image encoding, [SEG] decoding (forward and backward) and propagation.

Measures, on one device and one synthetic video, what each segmenter stage costs:
``encode_frames`` (frames/s, in batches of ``--chunk`` frames), ``decode_features`` ([SEG]s/s on
already-encoded frames, as RL decodes several [SEG]s per frame), the same with a backward pass, and
``propagate`` (frames/s over ``--frames`` frames, anchor in the middle). It also reports the memory the
chunked propagation holds for frames (one chunk of features) next to what sam2's ``init_state`` would
hold (every frame resized to the square input, fp32), and on a GPU the peak allocated memory.

Deliberate simplifications: random weights (speed does not depend on them), noise frames, best-of-N
wall time after one warm-up. Other processes slow every row alike; compare runs on the same machine.

    python bench/segmenter.py                                           # tiny Hiera, 256 px, CPU
    python bench/segmenter.py --model-config sam2_hiera_l --image-size 1024 --frames 32 --json runs/seg.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from videoseg_o3 import device as devices
from videoseg_o3.segmenter import Sam2Segmenter, SegmenterConfig, TensorVideo


class _CountingVideo(TensorVideo):
    """Records the largest single request, i.e. the most frames decoded and prepared at once."""

    def __init__(self, frames: torch.Tensor) -> None:
        super().__init__(frames)
        self.largest_request = 0

    def get_frames(self, indices):
        indices = list(indices)
        self.largest_request = max(self.largest_request, len(indices))
        return super().get_frames(indices)


def best_time(fn: Callable[[], object], repeats: int, dev: torch.device) -> float:
    fn()
    devices.synchronize(dev)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        devices.synchronize(dev)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-config", default="sam2_hiera_t")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=12, help="video length for propagation")
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--chunk", type=int, default=4, help="encode_chunk_size")
    parser.add_argument("--segs", type=int, default=8, help="[SEG] embeddings decoded per call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="autocast_bf16=True")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    dev = devices.resolve_device(args.device)
    torch.manual_seed(0)
    cfg = SegmenterConfig(model_config=args.model_config, image_size=args.image_size,
                          encode_chunk_size=args.chunk, autocast_bf16=args.bf16)
    seg = Sam2Segmenter.from_config(cfg, device=dev)
    gen = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (args.frames, args.height, args.width, 3), dtype=torch.uint8, generator=gen)
    emb = torch.randn(args.segs, 256, generator=gen, device="cpu").to(dev)
    chunk = video[: args.chunk]

    rows: dict[str, float | int | str] = {}
    t = best_time(lambda: seg.encode_frames(chunk), args.repeats, dev)
    rows["encode_frames_per_s"] = len(chunk) / t
    features = seg.encode_frames(chunk)
    index = torch.arange(args.segs, device=dev) % len(chunk)
    t = best_time(lambda: seg.decode_features(features, emb, frame_index=index), args.repeats, dev)
    rows["decode_segs_per_s"] = args.segs / t

    def forward_backward() -> None:
        e = emb.clone().requires_grad_(True)
        seg.decode_features(features, e, frame_index=index).low_res_logits.sigmoid().mean().backward()

    t = best_time(forward_backward, args.repeats, dev)
    rows["decode_fwd_bwd_segs_per_s"] = args.segs / t
    seg.zero_grad(set_to_none=True)

    if dev.type == devices.ACCELERATOR:
        torch.cuda.reset_peak_memory_stats(dev)
    counting = _CountingVideo(video)
    start = time.perf_counter()
    seg.propagate(counting, emb[0], args.frames // 2)
    devices.synchronize(dev)
    rows["propagate_frames_per_s"] = args.frames / (time.perf_counter() - start)
    rows["propagate_largest_frame_request"] = counting.largest_request
    one_chunk = seg._encode_backbone(chunk)
    held = sum(t.nbytes for key in ("backbone_fpn", "vision_pos_enc") for t in one_chunk[key])
    rows["propagate_feature_bytes_held"] = held
    rows["sam2_init_state_image_bytes"] = args.frames * 3 * args.image_size ** 2 * 4
    if dev.type == devices.ACCELERATOR:
        rows["propagate_peak_allocated_bytes"] = torch.cuda.max_memory_allocated(dev)

    meta = {"device": str(dev), "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "args": {k: str(v) for k, v in vars(args).items()}}
    if dev.type == devices.ACCELERATOR:
        meta["gpu"] = torch.cuda.get_device_name(dev)
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        print(f"{key:<{width}}  {value:,.2f}" if isinstance(value, float) else f"{key:<{width}}  {value:,}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
