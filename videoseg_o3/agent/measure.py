"""Prefill cost of KV reuse vs re-encoding: a deterministic 3-turn episode measured both ways.

Run ``python -m videoseg_o3.agent.measure [--family qwen3_vl|qwen2_5_vl]`` to print the numbers.

What it deliberately simplifies: the policy is a random tiny model, so the three assistant turns
are scripted (select, select, answer; teacher forcing through the real decode path). Token counts
do not depend on the model's width, only on the tokenizer, the processor's patch grid and the
protocol's frame budgets, so the ratio it reports is the one a real checkpoint sees on the same
video with the same turns; the seconds are those of the tiny model.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

SCRIPTED_WINDOWS = ((4, 20, 12), (10, 16, 13), (10, 16, 14))


def scripted_turns(num_frames: int) -> list[str]:
    """Three assistant turns in the protocol's format: select, select, answer (indices scaled to the video)."""
    from videoseg_o3.protocol import format_turn

    scale = (num_frames - 1) / 29.0
    turns = []
    for i, (s, e, k) in enumerate(SCRIPTED_WINDOWS):
        action = "answer" if i == len(SCRIPTED_WINDOWS) - 1 else "select"
        steps = ("The object moves in the middle of the clip.", "It is small and red.", "The query names it directly.")
        turns.append(format_turn(action, steps, "Confirmed." if action == "answer" else "See new segment.",
                                 round(s * scale), round(e * scale), round(k * scale)))
    return turns


def synthetic_video(num_frames: int = 30, height: int = 360, width: int = 640, seed: int = 0) -> Any:
    """A random uint8 video wrapped in the array reader."""
    from videoseg_o3.io.array_reader import ArrayReader

    g = torch.Generator().manual_seed(seed)
    return ArrayReader(torch.randint(0, 256, (num_frames, height, width, 3), generator=g, dtype=torch.uint8))


def measure_prefill_ratio(policy: Any, video: Any, protocol: Any = None, query: str = "the small red ball") -> dict[str, Any]:
    """Run the scripted episode in ``kv`` and ``reencode`` modes; returns token counts, the ratio and timings."""
    from videoseg_o3.agent.episode import run_episode
    from videoseg_o3.agent.generation import GenerationConfig
    from videoseg_o3.protocol import ProtocolConfig

    protocol = protocol if protocol is not None else ProtocolConfig()
    script = scripted_turns(int(video.num_frames))
    gen = GenerationConfig(max_new_tokens=512)
    runs = {mode: run_episode(policy, video, query, protocol=protocol, generation=gen, mode=mode, forced_turns=script)
            for mode in ("kv", "reencode")}
    kv, re = runs["kv"], runs["reencode"]
    return {
        "family": policy.family,
        "num_frames": int(video.num_frames),
        "frame_size": [int(video.height), int(video.width)],
        "turns": kv.num_turns,
        "prefill_tokens": {"kv": kv.prefill_tokens, "reencode": re.prefill_tokens},
        "prefill_tokens_per_turn": {"kv": [t.prefill_tokens for t in kv.turns],
                                    "reencode": [t.prefill_tokens for t in re.turns]},
        "decode_tokens": {"kv": kv.decode_tokens, "reencode": re.decode_tokens},
        "prefill_ratio": kv.prefill_tokens / re.prefill_tokens,
        "seconds": {"kv": kv.timings, "reencode": re.timings},
        "trajectories": runs,
    }


def main(argv: list[str] | None = None) -> int:
    from videoseg_o3.policy import SegPolicy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="qwen3_vl", choices=["qwen3_vl", "qwen2_5_vl"])
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--num_frames", type=int, default=30)
    args = parser.parse_args(argv)
    policy = SegPolicy.tiny(args.family)
    result = measure_prefill_ratio(policy, synthetic_video(args.num_frames, args.height, args.width))
    result.pop("trajectories")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
