"""Seconds per GRPO step, split into rollout / segmentation / reward / update, and the update's peak memory,
for each policy-loss path (``loss_impl``) and each update forward (``update_batching``), with eager + group
as the baseline of the same run, and the batched-over-per-rollout update ratio per path.

Launch from the repository root::

    python bench/train_step.py                         # tiny model on the CPU: eager and chunked, group and rollout
    python bench/train_step.py --loss-impls eager,chunked,triton --size 2b --device cuda   # GPU, real size
    python bench/train_step.py --update-batchings group,rollout --num-iterations 2 --json out.json

What it measures, and what it deliberately simplifies:

- One step = ``training.rollout.collect_rollouts`` (G rollouts of one prompt per step, per-turn SAM2 masks,
  rewards, advantages), then for every (``loss_impl``, ``update_batching``) pair the trainer's own update on
  that same batch (``training.grpo.update_on_batch``: reference log-probs scored once, ``num_iterations``
  x (``compute_grpo_loss`` + backward + one AdamW step)). The pairs share the rollouts, so the update times
  compare the update alone; the rollout / segment / reward columns are the step's, the same on every row.
  The turns are scripted (``training.rollout.scripted_turns``, teacher-forced through the policy) so that
  every rollout is well formed and holds ``[SEG]``s, whatever the random weights would sample; the policy
  still runs every token.
- ``update_batching``: ``group`` = one vision-tower pass over the distinct images and one padded
  language-model forward per micro-batch; ``rollout`` = one forward per rollout (the loop it replaces).
- ``--size tiny``: the tiny Qwen3-VL policy and SAM2 Hiera-T at 256 px (CPU friendly). ``--size 2b``: a
  Qwen3-VL-2B-sized policy (hidden 2048, 28 layers, vocab 151,936; random weights) and SAM2 Hiera-L at
  1024 px, bf16: a GPU path (it needs ~20 GB of device memory).
- ``forward_s``: the part ``update_batching`` changes, alone: the policy's vision tower + language model forward
  and its backward (of the hidden states' mean square) over each micro-batch, without the LM head, SAM2 or the
  optimizer (which dominate the tiny model's update on a CPU).
- Peak memory of the update: ``torch.cuda.max_memory_allocated`` on a GPU; on the CPU the live tensor bytes
  tracked by ``bench.kernels.TensorMemoryTracker`` (which slows the update it watches: CPU update times are
  taken in a separate, untracked run).
- The first step warms caches and is reported but not averaged when ``--steps`` > 1; the pairs' order rotates
  from step to step. The weights drift by one
  tiny AdamW step per update (lr 1e-6), which does not change the cost of the next one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402


def qwen3_vl_2b_policy(device: torch.device, dtype: torch.dtype) -> Any:
    """A random policy with Qwen3-VL-2B-Instruct's published sizes and the real tokenizer (no download)."""
    from transformers import Qwen3VLConfig

    from videoseg_o3.policy import SegPolicy, build_processor
    from videoseg_o3.policy.configs import model_class, qwen_vocab_size

    text = dict(vocab_size=qwen_vocab_size("qwen3_vl"), hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                num_attention_heads=16, num_key_value_heads=8, head_dim=128, rope_theta=5_000_000.0,
                max_position_embeddings=262144, rope_scaling={"rope_type": "default", "mrope_section": [24, 20, 20],
                                                               "mrope_interleaved": True})
    vision = dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, patch_size=16, spatial_merge_size=2,
                  temporal_patch_size=2, out_hidden_size=2048, num_position_embeddings=2304,
                  deepstack_visual_indexes=[5, 11, 17])
    config = Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True)
    model = model_class("qwen3_vl")(config).to(device=device, dtype=dtype)
    return SegPolicy(model, build_processor("qwen3_vl"), "qwen3_vl")


def build(size: str, device: torch.device) -> tuple[Any, Any]:
    from videoseg_o3.policy import SegPolicy
    from videoseg_o3.segmenter import Sam2Segmenter, SegmenterConfig

    torch.manual_seed(0)
    if size == "tiny":
        policy = SegPolicy.tiny("qwen3_vl", seed=0).to(device)
        segmenter = Sam2Segmenter.from_config(SegmenterConfig(model_config="sam2_hiera_t", image_size=256), device=device)
    else:
        policy = qwen3_vl_2b_policy(device, torch.bfloat16)
        segmenter = Sam2Segmenter.from_config(SegmenterConfig(model_config="sam2_hiera_l", image_size=1024,
                                                              autocast_bf16=True), device=device)
    return policy, segmenter


def make_prompt(num_frames: int, height: int, width: int, seed: int) -> Any:
    from training.rollout_batch import RolloutPrompt
    from videoseg_o3.io.array_reader import ArrayReader

    gen = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (num_frames, height, width, 3), generator=gen, dtype=torch.uint8)
    masks = torch.zeros(num_frames, height, width, dtype=torch.bool)
    masks[num_frames // 4:(3 * num_frames) // 4 + 1, height // 4:height // 2, width // 4:width // 2] = True
    frames[masks] = 230
    return RolloutPrompt(ArrayReader(frames), "the bright box", masks, name=f"bench{seed}")


def run(args: argparse.Namespace, device: torch.device, impls: list[str], batchings: list[str]) -> list[dict[str, Any]]:
    """One row per (loss_impl, update_batching): mean seconds per stage and the update's peak memory."""
    import copy

    from bench.kernels import TensorMemoryTracker
    from videoseg_o3.device import synchronize
    from training.config import GRPOConfig
    from training.distributed import DistInfo
    from training.grpo import loss_config, micro_batches, update_on_batch
    from training.losses import batch_hidden_states
    from training.rollout import collect_rollouts, rl_generation_config, scripted_turns

    policy, segmenter = build(args.size, device)
    ref = copy.deepcopy(policy).requires_grad_(False).eval()
    params = [p for p in list(policy.parameters()) + list(segmenter.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-6)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    pairs = [(impl, batching) for impl in impls for batching in batchings]
    configs = {pair: GRPOConfig(num_generations=args.group_size, per_device_train_batch_size=args.group_size,
                                num_iterations=args.num_iterations, loss_impl=pair[0], update_batching=pair[1],
                                max_steps=1) for pair in pairs}
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {pair: [] for pair in pairs}
    for step in range(args.steps):
        prompt = make_prompt(args.frames, args.height, args.width, seed=step)
        batch = collect_rollouts(policy, segmenter, [prompt], group_size=args.group_size, seed=step,
                                 generation=rl_generation_config(max_new_tokens=args.max_new_tokens),
                                 forced_turns=scripted_turns(args.frames, args.group_size))
        shift = step % len(pairs)  # rotate the order, so no pair always runs first after the rollouts
        for pair in pairs[shift:] + pairs[:shift]:
            config = configs[pair]
            lossc = loss_config(config)

            def update() -> None:
                batch.ref_logps = batch.old_logps = None  # scored afresh by every update, as the trainer does
                update_on_batch(policy, ref, segmenter, batch, optimizer, scheduler, params, config, lossc, DistInfo())

            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                t0 = time.perf_counter()
                update()
                torch.cuda.synchronize()
                update_s = time.perf_counter() - t0
                peak = torch.cuda.max_memory_allocated() - base
            else:
                t0 = time.perf_counter()
                update()
                update_s = time.perf_counter() - t0
                with TensorMemoryTracker() as tracker:
                    update()
                peak = tracker.peak
            synchronize(device)
            t0 = time.perf_counter()
            for micro in micro_batches(batch, config):
                hidden = batch_hidden_states(policy, micro.trajectories, batching=config.update_batching)
                sum(h.float().square().mean() for h in hidden).backward()
            synchronize(device)
            forward_s = time.perf_counter() - t0
            optimizer.zero_grad(set_to_none=True)
            rows[pair].append({"step": step, "rollout_s": batch.stats["rollout_s"], "segment_s": batch.stats["segment_s"],
                               "reward_s": batch.stats["reward_s"], "update_s": update_s, "forward_s": forward_s,
                               "update_peak_bytes": int(peak), "sampled_tokens": batch.stats["sampled_tokens"]})
    results = []
    for (impl, batching), steps in rows.items():
        measured = steps[1:] if len(steps) > 1 else steps
        summary = {k: statistics.mean(r[k] for r in measured)
                   for k in ("rollout_s", "segment_s", "reward_s", "update_s", "forward_s")}
        summary["update_peak_bytes"] = max(r["update_peak_bytes"] for r in steps)
        summary["step_s"] = sum(summary[k] for k in ("rollout_s", "segment_s", "reward_s", "update_s"))
        results.append({"loss_impl": impl, "update_batching": batching, "steps": steps, **summary})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "2b"], default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--loss-impls", default="eager,chunked", help="Comma-separated: eager, chunked, triton.")
    parser.add_argument("--update-batchings", default="group,rollout", help="Comma-separated: group, rollout.")
    parser.add_argument("--num-iterations", type=int, default=1, help="Updates per rollout batch (the trainer's).")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from videoseg_o3.device import resolve_device

    device = resolve_device(None if args.device == "auto" else args.device)
    if args.size == "2b" and device.type != "cuda":
        print("error: --size 2b needs a GPU (about 20 GB of device memory); use --size tiny on the CPU", file=sys.stderr)
        return 2
    impls = [i.strip() for i in args.loss_impls.split(",") if i.strip()]
    if "triton" in impls and device.type != "cuda":
        print("skipping triton: on the CPU it runs only under the Triton interpreter, far too slow to time")
        impls.remove("triton")
    batchings = [b.strip() for b in args.update_batchings.split(",") if b.strip()]
    bad = [b for b in batchings if b not in ("group", "rollout")]
    if bad or not batchings or not impls:
        print(f"error: invalid --update-batchings ({args.update_batchings}) or --loss-impls ({args.loss_impls}); "
              "supported batchings are group, rollout", file=sys.stderr)
        return 2
    results = run(args, device, impls, batchings)
    base = results[0]
    print(f"device {device}, size {args.size}, G = {args.group_size}, num_iterations = {args.num_iterations}, "
          f"{args.steps} steps (first one not averaged when > 1)")
    print(f"{'loss_impl':10s} {'batching':9s} {'rollout_s':>10s} {'segment_s':>10s} {'reward_s':>9s} {'update_s':>9s} "
          f"{'step_s':>8s} {'forward_s':>9s} {'update_peak_MiB':>16s} {'update x base':>14s} {'peak x base':>12s}")
    for r in results:
        print(f"{r['loss_impl']:10s} {r['update_batching']:9s} {r['rollout_s']:10.2f} {r['segment_s']:10.2f} "
              f"{r['reward_s']:9.3f} {r['update_s']:9.2f} {r['step_s']:8.2f} {r['forward_s']:9.3f} "
              f"{r['update_peak_bytes'] / 2**20:16.1f} "
              f"{r['update_s'] / base['update_s']:14.2f} {r['update_peak_bytes'] / max(base['update_peak_bytes'], 1):12.2f}")
    by_pair = {(r["loss_impl"], r["update_batching"]): r for r in results}
    for impl in impls:
        if (impl, "group") in by_pair and (impl, "rollout") in by_pair:
            grouped, loop = by_pair[(impl, "group")], by_pair[(impl, "rollout")]
            speedup = loop["update_s"] / grouped["update_s"]
            forward = loop["forward_s"] / grouped["forward_s"]
            peak = grouped["update_peak_bytes"] / max(loop["update_peak_bytes"], 1)
            print(f"{impl}: batched (group) vs per-rollout (rollout): update {speedup:.2f}x as fast, policy forward + "
                  f"backward {forward:.2f}x as fast, update peak memory x{peak:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": str(device), "size": args.size, "num_iterations": args.num_iterations,
                                                "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
