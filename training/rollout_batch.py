"""The scored batch of GRPO rollouts that the loss and the trainer consume.

:func:`training.rollout.collect_rollouts` fills a :class:`RolloutBatch` from :class:`RolloutPrompt`
inputs: it runs the multi-turn episodes (G rollouts per prompt), decodes every sampled ``[SEG]`` with
SAM2 (single frame, no memory, not gated by the object score, as the released rollouts do), scores the
rollouts with the registered rewards and normalises them into group advantages. Everything the
update step needs is in the batch, so the update never re-runs the frozen SAM2 image encoder nor
re-reads the video.

Layout: ``B = num_prompts * group_size`` rollouts ordered prompt-major (the ``group_size`` rollouts of a
prompt are consecutive; a group is never split), so rollout ``i`` belongs to prompt ``i // group_size``.
Per-prompt data (frames, their SAM2 features, ground truth) is stored once per prompt and indexed
by "frame rows"; per-rollout data is in lists of length ``B`` (rollouts have different lengths and
numbers of ``[SEG]``, so they are not padded here: padding is the loss's business).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from videoseg_o3.agent import Trajectory
from videoseg_o3.segmenter.model import FrameFeatures

__all__ = ["RolloutBatch", "RolloutPrompt", "tiny_rollout_batch"]


@dataclass
class RolloutPrompt:
    """One RL prompt: a video, a query and its ground truth (what an RL record reader yields).

    Attributes:
        video: a ``videoseg_o3.io`` reader or anything with ``num_frames``, ``height``, ``width`` and
            ``get_frames(indices) -> (n, H, W, 3) uint8`` (e.g. ``videoseg_o3.io.array_reader.ArrayReader``).
        query: the referring / reasoning expression (non-empty).
        gt_masks: ``(T, H, W)`` bool, the target's mask on every frame at the video's resolution (the OR
            over the record's ``anno_id`` objects).
        mask_existence: ``(T,)`` bool, whether the target is visible on each frame (the released RL
            records' ``mask_existence``; the temporal and keyframe rewards read it). Default: derived
            from ``gt_masks`` (any pixel set).
        name: an identifier for logs (e.g. ``video_name/exp_id``).
    """

    video: Any
    query: str
    gt_masks: torch.Tensor
    mask_existence: torch.Tensor | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.query, str) or not self.query.strip():
            raise ValueError(f"Invalid query ({self.query!r}) for prompt {self.name!r}: it must be a non-empty string.")
        masks = torch.as_tensor(self.gt_masks)
        if masks.ndim != 3:
            raise ValueError(f"Invalid gt_masks shape {tuple(masks.shape)} for prompt {self.name!r}. Expected (T, H, W).")
        self.gt_masks = masks.bool()
        num_frames = int(getattr(self.video, "num_frames", -1))
        if num_frames != masks.shape[0]:
            raise ValueError(f"Invalid gt_masks for prompt {self.name!r}: {masks.shape[0]} masks for a video of "
                             f"{num_frames} frames. Pass one mask per frame.")
        if self.mask_existence is None:
            self.mask_existence = self.gt_masks.flatten(1).any(dim=1)
        else:
            existence = torch.as_tensor(self.mask_existence).reshape(-1)
            if existence.shape[0] != num_frames:
                raise ValueError(f"Invalid mask_existence for prompt {self.name!r}: {existence.shape[0]} values for "
                                 f"{num_frames} frames. Pass one value per frame.")
            self.mask_existence = existence.bool()

    @property
    def num_frames(self) -> int:
        return int(self.gt_masks.shape[0])


@dataclass
class RolloutBatch:
    """A scored batch of ``B = num_prompts * group_size`` multi-turn rollouts, prompt-major.

    Notation: ``B`` rollouts, ``P = B // group_size`` prompts, ``L_i`` tokens in rollout ``i``'s dialogue,
    ``n_i`` ``[SEG]`` tokens sampled in rollout ``i`` (over all its turns, in order), ``S`` turn-0
    spatial frames, ``F_p`` distinct frames of prompt ``p`` that some mask is decoded on (its spatial
    frames and every rollout's keyframes), ``(H_p, W_p)`` prompt ``p``'s video size, ``h = w = S2/4`` the
    SAM2 low-resolution logit size (256 at SAM2's 1024 input).

    Attributes:
        group_size: G, rollouts per prompt. Advantages are normalised within each group of G, so a
            micro-batch or a rank must hold whole groups.
        trajectories: ``B`` :class:`videoseg_o3.agent.Trajectory`. Each carries ``input_ids (L_i,) long``
            (every prompt chunk and every sampled token, in order), ``response_mask (L_i,) long`` (1 on the
            tokens the policy sampled, stop tokens included; 0 on system, user, observation and image
            tokens: the policy loss is over these), ``mm_token_type_ids (L_i,)``, ``image_grid_thw
            (num_images, 3) long`` and ``pixel_values (sum prod(grid), D) float`` (to re-run the policy
            forward with gradients), and per turn ``seg_embeddings (num_seg, 256)`` (the rollout-time,
            no-grad projector outputs) and the parse of the turn's text.
        seg_positions: ``B`` tensors ``(n_i,) long``: position ``p`` in ``input_ids`` of every sampled
            ``[SEG]`` (``input_ids[p] == seg_token_id``). Its log-prob is read from the logits at
            ``p - 1``; the hidden state at ``p`` is what the projector turns into the SAM2 prompt. These
            are where the SEG-aware calibration bonus is added.
        seg_turns: ``B`` tensors ``(n_i,) long``: the turn each ``[SEG]`` was sampled in (the keyframe loss
            uses the last ``[SEG]`` of each turn; the video loss averages a turn's ``[SEG]``).
        seg_frames: ``B`` tensors ``(n_i,) long``: the video frame index each ``[SEG]``'s keyframe mask is
            decoded on: the keyframe visible at that turn (turn 0: ``N // 2``, the released rollouts'
            rule; later turns: the keyframe of the previous ``<select>``).
        seg_frame_rows: ``B`` tensors ``(n_i,) long``: row of ``seg_frames`` in the prompt's frame table
            (``frame_indices[i // G]``), to index ``features`` and ``gt_masks``.
        spatial_frames: ``P`` tensors ``(S,) long``: the turn-0 high-resolution frame indices of each prompt
            (every ``[SEG]`` is also decoded on all of them: the video masks of the rewards and the loss).
        spatial_frame_rows: ``P`` tensors ``(S,) long``: their rows in the prompt's frame table.
        seg_keyframe_logits: ``B`` tensors ``(n_i, h, w) float32``: the rollout-time (no-grad) low-resolution
            SAM2 logits of each ``[SEG]`` on its keyframe. Binarised (> 0) they are the calibration target:
            the bonus is the log-likelihood of this mask under the current decoder's logits.
        frame_indices: ``P`` tensors ``(F_p,) long``: the prompt's frame table, sorted distinct video frame
            indices (spatial frames and every rollout's keyframes).
        features: ``P`` :class:`videoseg_o3.segmenter.model.FrameFeatures` of ``F_p`` frames each, row ``r``
            = frame ``frame_indices[p][r]``: the frozen SAM2 image encoder's outputs (``no_mem_embed``
            added). The encoder is frozen, so the loss's differentiable decode reuses them
            (``segmenter.decode_features(features[p], embeddings, frame_index=rows)``).
        gt_masks: ``P`` tensors ``(F_p, H_p, W_p) bool``: ground truth on the frame table's frames at the
            video's resolution (the mask loss and the IoUs compare against it).
        rewards: per reward name, ``(B,) float32``: the *unweighted* value of each configured term.
        reward_weights: per reward name, its weight in ``reward``.
        reward: ``(B,) float32``: ``sum_k reward_weights[k] * rewards[k]``.
        advantages: ``(B,) float32``: ``(reward - group mean) / (unbiased group std + 1e-4)`` per group.
        iou_vid: ``B`` lists (one per turn) of ``(S,) float32``: each turn's video IoU per spatial frame
            (the mean over the turn's ``[SEG]``; ``0`` for a turn without ``[SEG]``), for logs.
        iou_kf: ``B`` tensors ``(num_turns_i,) float32``: each turn's keyframe IoU (last ``[SEG]``), for logs.
        temperature: the sampling temperature of the rollouts (log-probs are scored at it unless the
            loss's reference-compatible mode scores at 1).
        reward_mode: ``"intended"`` or ``"compat"``, how the rewards were computed.
        old_logps: ``B`` tensors ``(L_i,) float32`` or None: the behaviour policy's per-token log-probs
            (log-prob of ``input_ids[j]`` at position ``j``; 0 where ``response_mask`` is 0). Filled by the
            trainer when a batch is reused (``num_iterations > 1``) for the clipped ratio.
        ref_logps: ``B`` tensors ``(L_i,) float32`` or None, same layout: the frozen reference policy's
            per-token log-probs (``training.losses.reference_logps``). Filled once per batch by the trainer,
            so the ``num_iterations`` updates on the batch never re-run the reference; None = the loss
            runs the reference itself.
        stats: scalar measurements for logs (seconds per stage, tokens, ...).
    """

    group_size: int
    trajectories: list[Trajectory]
    seg_positions: list[torch.Tensor]
    seg_turns: list[torch.Tensor]
    seg_frames: list[torch.Tensor]
    seg_frame_rows: list[torch.Tensor]
    spatial_frames: list[torch.Tensor]
    spatial_frame_rows: list[torch.Tensor]
    seg_keyframe_logits: list[torch.Tensor]
    frame_indices: list[torch.Tensor]
    features: list[FrameFeatures]
    gt_masks: list[torch.Tensor]
    rewards: dict[str, torch.Tensor]
    reward_weights: dict[str, float]
    reward: torch.Tensor
    advantages: torch.Tensor
    iou_vid: list[list[torch.Tensor]] = field(default_factory=list)
    iou_kf: list[torch.Tensor] = field(default_factory=list)
    temperature: float = 1.0
    reward_mode: str = "intended"
    old_logps: list[torch.Tensor] | None = None
    ref_logps: list[torch.Tensor] | None = None
    stats: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        return len(self.trajectories)

    @property
    def num_prompts(self) -> int:
        return len(self.trajectories) // self.group_size

    def prompt_of(self, i: int) -> int:
        """The prompt (group) index of rollout ``i``."""
        return i // self.group_size

    def num_segs(self, i: int) -> int:
        return int(self.seg_positions[i].numel())

    # ------------------------------------------------------------------ per-rollout views
    def seg_embeddings(self, i: int) -> torch.Tensor:
        """``(n_i, 256)`` rollout-time (no-grad) ``[SEG]`` embeddings of rollout ``i``, in order."""
        turns = self.trajectories[i].turns
        parts = [t.seg_embeddings for t in turns if t.seg_embeddings.shape[0]]
        if not parts:
            return torch.zeros(0, 256)
        return torch.cat(parts)

    def gt_keyframes(self, i: int) -> torch.Tensor:
        """``(n_i, H, W) bool``: ground truth on each ``[SEG]``'s keyframe."""
        return self.gt_masks[self.prompt_of(i)][self.seg_frame_rows[i]]

    def gt_spatial(self, i: int) -> torch.Tensor:
        """``(S, H, W) bool``: ground truth on the prompt's turn-0 spatial frames."""
        p = self.prompt_of(i)
        return self.gt_masks[p][self.spatial_frame_rows[p]]

    def select(self, groups: list[int]) -> "RolloutBatch":
        """A batch of whole groups (prompt indices ``groups``, in that order): how a trainer cuts micro-batches
        or rank shards without ever splitting a group."""
        g = self.group_size
        rows = [p * g + k for p in groups for k in range(g)]
        pick = lambda xs: [xs[r] for r in rows]  # noqa: E731
        pick_p = lambda xs: [xs[p] for p in groups]  # noqa: E731
        index = torch.tensor(rows, dtype=torch.long)
        return RolloutBatch(
            group_size=g,
            trajectories=pick(self.trajectories),
            seg_positions=pick(self.seg_positions),
            seg_turns=pick(self.seg_turns),
            seg_frames=pick(self.seg_frames),
            seg_frame_rows=pick(self.seg_frame_rows),
            spatial_frames=pick_p(self.spatial_frames),
            spatial_frame_rows=pick_p(self.spatial_frame_rows),
            seg_keyframe_logits=pick(self.seg_keyframe_logits),
            frame_indices=pick_p(self.frame_indices),
            features=pick_p(self.features),
            gt_masks=pick_p(self.gt_masks),
            rewards={k: v[index] for k, v in self.rewards.items()},
            reward_weights=dict(self.reward_weights),
            reward=self.reward[index],
            advantages=self.advantages[index],
            iou_vid=pick(self.iou_vid) if self.iou_vid else [],
            iou_kf=pick(self.iou_kf) if self.iou_kf else [],
            temperature=self.temperature,
            reward_mode=self.reward_mode,
            old_logps=pick(self.old_logps) if self.old_logps is not None else None,
            ref_logps=pick(self.ref_logps) if self.ref_logps is not None else None,
            stats=dict(self.stats),
        )

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check every cross-field invariant the loss relies on; raises ValueError naming the field."""
        g, b = self.group_size, len(self.trajectories)
        if isinstance(g, bool) or not isinstance(g, int) or g < 1:
            raise ValueError(f"Invalid group_size ({g!r}). Set it to an int >= 1.")
        if b % g:
            raise ValueError(f"Invalid RolloutBatch: {b} rollouts is not a multiple of group_size {g}; groups are never split.")
        p = b // g
        per_rollout = {"seg_positions": self.seg_positions, "seg_turns": self.seg_turns, "seg_frames": self.seg_frames,
                       "seg_frame_rows": self.seg_frame_rows, "seg_keyframe_logits": self.seg_keyframe_logits}
        if self.iou_vid:
            per_rollout["iou_vid"] = self.iou_vid
        if self.iou_kf:
            per_rollout["iou_kf"] = self.iou_kf
        for name in ("old_logps", "ref_logps"):
            if getattr(self, name) is not None:
                per_rollout[name] = getattr(self, name)
        for name, values in per_rollout.items():
            if len(values) != b:
                raise ValueError(f"Invalid RolloutBatch.{name}: {len(values)} entries for {b} rollouts.")
        per_prompt = {"spatial_frames": self.spatial_frames, "spatial_frame_rows": self.spatial_frame_rows,
                      "frame_indices": self.frame_indices, "features": self.features, "gt_masks": self.gt_masks}
        for name, values in per_prompt.items():
            if len(values) != p:
                raise ValueError(f"Invalid RolloutBatch.{name}: {len(values)} entries for {p} prompts.")
        for name, value in [("reward", self.reward), ("advantages", self.advantages), *self.rewards.items()]:
            if tuple(value.shape) != (b,):
                raise ValueError(f"Invalid RolloutBatch reward field {name!r}: shape {tuple(value.shape)}, expected ({b},).")
        for i, traj in enumerate(self.trajectories):
            n = int(self.seg_positions[i].numel())
            for name in ("seg_turns", "seg_frames", "seg_frame_rows"):
                if int(per_rollout[name][i].numel()) != n:
                    raise ValueError(f"Invalid RolloutBatch.{name}[{i}]: {per_rollout[name][i].numel()} values for {n} [SEG].")
            if int(self.seg_keyframe_logits[i].shape[0]) != n:
                raise ValueError(f"Invalid RolloutBatch.seg_keyframe_logits[{i}]: {self.seg_keyframe_logits[i].shape[0]} "
                                 f"masks for {n} [SEG].")
            for name in ("old_logps", "ref_logps"):
                stored = getattr(self, name)
                if stored is not None and tuple(stored[i].shape) != tuple(traj.input_ids.shape):
                    raise ValueError(f"Invalid RolloutBatch.{name}[{i}]: shape {tuple(stored[i].shape)} for a dialogue of "
                                     f"{traj.input_ids.numel()} tokens; store one log-prob per token.")
            if n and int(self.seg_positions[i].max()) >= traj.input_ids.numel():
                raise ValueError(f"Invalid RolloutBatch.seg_positions[{i}]: a position is past the dialogue's "
                                 f"{traj.input_ids.numel()} tokens.")
            if n and int(traj.response_mask[self.seg_positions[i]].min()) != 1:
                raise ValueError(f"Invalid RolloutBatch.seg_positions[{i}]: a [SEG] position is not a sampled token "
                                 "(response_mask 0).")
            rows = int(self.features[i // g].image_embed.shape[0])
            if n and int(self.seg_frame_rows[i].max()) >= rows:
                raise ValueError(f"Invalid RolloutBatch.seg_frame_rows[{i}]: row past the prompt's {rows} encoded frames.")
        for q in range(p):
            f = int(self.frame_indices[q].numel())
            if len(self.features[q]) != f or int(self.gt_masks[q].shape[0]) != f:
                raise ValueError(f"Invalid RolloutBatch prompt {q}: frame table of {f} frames but {len(self.features[q])} "
                                 f"encoded frames and {self.gt_masks[q].shape[0]} ground-truth masks.")


def tiny_rollout_batch(policy: Any, segmenter: Any, *, num_prompts: int = 1, group_size: int = 2,
                       num_frames: int = 12, height: int = 48, width: int = 64, seed: int = 0,
                       well_formed: bool = True, **collect_kwargs: Any) -> RolloutBatch:
    """A real :class:`RolloutBatch` from tiny-model rollouts, for tests of the loss and the trainer.

    Builds ``num_prompts`` random videos with a rectangle-shaped ground truth on some frames, and runs
    :func:`training.rollout.collect_rollouts` on them. A random tiny policy never writes a well-formed
    turn, so with ``well_formed`` the turns are teacher-forced: rollout ``g`` of every prompt answers
    after ``g % 3`` selects (different lengths and numbers of turns within a group), and every turn
    holds a ``[SEG]`` (the last turn of odd rollouts holds two). The policy still runs every token, so
    positions, embeddings and masks are real. Extra keyword arguments go to ``collect_rollouts``.
    """
    from training.rollout import collect_rollouts, scripted_turns

    from videoseg_o3.io.array_reader import ArrayReader

    gen = torch.Generator().manual_seed(seed)
    prompts = []
    for p in range(num_prompts):
        frames = torch.randint(0, 256, (num_frames, height, width, 3), generator=gen, dtype=torch.uint8)
        masks = torch.zeros(num_frames, height, width, dtype=torch.bool)
        first, last = num_frames // 4, (3 * num_frames) // 4
        masks[first:last + 1, height // 4: height // 2 + p, width // 4: width // 2] = True
        frames[masks] = 230
        prompts.append(RolloutPrompt(ArrayReader(frames), f"the bright box {p}", masks, name=f"tiny{p}"))
    if well_formed:
        collect_kwargs.setdefault("forced_turns", scripted_turns(num_frames, group_size))
    collect_kwargs.setdefault("seed", seed)
    return collect_rollouts(policy, segmenter, prompts, group_size=group_size, **collect_kwargs)
