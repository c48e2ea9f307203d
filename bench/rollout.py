"""Rollout decoding speed: every generating rollout in one forward per token (batched) vs one by one.

Launch from the repository root::

    python bench/rollout.py                                  # tiny Qwen3-VL on the CPU, G = 4
    python bench/rollout.py --size 2b --device cuda          # Qwen3-VL-2B sizes, random weights, bf16
    python bench/rollout.py --group-size 8 --prompts 2 --json out.json

What it measures, and what it deliberately simplifies:

- ``videoseg_o3.agent.run_episodes`` on ``--prompts`` random videos with G rollouts each, sampled as the
  RL rollouts are (temperature 0.9, top-p 0.9, top-k 50, seeded), once with ``decoding="sequential"``
  (the baseline, measured in the same run) and once with ``decoding="batched"``. Both drivers draw the
  same tokens (each rollout has its own generator), so both runs generate the same number of tokens.
- Rollout ``g`` first replays ``g % 3`` short scripted ``<select>`` turns (teacher-forced through the
  policy) and then generates freely, so rollouts sit at different turns with different images and
  lengths, and rows leave and rejoin the batch, as in real GRPO steps. A random policy never stops by
  itself: free turns run to ``--max-new-tokens``.
- Reported: sampled tokens per second of the whole rollout (prefills, follow-up observations and
  decoding: what a GRPO step waits for) and of the decode forwards alone, for both drivers, and the
  batched / sequential ratios; best of ``--repeats`` runs (the machine may be shared).
- ``--size 2b`` builds the Qwen3-VL-2B-sized random policy of ``bench/train_step.py`` (a GPU path).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402


def _select(s: int, e: int, k: int) -> str:
    return f'<select><VTG>{{"start": {s}, "end": {e}, "keyframe": {k}}}</VTG><RefSeg>[SEG]</RefSeg></select>'


def scripts(num_prompts: int, group_size: int, num_frames: int) -> list[Any]:
    """Rollout g: g % 3 scripted selects, then free generation."""
    last = num_frames - 1
    per_group = [[_select(t, last - t, last // 2) for t in range(g % 3)] or None for g in range(group_size)]
    return per_group * num_prompts


def run_once(policy: Any, videos: list[Any], decoding: str, args: argparse.Namespace) -> dict[str, float]:
    from videoseg_o3.agent import GenerationConfig, run_episodes
    from videoseg_o3.device import synchronize
    from videoseg_o3.protocol import ProtocolConfig

    gen = GenerationConfig(max_new_tokens=args.max_new_tokens, do_sample=True, temperature=0.9, top_p=0.9, top_k=50,
                           seed=args.seed)
    synchronize(policy.device)
    t0 = time.perf_counter()
    trajs = run_episodes(policy, videos, ["the object that moves"] * len(videos), protocol=ProtocolConfig.preset("rl"),
                         generation=gen, num_rollouts=args.group_size, decoding=decoding,
                         forced_turns_by_rollout=scripts(len(videos), args.group_size, args.num_frames))
    synchronize(policy.device)
    wall = time.perf_counter() - t0
    sampled = sum(len(t.token_ids) for tr in trajs for t in tr.turns if not _scripted(t))
    decode_s = sum(tr.timings["decode"] for tr in trajs)
    return {"wall_s": wall, "sampled_tokens": sampled, "decode_s": decode_s,
            "tokens_per_s": sampled / wall, "decode_tokens_per_s": sampled / decode_s if decode_s > 0 else 0.0,
            "turns": [tr.num_turns for tr in trajs]}


def _scripted(turn: Any) -> bool:
    return turn.text.startswith("<select><VTG>")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "2b"], default="tiny")
    parser.add_argument("--family", choices=["qwen3_vl", "qwen2_5_vl"], default="qwen3_vl", help="tiny size only")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--num-frames", type=int, default=24)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from videoseg_o3.device import resolve_device
    from videoseg_o3.io.array_reader import ArrayReader
    from videoseg_o3.policy import SegPolicy

    device = resolve_device(None if args.device == "auto" else args.device)
    if args.size == "2b":
        if device.type != "cuda":
            print("error: --size 2b needs a GPU; use --size tiny on the CPU", file=sys.stderr)
            return 2
        from bench.train_step import qwen3_vl_2b_policy

        torch.manual_seed(0)
        policy = qwen3_vl_2b_policy(device, torch.bfloat16)
    else:
        policy = SegPolicy.tiny(args.family, seed=0).to(device)
    gen = torch.Generator().manual_seed(args.seed)
    videos = [ArrayReader(torch.randint(0, 256, (args.num_frames, args.height, args.width, 3), generator=gen,
                                        dtype=torch.uint8)) for _ in range(args.prompts)]
    results: dict[str, Any] = {}
    for decoding in ("sequential", "batched"):
        runs = [run_once(policy, videos, decoding, args) for _ in range(args.repeats)]
        results[decoding] = max(runs, key=lambda r: r["tokens_per_s"])
    seq, bat = results["sequential"], results["batched"]
    if seq["sampled_tokens"] != bat["sampled_tokens"]:
        print(f"warning: the drivers sampled {seq['sampled_tokens']} vs {bat['sampled_tokens']} tokens", file=sys.stderr)
    report = {
        "size": args.size, "device": str(device), "group_size": args.group_size, "prompts": args.prompts,
        "max_new_tokens": args.max_new_tokens, "torch_threads": torch.get_num_threads(), **results,
        "ratio_tokens_per_s": bat["tokens_per_s"] / seq["tokens_per_s"],
        "ratio_decode_tokens_per_s": (bat["decode_tokens_per_s"] / seq["decode_tokens_per_s"]
                                      if seq["decode_tokens_per_s"] else 0.0),
    }
    print(f"| driver | sampled tokens | rollout s | tokens/s | decode tokens/s |\n|---|---|---|---|---|")
    for name in ("sequential", "batched"):
        r = results[name]
        print(f"| {name} | {r['sampled_tokens']} | {r['wall_s']:.2f} | {r['tokens_per_s']:.1f} | {r['decode_tokens_per_s']:.1f} |")
    print(f"batched / sequential: {report['ratio_tokens_per_s']:.2f}x rollout tokens/s, "
          f"{report['ratio_decode_tokens_per_s']:.2f}x decode tokens/s (G = {args.group_size}, {args.size}, {device})")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
