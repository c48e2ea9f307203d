"""The differentiable [SEG] decode of a GRPO update and the SEG-aware calibration bonus.

In the update step every sampled ``[SEG]`` is decoded again, this time with gradients: its last-layer
hidden state (from the policy forward of the whole dialogue) goes through the projector and SAM2's
prompt encoder and mask decoder, on the frozen image features stored in the
:class:`~training.rollout_batch.RolloutBatch`. The masks are *not* gated by the object score, so the
gradient always reaches the decoder. Two uses:

- the calibration bonus ``m`` (:func:`calibration_bonus`): the log-likelihood of the rollout's
  binarised keyframe mask under the current keyframe logits (:mod:`kernels.seg_calibration`), added to
  log pi([SEG]) in the policy-gradient term so the advantage reaches the decoder and the projector;
- the auxiliary mask loss against ground truth (keyframes and the turn-0 spatial frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from kernels.seg_calibration import seg_calibration_ref, seg_calibration_triton

CALIBRATION_IMPLS = ("torch", "triton")


@dataclass
class SegDecodes:
    """Differentiable decodes of one rollout's kept ``[SEG]`` tokens (``k`` of them, in dialogue order).

    Attributes:
        keep: ``(k,) long`` indices into the rollout's ``seg_positions`` (all of them, or the first
            ``max_segs``).
        keyframe_logits: ``(k, h, w) float32`` low-resolution logits on each ``[SEG]``'s keyframe.
        spatial_logits: ``(k, S, h, w) float32`` logits on the prompt's turn-0 spatial frames, or None
            when not requested.
    """

    keep: torch.Tensor
    keyframe_logits: torch.Tensor
    spatial_logits: torch.Tensor | None


def decode_batch_segs(
    policy: Any,
    segmenter: Any,
    batch: Any,
    hidden: list[torch.Tensor],
    *,
    spatial: bool = True,
    max_segs: int | None = None,
) -> list[SegDecodes]:
    """Decode every rollout's sampled ``[SEG]`` tokens with gradients, one SAM2 decoder call per prompt.

    Args:
        policy: a ``SegPolicy`` (its ``projector`` maps hidden states to 256-d prompts).
        segmenter: a ``Sam2Segmenter`` (``decode_features`` on the batch's stored frame features).
        batch: a :class:`training.rollout_batch.RolloutBatch`.
        hidden: ``B`` tensors ``(L_i, H)``, last-layer (post-norm) hidden states of each dialogue.
        spatial: also decode on the prompt's spatial frames (for the auxiliary video mask loss).
        max_segs: decode only the first ``max_segs`` ``[SEG]`` of each rollout (the released code caps
            at 3); None = all.
    Returns:
        ``B`` :class:`SegDecodes`.
    """
    if max_segs is not None and max_segs < 0:
        raise ValueError(f"Invalid max_segs ({max_segs}). Use None (every [SEG]) or an int >= 0.")
    g = batch.group_size
    out: list[SegDecodes | None] = [None] * len(batch)
    proj_dtype = policy.projector[0].weight.dtype
    for p in range(batch.num_prompts):
        rows = range(p * g, (p + 1) * g)
        feats = batch.features[p]
        device = feats.image_embed.device
        spatial_rows = batch.spatial_frame_rows[p].to(device)
        num_spatial = int(spatial_rows.numel()) if spatial else 0
        embeds, frame_rows, counts = [], [], []
        for i in rows:
            n = batch.num_segs(i)
            keep = torch.arange(n if max_segs is None else min(n, max_segs))
            counts.append(keep)
            if keep.numel() == 0:
                continue
            positions = batch.seg_positions[i][keep].to(hidden[i].device)
            emb = policy.projector(hidden[i][positions].to(proj_dtype))
            embeds.append(emb)
            frame_rows.append(batch.seg_frame_rows[i][keep].to(device))
        total = sum(int(k.numel()) for k in counts)
        if total == 0:
            for i, keep in zip(rows, counts):
                out[i] = SegDecodes(keep, torch.zeros(0, 1, 1, device=device), None)
            continue
        emb = torch.cat(embeds)
        kf_rows = torch.cat(frame_rows)
        # keyframe decodes first, then each [SEG] on every spatial frame (seg-major)
        index = kf_rows
        emb_all = emb
        if num_spatial:
            index = torch.cat([kf_rows, spatial_rows.repeat(total)])
            emb_all = torch.cat([emb, emb.repeat_interleave(num_spatial, dim=0)])
        logits = segmenter.decode_features(feats, emb_all, frame_index=index).low_res_logits
        kf_logits = logits[:total]
        sp_logits = logits[total:].reshape(total, num_spatial, *logits.shape[1:]) if num_spatial else None
        start = 0
        for i, keep in zip(rows, counts):
            k = int(keep.numel())
            out[i] = SegDecodes(
                keep=keep,
                keyframe_logits=kf_logits[start:start + k],
                spatial_logits=sp_logits[start:start + k] if sp_logits is not None else None,
            )
            start += k
    return out  # type: ignore[return-value]


def calibration_bonus(
    keyframe_logits: torch.Tensor,
    rollout_keyframe_logits: torch.Tensor,
    *,
    compat_threshold: float | None = None,
    size: int = 32,
    impl: str = "torch",
) -> torch.Tensor:
    """The calibration term ``m`` of each ``[SEG]``: mean over a ``size x size`` grid of the log-likelihood of
    the rollout's binarised keyframe mask under the current logits (:mod:`kernels.seg_calibration`).

    Args:
        keyframe_logits: ``(k, h, w)`` float, current decoder's logits (differentiable).
        rollout_keyframe_logits: ``(k, h', w')`` float, the rollout-time logits (the target, no gradient).
        compat_threshold: None binarises the rollout at logit 0; 0.5 is the released code's threshold.
        size: the grid side (32 in the paper).
        impl: ``"torch"`` (reference) or ``"triton"`` (fused kernel; GPU, or the CPU interpreter in tests).
    Returns:
        ``(k,) float32`` bonus values (<= 0), differentiable in ``keyframe_logits``.
    """
    if impl not in CALIBRATION_IMPLS:
        raise ValueError(f"Invalid calibration impl ({impl}). Supported values are {', '.join(CALIBRATION_IMPLS)}.")
    target = rollout_keyframe_logits.detach().to(keyframe_logits.device)
    fn = seg_calibration_triton if impl == "triton" else seg_calibration_ref
    return fn(keyframe_logits, target, compat_threshold=compat_threshold, size=size)
