"""Warm up a randomly initialised tiny SAM2 on synthetic frames and masks, before any policy training.

Real users start from a pretrained SAM2 (``SegmenterConfig.checkpoint``, or a released checkpoint) and never need
this. The embedded tiny model, however, is random: its frozen image encoder gives features that carry no
object information, so a ``[SEG]``-prompted decoder trained on top of them (SFT trains only the decoder)
cannot learn masks. This step trains the *whole* tiny SAM2 -- image encoder, prompt encoder and mask
decoder -- on ground-truth object masks with a prompt that does not depend on the policy: the prompt
encoder's own positive-point embedding at a point inside the object, passed through the same
``decode_features`` path that ``[SEG]`` embeddings take (one 256-d sparse token after the padding
point). Afterwards the decoder segments "the object this token points at", the image encoder gives
useful features, and SFT has to teach the policy and its projector to emit such a token from the
``[SEG]`` hidden state.

Not covered: SAM2's memory attention and memory encoder (video propagation) keep their random weights;
only the single-frame path that SFT, GRPO and the rewards use is trained.

Loss: the SFT mask term (2.0 BCE + 0.5 Dice at the ground truth's resolution,
:func:`training.losses.sft_mask_loss`) plus a BCE that teaches the object-score head that the prompted object is
present (that head gates video propagation). Each step reads ``frames_per_step`` frames of one video (all
frames of a step share a size, as :class:`videoseg_o3.segmenter.FrameFeatures` requires) and one
single-object expression, and decodes the object on each frame where it is visible.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

__all__ = ["SamWarmupConfig", "encode_with_grad", "object_points", "point_prompts", "warm_up", "warmup_loss"]


@dataclass
class SamWarmupConfig:
    """Settings of :func:`warm_up`.

    Attributes:
        steps: optimizer steps (one video per step).
        frames_per_step: frames of that video decoded per step (frames without the object are skipped).
        learning_rate: AdamW learning rate; 3e-4 is a usual from-scratch rate for a small ViT/ConvNet.
        weight_decay: AdamW weight decay.
        bce_weight, dice_weight: the mask loss weights (the SFT recipe's 2.0 / 0.5).
        seed: data order.
    """

    steps: int = 300
    frames_per_step: int = 4
    learning_rate: float = 3e-4
    weight_decay: float = 0.01
    bce_weight: float = 2.0
    dice_weight: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.frames_per_step < 1:
            raise ValueError(f"Invalid warm-up size (steps={self.steps}, frames_per_step={self.frames_per_step}). "
                             "Both must be >= 1.")
        if self.learning_rate <= 0:
            raise ValueError(f"Invalid learning_rate ({self.learning_rate}). Use a value > 0, e.g. 3e-4.")


def object_points(masks: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A point inside each mask: its pixel nearest the mask's centroid.

    Args:
        masks: ``(n, H, W)`` bool, every mask non-empty.
    Returns:
        ``(n, 2)`` float32 ``(x, y)`` pixel coordinates in the masks' frame.
    """
    masks = torch.as_tensor(np.asarray(masks), dtype=torch.bool)
    points = []
    for i, mask in enumerate(masks):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        if ys.numel() == 0:
            raise ValueError(f"Invalid mask {i}: it is empty; pass only frames where the object is visible.")
        cy, cx = ys.float().mean(), xs.float().mean()
        k = int(torch.argmin((ys.float() - cy) ** 2 + (xs.float() - cx) ** 2))
        points.append(torch.stack([xs[k].float(), ys[k].float()]))
    return torch.stack(points)


def point_prompts(segmenter: Any, points_xy: torch.Tensor, frame_size: tuple[int, int]) -> torch.Tensor:
    """``(n, 256)`` prompt tokens: SAM2's positive-point embedding of ``(n, 2)`` ``(x, y)`` frame pixels.

    The points are rescaled from the frame (``frame_size = (H, W)``) to SAM2's square input, as the frames
    themselves are (aspect ratio not kept). Differentiable through the prompt encoder.
    """
    height, width = frame_size
    size = float(segmenter.image_size)
    scale = torch.tensor([size / width, size / height], device=segmenter.device)
    pts = (points_xy.to(segmenter.device).float() * scale)[:, None, :]
    labels = torch.ones(pts.shape[0], 1, dtype=torch.int32, device=segmenter.device)
    return segmenter.sam.sam_prompt_encoder._embed_points(pts, labels, pad=False)[:, 0]


def encode_with_grad(segmenter: Any, frames: np.ndarray | torch.Tensor) -> Any:
    """:class:`videoseg_o3.segmenter.FrameFeatures` of uint8 ``(n, H, W, 3)`` frames *with* gradients into the
    image encoder (``Sam2Segmenter.encode_frames`` is deliberately no-grad: the encoder is frozen in SFT/RL)."""
    from videoseg_o3.segmenter import FrameFeatures

    frames = torch.as_tensor(np.asarray(frames))
    sam = segmenter.sam
    levels = sam.num_feature_levels
    fpn = sam.image_encoder(segmenter.prepare_frames(frames))["backbone_fpn"]
    fpn = [f.float() for f in fpn[-levels:]]
    embed = fpn[-1]
    if sam.directly_add_no_mem_embed:
        embed = embed + sam.no_mem_embed.view(1, -1, 1, 1)
    return FrameFeatures(embed, list(fpn[:-1]), (int(frames.shape[1]), int(frames.shape[2])))


def warmup_loss(segmenter: Any, frames: np.ndarray, masks: np.ndarray, config: SamWarmupConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """Mask loss of point-prompted single-frame decodes.

    Args:
        frames: uint8 ``(n, H, W, 3)``; masks: bool ``(n, H, W)``, each non-empty (one object per frame).
    Returns:
        ``(loss, {"mask_bce", "mask_dice", "object_score_bce", "iou"})``; ``iou`` is the mean hard IoU at the masks' resolution.
    """
    from training.losses import sft_mask_loss
    from videoseg_o3.segmenter.model import upsample_logits

    gt = torch.as_tensor(np.asarray(masks), dtype=torch.bool, device=segmenter.device)
    features = encode_with_grad(segmenter, frames)
    prompts = point_prompts(segmenter, object_points(masks), features.frame_size)
    decoded = segmenter.decode_features(features, prompts)
    loss, parts = sft_mask_loss(decoded.low_res_logits, gt, bce_weight=config.bce_weight, dice_weight=config.dice_weight)
    # The object-score head gates SAM2's video propagation (score <= 0: empty mask); left random it can blank every
    # propagated frame, so it learns "the prompted object is present" on these frames (all have the object).
    score_bce = torch.nn.functional.binary_cross_entropy_with_logits(
        decoded.object_score_logits, torch.ones_like(decoded.object_score_logits))
    loss = loss + score_bce
    parts["object_score_bce"] = float(score_bce.detach())
    with torch.no_grad():
        pred = upsample_logits(decoded.low_res_logits.detach(), tuple(gt.shape[1:])) > 0
        inter = (pred & gt).flatten(1).sum(1).float()
        union = (pred | gt).flatten(1).sum(1).float().clamp_min(1)
    return loss, {**parts, "iou": float((inter / union).mean())}


def _single_object_records(root: Path) -> list[Any]:
    from videoseg_o3.data import load_benchmark

    records = [r for r in load_benchmark(root, "revos") if len(r.annotation_ids) == 1]
    if not records:
        raise ValueError(f"Invalid warm-up data {root}: no single-object expression. Generate it with videoseg-o3 synth.")
    return records


def warm_up(
    segmenter: Any,
    data_root: str | Path,
    config: SamWarmupConfig,
    *,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train every weight of ``segmenter`` on the single-object expressions of a split (ReVOS layout).

    Returns ``{"steps", "first_loss", "last_loss", "first_iou", "last_iou", "seconds"}`` where first/last are
    means over the first and last ``max(1, steps // 10)`` steps. Leaves the segmenter in eval mode with SAM2's
    usual trainable set (prompt encoder + mask decoder; image encoder and memory frozen).
    """
    from training.common import set_trainable

    records = _single_object_records(Path(data_root))
    rng = np.random.default_rng(config.seed)
    set_trainable(segmenter, False)
    sam = segmenter.sam
    for module in (sam.image_encoder, sam.sam_prompt_encoder, sam.sam_mask_decoder):
        set_trainable(module, True)
    sam.no_mem_embed.requires_grad_(True)
    params = [p for p in segmenter.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(1.0, s / max(1, config.steps)))))
    segmenter.train()
    losses: list[float] = []
    ious: list[float] = []
    t0 = time.perf_counter()
    for step in range(config.steps):
        record = records[int(rng.integers(len(records)))]
        masks = record.load_masks()
        visible = np.flatnonzero(masks.reshape(masks.shape[0], -1).any(1))
        if visible.size == 0:
            continue
        chosen = np.sort(rng.choice(visible, size=min(config.frames_per_step, visible.size), replace=False))
        frames = record.load_frames(chosen.tolist())
        loss, parts = warmup_loss(segmenter, frames, masks[chosen], config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        ious.append(parts["iou"])
        if on_step is not None:
            on_step(step + 1, {"loss": losses[-1], **parts})
    set_trainable(segmenter, False)
    set_trainable(sam.sam_prompt_encoder, True)
    set_trainable(sam.sam_mask_decoder, True)
    segmenter.eval()
    k = max(1, len(losses) // 10)
    return {"steps": len(losses), "first_loss": float(np.mean(losses[:k])), "last_loss": float(np.mean(losses[-k:])),
            "first_iou": float(np.mean(ious[:k])), "last_iou": float(np.mean(ious[-k:])),
            "seconds": time.perf_counter() - t0}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.sam_warmup --data SPLIT --out CKPT [--steps N]``: warm up the tiny random SAM2 of a
    tiny random checkpoint and write the checkpoint (policy untouched)."""
    import argparse

    from training.common import load_start_models
    from videoseg_o3.agent.generation import GenerationConfig
    from videoseg_o3.checkpoint import save_checkpoint
    from videoseg_o3.protocol import ProtocolConfig

    parser = argparse.ArgumentParser(prog="python -m training.sam_warmup", description=main.__doc__)
    parser.add_argument("--data", required=True, help="A synthetic split in the ReVOS layout (videoseg-o3 synth).")
    parser.add_argument("--out", required=True, help="Checkpoint directory to write.")
    parser.add_argument("--steps", type=int, default=SamWarmupConfig.steps)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    class _Start:
        init = None

    policy, segmenter, _ = load_start_models(_Start(), torch.device("cpu"))
    summary = warm_up(segmenter, args.data, SamWarmupConfig(steps=args.steps, seed=args.seed))
    save_checkpoint(args.out, policy, segmenter, ProtocolConfig.preset("rl"), GenerationConfig(max_new_tokens=32),
                    overwrite=True)
    print({k: round(v, 4) for k, v in summary.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
