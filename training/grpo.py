"""Multi-turn GRPO with SEG-aware calibration: ``python -m training.grpo [--init CKPT] [--config PRESET.yaml] ...``.

    python -m training.grpo --init runs/sft/final --output_dir runs/grpo      # synthetic data, CPU, minutes
    torchrun --nproc_per_node 8 -m training.grpo --config training/configs/grpo_4b.yaml --init CKPT --data ...

One step: the prompts of the step (G rollouts each) go through :func:`training.rollout.collect_rollouts`
(multi-turn episodes, per-turn SAM2 masks, the registered rewards, group advantages), then
:func:`training.losses.compute_grpo_loss` over micro-batches of whole groups (policy-gradient term with the
calibration bonus at ``[SEG]``, k3 KL to the frozen reference policy, auxiliary mask loss), then one AdamW
update; with ``num_iterations > 1`` the same batch is reused for that many updates, scored against the
behaviour policy's log-probs (clipped ratio). The reference policy is a frozen copy of the ``--init``
policy, never synced. A non-finite loss or gradient skips the update and is logged; a malformed rollout is
just scored (format reward -1). Checkpoints, logs and ``OUTPUT_DIR/final`` are as in ``training.sft``.

Deliberately simple: rollouts and updates alternate on the same devices (no separate inference engine);
each rank samples its own prompts, so groups never cross ranks.
"""

from __future__ import annotations

import copy
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from training.config import GRPOConfig

__all__ = ["loss_config", "main", "micro_batches", "rollout_prompt", "step_metrics", "train", "update_on_batch"]


def loss_config(config: GRPOConfig) -> Any:
    """The :class:`training.losses.GRPOLossConfig` of a run (``logprob_mode="compat"``: bf16 at temperature 1)."""
    from training.losses import GRPOLossConfig

    compat = config.logprob_mode == "compat"
    return GRPOLossConfig(beta=config.beta, kl_type=config.kl_type, clip_low=config.clip_low, clip_high=config.clip_high,
                          loss_agg_mode=config.loss_agg_mode, max_len=config.max_completion_length * config.max_turns,
                          temperature=1.0 if compat else None, logprob_dtype="bfloat16" if compat else "float32",
                          loss_impl=config.loss_impl, calibration=config.use_calibration,
                          aux_mask_weight=config.seg_loss_weight, update_batching=config.update_batching)


def reward_weights(config: GRPOConfig) -> dict[str, float] | None:
    if not config.reward_funcs:
        return None
    weights = config.reward_weights or [1.0] * len(config.reward_funcs)
    return dict(zip(config.reward_funcs, (float(w) for w in weights)))


def rollout_prompt(prompt: Any) -> Any:
    """A :class:`training.rollout_batch.RolloutPrompt` from an RL record (:class:`training.data.RlPrompt`)."""
    from training.rollout_batch import RolloutPrompt

    return RolloutPrompt(prompt.open_video(), prompt.exp, prompt.load_masks(),
                         torch.tensor(prompt.mask_existence, dtype=torch.bool), name=prompt.source)


def step_metrics(batch: Any) -> dict[str, float]:
    """Per-step statistics of a rollout batch: reward terms, advantages, turns and stop reasons, timings."""
    out: dict[str, float] = {}
    for name, values in batch.rewards.items():
        out[f"reward/{name}"] = float(values.float().mean())
    reward = batch.reward.float()
    out["reward/total"] = float(reward.mean())
    out["reward/std"] = float(reward.std()) if reward.numel() > 1 else 0.0
    adv = batch.advantages.float()
    out.update({"advantage/mean": float(adv.mean()), "advantage/std": float(adv.std()) if adv.numel() > 1 else 0.0,
                "advantage/abs_max": float(adv.abs().max()),
                "advantage/zero_groups": float(sum(bool((adv[i:i + batch.group_size] == 0).all())
                                                  for i in range(0, len(batch), batch.group_size)))})
    turns = [t.num_turns for t in batch.trajectories]
    out["turns/mean"] = float(np.mean(turns))
    for reason, count in Counter(t.stop_reason for t in batch.trajectories).items():
        out[f"stop/{reason}"] = count / len(batch)
    out["tokens/sampled"] = float(sum(int(t.response_mask.sum()) for t in batch.trajectories))
    for key in ("rollout_s", "segment_s", "reward_s", "rollout_tokens_per_s"):
        if key in batch.stats:
            out[f"time/{key}" if key.endswith("_s") else key] = float(batch.stats[key])
    return out


def set_grpo_trainable(policy: Any, segmenter: Any, config: GRPOConfig) -> None:
    """The released RL trainable set: the whole VLM (vision tower switchable), projector, SAM2 prompt encoder
    and mask decoder; SAM2's image encoder and memory stay frozen."""
    from training.common import set_trainable

    set_trainable(policy, True)
    set_trainable(policy.model.model.visual, config.train_vision_tower)
    set_trainable(segmenter, False)
    set_trainable(segmenter.sam.sam_prompt_encoder, config.train_prompt_encoder)
    set_trainable(segmenter.sam.sam_mask_decoder, config.train_mask_decoder)


def micro_batches(batch: Any, config: GRPOConfig) -> list[Any]:
    """The micro-batches of a step's rollout batch, ``per_device_train_batch_size // num_generations`` whole groups
    each, in order (a group is never split)."""
    per_micro = config.per_device_train_batch_size // config.num_generations
    return [batch.select(list(range(m * per_micro, (m + 1) * per_micro)))
            for m in range(batch.num_prompts // per_micro)]


def update_on_batch(policy: Any, ref_policy: Any | None, segmenter: Any, batch: Any, optimizer: Any, scheduler: Any,
                    params: list[torch.nn.Parameter], config: GRPOConfig, lossc: Any,
                    info: Any) -> tuple[Counter[str], dict[str, float]]:
    """The ``num_iterations`` optimizer updates on one rollout batch (gradient accumulation over its micro-batches).

    What does not change between the iterations is scored once. The frozen reference policy's log-probs
    (``batch.ref_logps``, when the KL term is on) before the first iteration, under no_grad, one micro-batch
    at a time (memory of one micro-batch). The behaviour policy's calibrated log-probs (``batch.old_logps``,
    for the clipped ratio when ``num_iterations > 1``) come out of the first iteration's own forwards
    (``grpo_loss_and_logps``): before its optimizer step the policy is the behaviour policy, so no extra
    forward is needed, and that first loss equals the one with stored behaviour log-probs (ratio 1). Each
    iteration then runs only the policy forward and backward. A non-finite loss or gradient norm skips that
    iteration's optimizer step on every rank (the ranks agree on a non-finite loss before any backward).

    Returns:
        sums: the loss metrics averaged over micro-batches and iterations.
        last: ``{"lr", "grad_norm", "skipped"}`` of the last iteration (``skipped`` counts all of them).
    """
    from training.distributed import all_reduce_mean, average_gradients, clip_grad_norm
    from training.losses import behaviour_logps, compute_grpo_loss, grpo_loss_and_logps, reference_logps

    micros = micro_batches(batch, config)
    if ref_policy is not None and lossc.beta > 0:
        batch.ref_logps = [lp for micro in micros for lp in reference_logps(ref_policy, micro, lossc)]
        micros = micro_batches(batch, config)  # carrying the stored reference log-probs
    reuse = config.num_iterations > 1 and batch.old_logps is None
    sums: Counter[str] = Counter()
    skipped = 0
    grad_norm, lr = float("nan"), scheduler.get_last_lr()[0]
    for iteration in range(config.num_iterations):
        optimizer.zero_grad(set_to_none=True)
        finite = True
        for micro in micros:
            if reuse and iteration == 0:  # keep the behaviour policy's log-probs for the later iterations' ratio
                loss, parts, micro.old_logps = grpo_loss_and_logps(policy, ref_policy, segmenter, micro, lossc)
            else:
                loss, parts = compute_grpo_loss(policy, ref_policy, segmenter, micro, lossc)
            # all ranks agree before backward: under fsdp2 a rank that skipped it would leave the others waiting in
            # the gradient reduction (one all_reduce per micro-batch; a no-op in one process)
            if all_reduce_mean(float(torch.isfinite(loss.detach())), info) < 1.0:
                finite = False
                break
            (loss / len(micros)).backward()
            for key, value in parts.items():
                sums[key] += float(value) / (len(micros) * config.num_iterations)
        if reuse and iteration == 0:
            for micro in micros:  # micro-batches a non-finite loss cut off: still the behaviour policy here
                if micro.old_logps is None:
                    micro.old_logps = behaviour_logps(policy, segmenter, micro, lossc)
            batch.old_logps = [lp for micro in micros for lp in micro.old_logps]
        average_gradients(params, info)
        clip = config.max_grad_norm if config.max_grad_norm > 0 else float("inf")
        grad_norm = float(clip_grad_norm(params, clip)) if finite else float("nan")
        lr = scheduler.get_last_lr()[0]
        finite = finite and math.isfinite(all_reduce_mean(grad_norm, info))
        if finite:
            optimizer.step()
        else:  # every rank skips together: the averaged norm is non-finite on all of them
            skipped += 1
            optimizer.zero_grad(set_to_none=True)
        scheduler.step()
    return sums, {"lr": lr, "grad_norm": grad_norm, "skipped": skipped}


def train(config: GRPOConfig, *, on_step: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run GRPO as ``config`` says; returns ``{"final": path, "steps": n, "last": metrics}``."""
    from training.common import (build_optimizer, end_step, example_index, finish_run, load_start_models,
                                 resume_and_track, seed_everything, start_run)
    from training.data import load_rl_prompts
    from training.distributed import all_reduce_mean, prepare_model
    from training.rollout import collect_rollouts
    from videoseg_o3.agent import GenerationConfig
    from videoseg_o3.checkpoint import save_checkpoint

    device, info, out, folders = start_run(config)
    prompts = [p for folder in folders for p in load_rl_prompts(folder, config.rl_file)]
    seed_everything(config.seed)
    policy, segmenter, generation = load_start_models(config, device)
    ref_policy = None
    if config.beta > 0:
        ref_policy = copy.deepcopy(policy)  # the frozen init policy, never synced
        ref_policy.requires_grad_(False)
        ref_policy.eval()
    set_grpo_trainable(policy, segmenter, config)
    model = nn.ModuleDict({"policy": policy, "segmenter": segmenter})
    model.train()
    prepare_model(model, config, info)  # distributed_strategy: fsdp2 shards the policy's layers here
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = build_optimizer(params, config, config.max_steps * config.num_iterations)
    protocol = config.protocol()
    sampling = GenerationConfig(max_new_tokens=config.max_completion_length, do_sample=True,
                                temperature=config.temperature, top_p=config.top_p, top_k=config.top_k)
    lossc = loss_config(config)
    weights = reward_weights(config)
    groups_per_micro = config.per_device_train_batch_size // config.num_generations
    prompts_per_step = groups_per_micro * config.gradient_accumulation_steps
    step, samples_seen, logger, bar = resume_and_track(config, out, model, optimizer, scheduler, info, config.max_steps, "grpo")
    last: dict[str, Any] = {}
    while step < config.max_steps:
        t_step = time.perf_counter()
        chosen = []
        for _ in range(prompts_per_step):
            chosen.append(prompts[example_index(samples_seen + info.rank, len(prompts), config.seed)])
            samples_seen += info.world_size
        rollout_inputs = [rollout_prompt(p) for p in chosen]
        try:
            batch = collect_rollouts(policy, segmenter, rollout_inputs, group_size=config.num_generations, generation=sampling,
                                     protocol=protocol, reward_weights=weights, reward_mode=config.reward_mode,
                                     seed=config.seed * 1_000_003 + step * 1009 + info.rank * 97)
        finally:
            for item in rollout_inputs:
                close = getattr(item.video, "close", None)
                if close is not None:
                    close()
        metrics = step_metrics(batch)
        t_update = time.perf_counter()
        sums, update = update_on_batch(policy, ref_policy, segmenter, batch, optimizer, scheduler, params, config,
                                       lossc, info)
        step += 1
        update_s = time.perf_counter() - t_update
        metrics.update({k: all_reduce_mean(v, info) for k, v in sums.items()})
        metrics.update({**update, "time/update_s": update_s, "time/step_s": time.perf_counter() - t_step})
        metrics["tokens_per_s"] = metrics["tokens/sampled"] / max(metrics["time/step_s"], 1e-9)
        last = metrics
        end_step(config, out, step, config.max_steps, metrics, model, optimizer, scheduler, samples_seen, info, logger,
                 bar, {"reward": f"{metrics['reward/total']:.2f}", "loss": f"{metrics.get('loss', float('nan')):.3f}"},
                 on_step)

    def save_final(final: Path) -> None:
        policy.eval()
        segmenter.eval()
        save_checkpoint(final, policy, segmenter, protocol, generation, overwrite=True)

    final = finish_run(config, out, step, model, optimizer, scheduler, samples_seen, info, logger, bar, save_final)
    return {"final": final, "steps": step, "last": last}


def main(argv: Sequence[str] | None = None) -> int:
    from training.common import run_main

    return run_main(GRPOConfig, train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
