"""Warm up a randomly initialised tiny SAM2 on synthetic videos and masks, before any policy training.

Real users start from a pretrained SAM2 (``SegmenterConfig.checkpoint``, or a released checkpoint) and never need
this. The embedded tiny model, however, is random: its decoder cannot segment and its memory cannot track, so a
``[SEG]``-prompted decoder trained on top of it (SFT trains only the decoder) has nothing to build on and every
propagated mask is empty. This step trains SAM2 in the order SAM2 itself was trained, images first, then video:

1. **Image stage** (``image_steps``): single frames. Every object visible on the frame is prompted at once, as a
   batch of objects, each supervised with its own mask, so that only a decoder that follows its prompt can lower
   the loss: one that ignores the prompt gives every object the same mask and pays for it on all but one. This is
   the stage that teaches the decoder to follow its prompt, and it needs a low learning rate (see
   :class:`SamWarmupConfig`). Before it existed, the warm-up prompted one object per clip; a decoder that segments
   "the object-like things in the frame" lowered that loss almost as well, and that is what it learned: after
   SFT, replacing the ``[SEG]`` embedding by zeros changed no mask pixel, so no ``[SEG]`` could choose the object.
2. **Video stage** (``steps``): short clips. The first frame of a clip is prompted (every object visible on it,
   as above), the following frames are tracked through the memory encoder and memory attention (sam2's own
   ``track_step``, so exactly the computation of inference), and every frame's mask is supervised.

The prompt does not depend on the policy: the prompt encoder's positive-point embedding at a point inside the
object on the prompted frame, passed as the one extra sparse token that ``[SEG]`` embeddings are (after the
padding point), and re-injected on the tracked frames as inference does
(``Sam2Segmenter.propagate(reinject_prompt=True)``). The prompted frame is exactly the single-frame path that
``Sam2Segmenter.decode_features`` runs, which SFT, GRPO and the rewards use. :func:`prompt_following` measures
the result: IoU with the prompted object against IoU with the other objects of the frame.

Trained: prompt encoder, mask decoder, memory encoder, memory attention, the image encoder's neck and SAM2's
free embeddings; the image encoder's trunk too when ``train_trunk`` is set (slower; random trunk features
already keep colour and position, which is all the synthetic shapes need). Clips run forward or backward in
time, as propagation does from a keyframe.

Loss per frame: the SFT mask term (2.0 BCE + 0.5 Dice at the ground truth's resolution,
:func:`training.losses.sft_mask_loss`) plus a BCE that teaches the object-score head whether the prompted object
is visible (it drives sam2's occlusion handling of object pointers); averaged over the clip.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

__all__ = ["SamWarmupConfig", "VideoObjects", "clip_frames", "draw_objects", "object_points", "point_prompts",
           "prompt_following", "track_clip", "tracking_loss", "video_objects", "warm_up"]


@dataclass
class SamWarmupConfig:
    """Settings of :func:`warm_up`.

    Attributes:
        image_steps: optimizer steps of the image stage, run first: single frames, every visible object prompted,
            no tracking (see the module docstring).
        images_per_step: frames per image-stage step.
        image_learning_rate: the image stage's constant AdamW learning rate. Low on purpose: at 5e-4 and above
            the decoder settles within a few hundred steps on the prompt-blind answer (the same mask, the union of
            the objects, whatever the prompt), and stays there; at 1e-4 it leaves that plateau after 300-400
            steps and follows its prompt, on held-out videos too.
        steps: optimizer steps of the video stage (one clip per step, cosine-decayed ``learning_rate``).
        frames_per_step: frames per clip: the prompted frame and the ``frames_per_step - 1`` frames tracked after
            it (fewer at the video's ends).
        train_trunk: also train the image encoder's trunk (else only its neck).
        learning_rate: the video stage's peak AdamW learning rate; above 1e-4 it loosens the prompt-following of
            the image stage.
        weight_decay: AdamW weight decay.
        bce_weight, dice_weight: the mask loss weights (the SFT recipe's 2.0 / 0.5).
        prompt_all_objects: prompt every object visible on the clip's first frame in one step (see the module
            docstring); off, one of them, drawn at random (the decoder then learns to ignore its prompt).
        seed: data order.
    """

    image_steps: int = 800
    images_per_step: int = 2
    image_learning_rate: float = 1e-4
    steps: int = 300
    frames_per_step: int = 4
    train_trunk: bool = False
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    bce_weight: float = 2.0
    dice_weight: float = 0.5
    prompt_all_objects: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.image_steps < 0 or self.steps + self.image_steps < 1:
            raise ValueError(f"Invalid warm-up length (image_steps={self.image_steps}, steps={self.steps}). Both "
                             "must be >= 0, and one of them >= 1.")
        if self.frames_per_step < 1 or self.images_per_step < 1:
            raise ValueError(f"Invalid warm-up batch (frames_per_step={self.frames_per_step}, images_per_step="
                             f"{self.images_per_step}). Both must be >= 1.")
        if self.learning_rate <= 0 or self.image_learning_rate <= 0:
            raise ValueError(f"Invalid learning rate (learning_rate={self.learning_rate}, image_learning_rate="
                             f"{self.image_learning_rate}). Use values > 0, e.g. 1e-4.")


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


def clip_frames(visible: np.ndarray, num_frames: int, length: int, rng: np.random.Generator) -> tuple[list[int], bool]:
    """A clip to track: ``(frame order, reverse)``.

    The first frame is drawn among ``visible`` (the frames where the object is, so the prompt points at it); the
    direction is forward or backward with equal chance, as propagation runs both ways from its keyframe; the clip
    stops at the video's end. Later frames may miss the object (it left or is hidden): tracking must then give an
    empty mask.
    """
    anchor = int(rng.choice(visible))
    reverse = bool(rng.integers(2))
    if reverse:
        return list(range(anchor, max(-1, anchor - length), -1)), True
    return list(range(anchor, min(num_frames, anchor + length))), False


def _backbone_with_grad(segmenter: Any, frames: torch.Tensor, train_trunk: bool) -> tuple[list, list, list]:
    """sam2 ``forward_image`` + ``_prepare_backbone_features`` on uint8 ``(n, H, W, 3)`` frames, with gradients
    (through the trunk only when ``train_trunk``). Returns ``(vision_feats, vision_pos_embeds, feat_sizes)`` with
    features laid out ``(HW, n, C)`` per level, as ``track_step`` takes them."""
    sam = segmenter.sam
    pixels = segmenter.prepare_frames(frames)
    encoder = sam.image_encoder
    with torch.set_grad_enabled(train_trunk and torch.is_grad_enabled()):
        trunk = encoder.trunk(pixels)
    features, pos = encoder.neck(trunk)
    if encoder.scalp > 0:
        features, pos = features[: -encoder.scalp], pos[: -encoder.scalp]
    features = list(features)
    if sam.use_high_res_features_in_sam:  # what forward_image does: the decoder's projections of levels 0 and 1
        features[0] = sam.sam_mask_decoder.conv_s0(features[0])
        features[1] = sam.sam_mask_decoder.conv_s1(features[1])
    _, vision_feats, vision_pos, feat_sizes = sam._prepare_backbone_features(
        {"backbone_fpn": features, "vision_pos_enc": list(pos)})
    return vision_feats, vision_pos, feat_sizes


def track_clip(segmenter: Any, frames: np.ndarray | torch.Tensor, token: torch.Tensor, order: Sequence[int], *,
               reverse: bool, num_frames: int, train_trunk: bool = False) -> list[dict[str, torch.Tensor]]:
    """Prompt ``order[0]`` with ``token`` and track through ``order[1:]`` with sam2's ``track_step``, differentiably.

    This is the computation of :meth:`videoseg_o3.segmenter.Sam2Segmenter.propagate` (with the prompt re-injected
    on tracked frames) for one pass, kept on the autograd graph. Several objects are tracked as one batch, as
    sam2's video predictor does: the frames are encoded once and their features shared by the objects.

    Args:
        frames: uint8 ``(len(order), H, W, 3)``, the clip's frames in ``order``.
        token: ``(n, 256)`` prompt tokens, one per object (``[SEG]`` embeddings, or point embeddings from
            :func:`point_prompts`).
        order: frame indices in tracking order; ``reverse``: whether that order runs backward; ``num_frames``: the
            video's length (sam2 uses it for temporal positions).
    Returns:
        per frame of ``order``: ``{"logits": (n, S/4, S/4) float32, "object_score": (n,) float32}``.
    """
    sam = segmenter.sam
    device = segmenter.device
    token = token.reshape(-1, token.shape[-1])
    n = int(token.shape[0])
    feats, pos, sizes = _backbone_with_grad(segmenter, torch.as_tensor(np.asarray(frames)), train_trunk)
    padding_point = {"point_coords": torch.zeros(n, 1, 2, device=device),
                     "point_labels": -torch.ones(n, 1, dtype=torch.int32, device=device)}
    memory: dict[str, dict[int, Any]] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    outputs = []
    for i, frame in enumerate(int(f) for f in order):
        sam._active_seg_prompt = token  # the predictor's prompt-encoder hook appends it, as in propagation
        try:
            out = sam.track_step(frame_idx=frame, is_init_cond_frame=i == 0,
                                 current_vision_feats=[f[:, i:i + 1].expand(-1, n, -1) for f in feats],
                                 current_vision_pos_embeds=[p[:, i:i + 1].expand(-1, n, -1) for p in pos],
                                 feat_sizes=sizes, point_inputs=padding_point if i == 0 else None, mask_inputs=None,
                                 output_dict=memory, num_frames=num_frames, track_in_reverse=reverse,
                                 run_mem_encoder=i + 1 < len(order))  # the last frame's memory is never read
        finally:
            sam._active_seg_prompt = None
        memory["cond_frame_outputs" if i == 0 else "non_cond_frame_outputs"][frame] = out
        outputs.append({"logits": out["pred_masks"][:, 0].float(),
                        "object_score": out["object_score_logits"].reshape(n, -1)[:, 0].float()})
    return outputs


def tracking_loss(segmenter: Any, frames: np.ndarray, masks: np.ndarray, order: Sequence[int], reverse: bool,
                  config: SamWarmupConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of prompting ``order[0]`` with a point on each object and tracking them through ``order[1:]``
    (:func:`track_clip`, the objects as one batch).

    Args:
        frames: uint8 ``(len(order), H, W, 3)``, the clip's frames in ``order``.
        masks: bool ``(n, T, H, W)``, each object's masks on every frame of the video (indexed by ``order``), or
            ``(T, H, W)`` for one object; every object must be visible on ``order[0]``.
        order: frame indices of the clip in tracking order; ``reverse``: whether that order runs backward.
    Returns:
        ``(loss, {"mask_bce", "mask_dice", "object_score_bce", "iou", "anchor_iou", "tracked_iou"})``: the loss is
        the mean over objects and frames; IoUs are hard IoUs at the masks' resolution (an empty prediction of an
        empty mask counts 1), averaged over objects.
    """
    from training.losses import sft_mask_loss
    from videoseg_o3.metrics import jaccard_video
    from videoseg_o3.segmenter.model import upsample_logits

    order = [int(i) for i in order]
    masks = np.asarray(masks)
    if masks.ndim == 3:
        masks = masks[None]
    if masks.ndim != 4:
        raise ValueError(f"Invalid masks shape {masks.shape}: expected (objects, T, H, W) or (T, H, W).")
    gt = torch.as_tensor(masks, dtype=torch.bool, device=segmenter.device)
    height, width = int(gt.shape[2]), int(gt.shape[3])
    token = point_prompts(segmenter, object_points(masks[:, order[0]]), (height, width))
    outputs = track_clip(segmenter, frames, token, order, reverse=reverse, num_frames=int(gt.shape[1]),
                         train_trunk=config.train_trunk)
    losses, ious = [], []
    parts_sum = {"mask_bce": 0.0, "mask_dice": 0.0, "object_score_bce": 0.0}
    for frame, out in zip(order, outputs):
        target = gt[:, frame]
        mask_loss, parts = sft_mask_loss(out["logits"], target, bce_weight=config.bce_weight,
                                         dice_weight=config.dice_weight)
        score_bce = torch.nn.functional.binary_cross_entropy_with_logits(
            out["object_score"], target.flatten(1).any(1).float())
        losses.append(mask_loss + score_bce)
        parts_sum["mask_bce"] += parts["mask_bce"]
        parts_sum["mask_dice"] += parts["mask_dice"]
        parts_sum["object_score_bce"] += float(score_bce.detach())
        with torch.no_grad():
            pred = upsample_logits(out["logits"].detach(), (height, width), via=segmenter.image_size) > 0
            ious.append(float(jaccard_video(pred.cpu().numpy(), target.cpu().numpy()).mean()))
    n = len(order)
    metrics = {k: v / n for k, v in parts_sum.items()}
    metrics.update(iou=float(np.mean(ious)), anchor_iou=ious[0],
                   tracked_iou=float(np.mean(ious[1:])) if n > 1 else float("nan"))
    return torch.stack(losses).mean(), metrics


@dataclass
class VideoObjects:
    """The annotated objects of one video: ``record`` reads its frames, ``masks`` is bool ``(n, T, H, W)``."""

    record: Any
    masks: np.ndarray


def video_objects(root: str | Path) -> list[VideoObjects]:
    """Every video of a split (ReVOS layout) with the masks of each object some expression refers to.

    An object is an annotation id (``anno_id``): those of multi-object expressions count too, each separately;
    videos without any are left out.
    """
    from dataclasses import replace

    from videoseg_o3.data import load_benchmark

    by_video: dict[str, tuple[Any, list[str]]] = {}
    for record in load_benchmark(Path(root), "revos"):
        _, ids = by_video.setdefault(record.video_id, (record, []))
        ids.extend(a for a in record.annotation_ids if a not in ids)
    videos = [VideoObjects(record, np.stack([replace(record, annotation_ids=[a]).load_masks() for a in ids]))
              for record, ids in by_video.values() if ids]
    if not videos:
        raise ValueError(f"Invalid warm-up data {root}: no annotated object. Generate it with videoseg-o3 synth.")
    return videos


def draw_objects(masks: np.ndarray, length: int, prompt_all: bool, rng: np.random.Generator
                 ) -> tuple[list[int], list[int], bool]:
    """A warm-up step's clip and objects: ``(object indices, frame order, reverse)``.

    The clip starts on a frame where some object is visible (:func:`clip_frames`); the objects are all those
    visible on it (``prompt_all``), or one of them drawn at random.

    Args:
        masks: bool ``(n, T, H, W)``, one video's objects.
    """
    visible_on = masks.reshape(masks.shape[0], masks.shape[1], -1).any(2)  # (n, T)
    order, reverse = clip_frames(np.flatnonzero(visible_on.any(0)), masks.shape[1], length, rng)
    objects = [int(i) for i in np.flatnonzero(visible_on[:, order[0]])]
    if not prompt_all:
        objects = [objects[int(rng.integers(len(objects)))]]
    return objects, order, reverse


@torch.no_grad()
def prompt_following(segmenter: Any, videos: Sequence[VideoObjects], limit: int = 32) -> dict[str, float]:
    """Does SAM2 segment the object its prompt points at, or whatever the frame shows?

    On up to ``limit`` frames where two or more objects are visible, each object is prompted with a point on it
    (single-frame decode, the ``[SEG]`` slot as in :func:`track_clip`) and the mask is scored against the prompted
    object's mask (``own_iou``) and against the other objects' masks (``other_iou``, mean over them). A decoder
    that ignores its prompt scores the same on both.

    Returns:
        ``{"own_iou", "other_iou", "frames"}`` (NaNs and 0 frames when no frame has two objects).
    """
    from videoseg_o3.metrics import jaccard
    from videoseg_o3.segmenter.model import upsample_logits

    own, other, frames = [], [], 0
    for video in videos:
        masks = video.masks
        counts = masks.reshape(masks.shape[0], masks.shape[1], -1).any(2).sum(0)
        for frame in np.flatnonzero(counts >= 2):
            if frames >= limit:
                break
            shown = masks[:, frame]
            gt = shown[shown.reshape(shown.shape[0], -1).any(1)]  # (k, H, W), the objects visible on the frame
            token = point_prompts(segmenter, object_points(gt), gt.shape[1:])
            out = track_clip(segmenter, video.record.load_frames([int(frame)]), token, [int(frame)], reverse=False,
                             num_frames=masks.shape[1])[0]
            pred = (upsample_logits(out["logits"], gt.shape[1:], via=segmenter.image_size) > 0).cpu().numpy()
            for i in range(len(gt)):
                own.append(jaccard(pred[i], gt[i]))
                other.append(float(np.mean([jaccard(pred[i], gt[j]) for j in range(len(gt)) if j != i])))
            frames += 1
    nan = float("nan")
    return {"own_iou": float(np.mean(own)) if own else nan, "other_iou": float(np.mean(other)) if other else nan,
            "frames": frames}


def _finite_mean(values: Sequence[float]) -> float:
    """Mean of the finite values (a single-frame clip has no tracked IoU: NaN); NaN when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


# Parts of SAM2 the warm-up trains besides the image encoder's neck (and its trunk when asked).
_WARMUP_MODULES = ("sam_prompt_encoder", "sam_mask_decoder", "memory_encoder", "memory_attention")


def warm_up(
    segmenter: Any,
    data_root: str | Path,
    config: SamWarmupConfig,
    *,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train SAM2 to segment and track the annotated objects of a split (ReVOS layout), one clip per step.

    Returns ``{"steps", "first_loss", "last_loss", "first_iou", "last_iou", "last_anchor_iou", "last_tracked_iou",
    "seconds", "prompt_following"}`` where first/last are means over the first and last ``max(1, steps // 10)``
    steps and ``prompt_following`` is :func:`prompt_following` on the split after training. Runs the model
    in eval mode (the mode propagation runs in: no dropout, inference memory stride) with gradients on, and leaves
    it in eval mode with SAM2's usual trainable set (prompt encoder + mask decoder).
    """
    from training.common import set_trainable

    videos = video_objects(data_root)
    rng = np.random.default_rng(config.seed)
    sam = segmenter.sam
    set_trainable(segmenter, False)
    for name in _WARMUP_MODULES:
        set_trainable(getattr(sam, name), True)
    set_trainable(sam.image_encoder.neck, True)
    if config.train_trunk:
        set_trainable(sam.image_encoder.trunk, True)
    for name, param in sam.named_parameters(recurse=False):  # no_mem_embed, maskmem_tpos_enc, no_obj_ptr, ...
        param.requires_grad_(True)
    for name in ("obj_ptr_proj", "obj_ptr_tpos_proj", "mask_downsample"):
        module = getattr(sam, name, None)
        if isinstance(module, torch.nn.Module):
            set_trainable(module, True)
    params = [p for p in segmenter.parameters() if p.requires_grad]
    segmenter.eval()
    t0 = time.perf_counter()

    def train(steps: int, learning_rate: float, cosine: bool, clips_per_step: int, length: int,
              offset: int) -> list[dict[str, float]]:
        """``steps`` AdamW steps, each on the mean loss of ``clips_per_step`` clips of ``length`` frames."""
        optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=config.weight_decay)
        decay = (lambda s: 0.5 * (1.0 + math.cos(math.pi * min(1.0, s / max(1, steps))))) if cosine else (lambda s: 1.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
        history: list[dict[str, float]] = []
        for step in range(steps):
            results = []
            with torch.enable_grad():
                for _ in range(clips_per_step):
                    video = videos[int(rng.integers(len(videos)))]
                    objects, order, reverse = draw_objects(video.masks, length, config.prompt_all_objects, rng)
                    results.append(tracking_loss(segmenter, video.record.load_frames(order), video.masks[objects],
                                                 order, reverse, config))
                loss = torch.stack([r[0] for r in results]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            history.append({"loss": float(loss.detach()),
                            **{key: _finite_mean([r[1][key] for r in results]) for key in results[0][1]}})
            if on_step is not None:
                on_step(offset + step + 1, history[-1])
        return history

    image_history = train(config.image_steps, config.image_learning_rate, False, config.images_per_step, 1, 0)
    image_following = prompt_following(segmenter, videos) if config.image_steps else None
    history = train(config.steps, config.learning_rate, True, 1, config.frames_per_step, config.image_steps)
    set_trainable(segmenter, False)
    set_trainable(sam.sam_prompt_encoder, True)
    set_trainable(sam.sam_mask_decoder, True)
    segmenter.eval()
    k = max(1, len(history) // 10)
    k_image = max(1, len(image_history) // 10)

    def mean(key: str, rows: list[dict[str, float]]) -> float:
        return _finite_mean([r[key] for r in rows])

    return {"steps": len(history), "first_loss": mean("loss", history[:k]), "last_loss": mean("loss", history[-k:]),
            "first_iou": mean("iou", history[:k]), "last_iou": mean("iou", history[-k:]),
            "last_anchor_iou": mean("anchor_iou", history[-k:]), "last_tracked_iou": mean("tracked_iou", history[-k:]),
            "image_steps": len(image_history),
            "image_last_loss": mean("loss", image_history[-k_image:]),
            "image_prompt_following": image_following,
            "seconds": time.perf_counter() - t0, "prompt_following": prompt_following(segmenter, videos)}


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
    parser.add_argument("--one-object", action="store_true",
                        help="Prompt one object per step instead of every visible one (the decoder then learns to "
                             "ignore its prompt; kept to show that).")
    args = parser.parse_args(argv)

    class _Start:
        init = None

    policy, segmenter, _ = load_start_models(_Start(), torch.device("cpu"))
    summary = warm_up(segmenter, args.data, SamWarmupConfig(steps=args.steps, seed=args.seed,
                                                           prompt_all_objects=not args.one_object))
    save_checkpoint(args.out, policy, segmenter, ProtocolConfig.preset("rl"), GenerationConfig(max_new_tokens=32),
                    overwrite=True)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
