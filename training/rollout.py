"""One GRPO rollout step as a plain function: prompts in, a scored :class:`RolloutBatch` out.

``collect_rollouts(policy, segmenter, prompts, group_size=G)`` does, for each prompt:

1. G multi-turn episodes of the select/answer protocol (RL preset: 10 + 5 frames at turn 0, up to 3
   turns; sampling at temperature 0.9, top-p 0.9, top-k 50, at most 512 tokens per turn), sharing the
   prefilled first observation (``videoseg_o3.agent.run_episodes``);
2. every sampled ``[SEG]`` decoded by SAM2 single-frame without memory and *without* the object-score
   gate (the released model decodes ungated masks), on the turn-0 spatial frames and on the keyframe
   visible at its turn (turn 0: ``N // 2``; later: the previous ``<select>``'s keyframe); each distinct
   frame is read and encoded once per prompt;
3. per turn IoU_vid (mean over the turn's ``[SEG]`` per spatial frame) and IoU_kf (last ``[SEG]``)
   against the ground truth, the registered rewards and the group advantages.

A malformed rollout (no tags, no ``[SEG]``, unreadable JSON) is scored, never raised: its format
reward is -1, and a turn without ``[SEG]`` has IoUs of 0 (the released rule), which the mask terms score.

Calling it from an external RL engine (e.g. verl's agent loop, or any loop that owns the optimizer):
build the policy (``videoseg_o3.policy.SegPolicy``) and segmenter (``videoseg_o3.segmenter.Sam2Segmenter``)
on the rollout device with the current weights, turn each dataset row into a :class:`RolloutPrompt`
(video reader, query, ``(T, H, W)`` bool masks, ``mask_existence``), and call
``collect_rollouts(policy, segmenter, prompts, group_size=G, seed=step)``. The returned batch holds
token ids with ``response_mask`` (verl's ``responses``/``response_mask``), ``rewards`` per term and
``advantages`` (an engine with its own estimator can read ``reward`` instead), plus what a
mask-calibrated loss needs (``seg_positions``, ``seg_keyframe_logits``, SAM2 ``features``, ground truth).
The function runs under ``torch.no_grad``, puts both models in eval mode for the duration and restores
their modes; it holds no state between calls, so the engine can shard prompts across ranks freely (a
group never crosses ranks, because the G rollouts of a prompt are produced together).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import torch

from training.advantages import group_advantages
from training.rollout_batch import RolloutBatch, RolloutPrompt
from videoseg_o3.agent import GenerationConfig, Trajectory, run_episodes
from videoseg_o3.protocol import ProtocolConfig, turn0_frame_indices
from videoseg_o3.rewards import DEFAULT_REWARD_WEIGHTS, TOTAL_KEY, RewardInput, compute_rewards
from videoseg_o3.rewards.inputs import check_mode
from videoseg_o3.rewards.iou import keyframe_iou, video_iou

__all__ = ["collect_rollouts", "rl_generation_config", "scripted_turns"]

ForcedScript = Sequence[str] | Callable[[int, list[Any]], str | None] | None


def rl_generation_config(**overrides: Any) -> GenerationConfig:
    """The released rollouts' sampling: temperature 0.9 (TRL's default), top-p 0.9, top-k 50 (transformers'
    default), at most 512 tokens per turn."""
    values = dict(max_new_tokens=512, do_sample=True, temperature=0.9, top_p=0.9, top_k=50)
    values.update(overrides)
    return GenerationConfig(**values)


def scripted_turns(num_frames: int, group_size: int) -> list[list[str]]:
    """Well-formed scripts for ``group_size`` rollouts of a ``num_frames`` video (tests and demos with a
    random policy, which never writes the protocol by itself).

    Rollout ``g`` makes ``g % 3`` selects then answers, so rollouts of one group have 1, 2 or 3 turns;
    intervals and keyframes differ per rollout (different rewards, non-zero advantages); the final turn
    of an odd rollout holds two ``[SEG]``.
    """
    from videoseg_o3.protocol import format_turn

    last = num_frames - 1
    steps = ("The target moves across the clip.", "It is bright and box-shaped.", "The query names it.")
    scripts = []
    for g in range(group_size):
        turns = []
        shift = g % max(1, num_frames // 4)
        for t in range(g % 3):
            s, e = min(last, t + shift), max(0, last - t)
            turns.append(format_turn("select", steps, "See new segment.", min(s, e), max(s, e), (s + e) // 2))
        s, e = min(last, num_frames // 4 + shift), min(last, (3 * num_frames) // 4)
        answer = format_turn("answer", steps, "Confirmed.", min(s, e), max(s, e), min(last, num_frames // 2 + g))
        if g % 2:
            answer = answer.replace("<RefSeg>[SEG]</RefSeg>", "<RefSeg>[SEG] [SEG]</RefSeg>")
        turns.append(answer)
        scripts.append(turns)
    return scripts


def _scripts_by_rollout(forced_turns: Any, num_prompts: int, group_size: int) -> list[ForcedScript] | None:
    """``forced_turns`` as one script per rollout: None, one script per rollout of a group (``G`` entries,
    reused for every prompt) or one per rollout of the batch (``P * G`` entries)."""
    if forced_turns is None:
        return None
    scripts = list(forced_turns)
    if len(scripts) == group_size:
        return scripts * num_prompts
    if len(scripts) == num_prompts * group_size:
        return scripts
    raise ValueError(f"Invalid forced_turns: {len(scripts)} scripts; pass one per rollout of a group ({group_size}) "
                     f"or of the batch ({num_prompts * group_size}).")


def _seg_positions(traj: Trajectory, seg_token_id: int) -> torch.Tensor:
    """``(n,) long`` positions of the ``[SEG]`` tokens the policy sampled (observations may quote "[SEG]")."""
    hit = (traj.input_ids == seg_token_id) & traj.response_mask.bool()
    return hit.nonzero().flatten()


class _PromptFrames:
    """The frames of one prompt that some mask is decoded on: read and SAM2-encoded once."""

    def __init__(self, prompt: RolloutPrompt, wanted: set[int], segmenter: Any) -> None:
        self.indices = torch.tensor(sorted(wanted), dtype=torch.long)
        self.row = {int(f): r for r, f in enumerate(self.indices.tolist())}
        frames = prompt.video.get_frames(self.indices.tolist())
        self.features = segmenter.encode_frames(frames)
        gt = prompt.gt_masks[self.indices]
        if tuple(gt.shape[1:]) != tuple(self.features.frame_size):
            raise ValueError(f"Invalid gt_masks for prompt {prompt.name!r}: masks are {tuple(gt.shape[1:])} but the "
                             f"video's frames are {tuple(self.features.frame_size)}. Pass masks at the video's size.")
        self.gt = gt

    def rows(self, frames: Sequence[int]) -> torch.Tensor:
        return torch.tensor([self.row[int(f)] for f in frames], dtype=torch.long)


@torch.no_grad()
def collect_rollouts(
    policy: Any,
    segmenter: Any,
    prompts: Sequence[RolloutPrompt],
    *,
    group_size: int = 4,
    generation: GenerationConfig | None = None,
    protocol: Any = None,
    reward_weights: Mapping[str, float] | None = None,
    reward_mode: str = "intended",
    seed: int | None = None,
    forced_turns: Sequence[ForcedScript] | None = None,
    decoding: str = "batched",
    mode: str = "kv",
) -> RolloutBatch:
    """Run ``group_size`` rollouts per prompt, decode their masks, score them; see the module docstring.

    Args:
        policy: a ``videoseg_o3.policy.SegPolicy``.
        segmenter: a ``videoseg_o3.segmenter.Sam2Segmenter`` (its low-resolution logits are stored ungated).
        prompts: ``P`` :class:`RolloutPrompt`.
        group_size: G rollouts per prompt (>= 1; 1 gives zero advantages).
        generation: sampling settings (default :func:`rl_generation_config`); ``seed`` overrides its seed.
        protocol: a ``ProtocolConfig`` (default ``ProtocolConfig.preset("rl")``); it must show >= 1
            turn-0 spatial frame (the video masks are decoded there).
        reward_weights: reward name -> weight (default: the seven released terms, weight 1 each).
        reward_mode: ``"intended"`` or ``"compat"`` (also selects the keyframe IoU's empty rule).
        seed: sampling seed of the step (rollout ``i`` of the batch samples with ``seed + i``).
        forced_turns: scripted turns (teacher forcing), one script per rollout of a group or of the batch.
        decoding: ``"batched"`` (the active rollouts of a prompt decode together) or ``"sequential"``.
        mode: ``"kv"`` or ``"reencode"`` (see ``videoseg_o3.agent``).
    Returns:
        a :class:`RolloutBatch` of ``P * G`` rollouts, prompt-major.
    """
    check_mode(reward_mode)
    if not prompts:
        raise ValueError("Invalid prompts (empty). Pass at least one RolloutPrompt.")
    for p in prompts:
        if not isinstance(p, RolloutPrompt):
            raise ValueError(f"Invalid prompt of type {type(p).__name__}. Expected a RolloutPrompt.")
    cfg = protocol if protocol is not None else ProtocolConfig.preset("rl")
    if cfg.turn0_spatial_frames < 1:
        raise ValueError("Invalid protocol for rollouts: turn0_spatial_frames is 0, but the video masks are decoded "
                         "on the turn-0 spatial frames. Set turn0_spatial_frames >= 1 (RL preset: 5).")
    generation = generation if generation is not None else rl_generation_config()
    if seed is not None:
        from dataclasses import replace

        generation = replace(generation, seed=int(seed))
    weights = dict(reward_weights) if reward_weights is not None else dict(DEFAULT_REWARD_WEIGHTS)
    num_prompts, g = len(prompts), group_size
    scripts = _scripts_by_rollout(forced_turns, num_prompts, g)

    policy_training = policy.model.training
    seg_training = segmenter.training
    policy.model.eval()
    segmenter.eval()
    try:
        t0 = time.perf_counter()
        trajectories = run_episodes(policy, [p.video for p in prompts], [p.query for p in prompts], protocol=cfg,
                                    generation=generation, mode=mode, num_rollouts=g,
                                    forced_turns_by_rollout=scripts, decoding=decoding)
        t_rollout = time.perf_counter() - t0
        t0 = time.perf_counter()
        batch_parts = _decode_and_measure(policy, segmenter, prompts, trajectories, g, cfg, reward_mode)
        t_segment = time.perf_counter() - t0
    finally:
        policy.model.train(policy_training)
        segmenter.train(seg_training)

    t0 = time.perf_counter()
    inputs = [RewardInput(texts=[t.text for t in traj.turns], mask_existence=prompts[i // g].mask_existence,
                          iou_vid=batch_parts["iou_vid_lists"][i], iou_kf=batch_parts["iou_kf_lists"][i],
                          parses=[t.parse for t in traj.turns], max_turns=cfg.max_turns)
              for i, traj in enumerate(trajectories)]
    terms = compute_rewards(inputs, weights, reward_mode)
    total = terms.pop(TOTAL_KEY)
    advantages = group_advantages(total, g)
    t_reward = time.perf_counter() - t0

    decode_tokens = sum(t.decode_tokens for t in trajectories)
    stats = {
        "rollout_s": t_rollout,
        "segment_s": t_segment,
        "reward_s": t_reward,
        "decode_tokens": float(decode_tokens),
        "sampled_tokens": float(sum(int(t.response_mask.sum()) for t in trajectories)),
        "rollout_tokens_per_s": decode_tokens / t_rollout if t_rollout > 0 else 0.0,
    }
    return _ordinary_tensors(RolloutBatch(
        group_size=g,
        trajectories=trajectories,
        seg_positions=batch_parts["seg_positions"],
        seg_turns=batch_parts["seg_turns"],
        seg_frames=batch_parts["seg_frames"],
        seg_frame_rows=batch_parts["seg_frame_rows"],
        spatial_frames=batch_parts["spatial_frames"],
        spatial_frame_rows=batch_parts["spatial_frame_rows"],
        seg_keyframe_logits=batch_parts["seg_keyframe_logits"],
        frame_indices=batch_parts["frame_indices"],
        features=batch_parts["features"],
        gt_masks=batch_parts["gt_masks"],
        rewards=terms,
        reward_weights={k: float(v) for k, v in weights.items()},
        reward=total,
        advantages=advantages,
        iou_vid=[[torch.tensor(v, dtype=torch.float32) for v in lists] for lists in batch_parts["iou_vid_lists"]],
        iou_kf=[torch.tensor(v, dtype=torch.float32) for v in batch_parts["iou_kf_lists"]],
        temperature=float(generation.temperature) if generation.do_sample else 1.0,
        reward_mode=reward_mode,
        stats=stats,
    ))


def _ordinary_tensors(batch: RolloutBatch) -> RolloutBatch:
    """Replace the tensors made under ``torch.inference_mode`` (the episode loop's and the decodes') by ordinary
    copies, so that every caller (our trainer or an external engine) can use the batch in a training step:
    autograd refuses to save inference tensors (e.g. the ids a trained embedding looks up)."""
    for traj in batch.trajectories:
        for name in ("input_ids", "response_mask", "mm_token_type_ids", "image_grid_thw", "pixel_values"):
            value = getattr(traj, name)
            if isinstance(value, torch.Tensor) and value.is_inference():
                setattr(traj, name, value.clone())
    for name in ("seg_positions", "seg_turns", "seg_frames", "seg_frame_rows", "seg_keyframe_logits",
                 "spatial_frame_rows", "gt_masks"):
        setattr(batch, name, [v.clone() if v.is_inference() else v for v in getattr(batch, name)])
    for features in batch.features:
        if features.image_embed.is_inference():
            features.image_embed = features.image_embed.clone()
        features.high_res = [h.clone() if h.is_inference() else h for h in features.high_res]
    return batch


def _decode_and_measure(policy: Any, segmenter: Any, prompts: Sequence[RolloutPrompt], trajectories: list[Trajectory],
                        g: int, cfg: Any, reward_mode: str) -> dict[str, list]:
    """SAM2 masks of every sampled ``[SEG]`` (spatial frames + its keyframe) and the per-turn IoUs."""
    out: dict[str, list] = {k: [] for k in (
        "seg_positions", "seg_turns", "seg_frames", "seg_frame_rows", "seg_keyframe_logits", "spatial_frames",
        "spatial_frame_rows", "frame_indices", "features", "gt_masks", "iou_vid_lists", "iou_kf_lists")}
    low = segmenter.image_size // 4
    for p, prompt in enumerate(prompts):
        group = trajectories[p * g:(p + 1) * g]
        num_frames = prompt.num_frames
        spatial = turn0_frame_indices(num_frames, cfg)[1]
        seg_frames_of = [[t.decode_frame(num_frames) for t in traj.turns for _ in range(t.seg_embeddings.shape[0])]
                         for traj in group]
        frames = _PromptFrames(prompt, set(spatial) | {f for fs in seg_frames_of for f in fs}, segmenter)
        spatial_rows = frames.rows(spatial)
        gt_spatial = frames.gt[spatial_rows]
        out["spatial_frames"].append(torch.tensor(spatial, dtype=torch.long))
        out["spatial_frame_rows"].append(spatial_rows)
        out["frame_indices"].append(frames.indices)
        out["features"].append(frames.features)
        out["gt_masks"].append(frames.gt)
        for traj, seg_frames in zip(group, seg_frames_of):
            positions = _seg_positions(traj, policy.seg_token_id)
            counts = [int(t.seg_embeddings.shape[0]) for t in traj.turns]
            if positions.numel() != sum(counts):  # an internal invariant the loss relies on
                raise RuntimeError(f"{positions.numel()} sampled [SEG] tokens but {sum(counts)} [SEG] embeddings.")
            n, s = sum(counts), len(spatial)
            turns_of = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts, dtype=torch.long)) \
                if counts else torch.zeros(0, dtype=torch.long)
            kf_rows = frames.rows(seg_frames)
            if n:
                emb = torch.cat([t.seg_embeddings for t in traj.turns if t.seg_embeddings.shape[0]]).float()
                # one decode for all: each [SEG] on every spatial frame, then on its keyframe
                index = torch.cat([spatial_rows.repeat(n), kf_rows])
                decoded = segmenter.decode_features(frames.features, torch.cat([emb.repeat_interleave(s, 0), emb]),
                                                    frame_index=index).low_res_logits.float().cpu()
                spatial_logits = decoded[: n * s].view(n, s, *decoded.shape[-2:])
                kf_logits = decoded[n * s:]
            else:
                spatial_logits = torch.zeros(0, s, low, low)
                kf_logits = torch.zeros(0, low, low)
            iou_vid, iou_kf = [], []
            for t, turn in enumerate(traj.turns):
                mine = (turns_of == t).nonzero().flatten()
                iou_vid.append(video_iou(spatial_logits[mine], gt_spatial))
                if mine.numel():
                    last = int(mine[-1])
                    iou_kf.append(keyframe_iou(kf_logits[last], frames.gt[kf_rows[last]], reward_mode))
                else:
                    iou_kf.append(0.0)
            out["seg_positions"].append(positions.cpu())
            out["seg_turns"].append(turns_of)
            out["seg_frames"].append(torch.tensor(seg_frames, dtype=torch.long))
            out["seg_frame_rows"].append(kf_rows)
            out["seg_keyframe_logits"].append(kf_logits)
            out["iou_vid_lists"].append(iou_vid)
            out["iou_kf_lists"].append(iou_kf)
    return out
