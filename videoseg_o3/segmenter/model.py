"""SAM2 prompted by the policy's [SEG] embedding: single-frame decoding and video propagation.

Two paths share one set of SAM2 weights (docs/architecture.md#the-model):

- **Single frame, no memory** (:meth:`Sam2Segmenter.decode_frames`, used in training and RL): image
  features + ``no_mem_embed`` (as sam2's image predictor does), the prompt encoder run with one padding
  point of label -1 (sparse = that point and sam2's own pad; dense = the no-mask embedding), the
  ``(n, 1, 256)`` [SEG] vector appended to the sparse embeddings, the mask decoder with multimask output
  and high-resolution features, and the mask with the best predicted IoU kept. Differentiable through the
  [SEG] embeddings, the prompt encoder and the mask decoder; the image encoder is frozen and runs without
  gradients, and :meth:`Sam2Segmenter.encode_frames` lets a caller encode a frame once and decode several
  [SEG]s on it.
- **Video** (:meth:`Sam2Segmenter.propagate`): the embedding conditions the anchor frame, SAM2's memory
  carries it forward to the last frame and backward to the first, and the embedding is re-injected as a
  sparse prompt on every propagated frame. Logits are upsampled to the video's size and thresholded at 0.

Both paths follow the released VideoSEG-O3 inference: masks are never blanked by SAM2's object-score head
(stock sam2 replaces the logits of a frame whose object score is <= 0 by -1024; the released model was
never trained to score [SEG] prompts, so its code removes that replacement and so does ours, while
sam2's object-pointer logic is kept), and low-resolution logits reach the output size in two bilinear
steps, ``S/4 -> S -> H x W`` (see :func:`upsample_logits`).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from videoseg_o3.device import resolve_device
from videoseg_o3.segmenter.build import build_sam2_model, load_sam2_weights
from videoseg_o3.segmenter.config import SegmenterConfig
from videoseg_o3.segmenter.frames import (
    ChunkedFrameFeatures,
    VideoSource,
    as_video_source,
    check_uint8_frames,
    prepare_frames_reference,
)
from videoseg_o3.segmenter.predictor import (
    FRAME_FEATURES_KEY,
    REINJECT_KEY,
    SEG_PROMPTS_KEY,
    SegPromptVideoPredictor,
    init_chunked_state,
)

CONFIG_FILE = "segmenter.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1
SEG_EMBED_DIM = 256
# sam2's placeholder logit for frames where the object-score head says "no object"
NO_OBJECT_LOGIT = -1024.0
# ImageNet statistics in 0..1 units; sam2 normalises its input frames with them
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ProgressFn = Callable[[int, int], None]


def upsample_logits(logits: torch.Tensor, size: tuple[int, int], *, via: int | None = None) -> torch.Tensor:
    """Bilinear (align_corners=False, sam2's choice) resize of ``(n, h, w)`` logits to ``(n, H, W)`` float32.

    With ``via`` (SAM2's square input size S) the resize goes through ``(S, S)`` first, as the released
    VideoSEG-O3 inference does (sam2's video predictor returns logits at its state's video size, which
    the released code sets to 1024, and the result is then resized to the frame size): two bilinear steps
    do not equal one, and masks differ along their edges.
    """
    out = logits[:, None].float()
    if via is not None:
        out = F.interpolate(out, size=(int(via), int(via)), mode="bilinear", align_corners=False)
    return F.interpolate(out, size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


@dataclass
class FrameFeatures:
    """Frozen image-encoder outputs for ``n`` frames of one size, ready for :meth:`Sam2Segmenter.decode_features`.

    Attributes:
        image_embed: ``(n, 256, S/16, S/16)`` float, lowest-resolution features with ``no_mem_embed`` added.
        high_res: the two higher-resolution FPN levels, ``(n, 256, S/4, S/4)`` and ``(n, 256, S/8, S/8)``,
            *before* the mask decoder's own 1x1 projections (those are trained, so they run in the decode);
            empty when the SAM2 config does not use high-resolution features.
        frame_size: ``(H, W)`` of the original frames in pixels (masks are upsampled to it).
    """

    image_embed: torch.Tensor
    high_res: list[torch.Tensor]
    frame_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.image_embed.shape[0])


@dataclass
class SegmenterOutput:
    """Single-frame decode of ``n`` [SEG] embeddings.

    Attributes:
        low_res_logits: ``(n, S/4, S/4)`` float32 mask logits of the best-IoU mask, differentiable and not
            gated by the object score (gradients always flow).
        iou: ``(n,)`` predicted IoU of that mask.
        object_score_logits: ``(n,)`` the object-presence logit (> 0: an object is there).
        frame_size: ``(H, W)`` of the input frames.
        image_size: SAM2's square input size S; logits are upsampled through ``(S, S)`` (None: one step).
    """

    low_res_logits: torch.Tensor
    iou: torch.Tensor
    object_score_logits: torch.Tensor
    frame_size: tuple[int, int]
    image_size: int | None = None

    def logits(self, size: tuple[int, int] | None = None, *, gate_objects: bool = False) -> torch.Tensor:
        """``(n, H, W)`` float32 logits at ``size`` (default: the frames' size), upsampled in two steps
        through ``image_size`` as the released inference does.

        ``gate_objects=False`` (default) is the released model's behaviour: the object-score head is ignored.
        ``gate_objects=True`` is stock sam2's: a frame whose object score is <= 0 reads ``NO_OBJECT_LOGIT``.
        """
        low = self.low_res_logits
        if gate_objects:
            present = (self.object_score_logits > 0)[:, None, None]
            low = torch.where(present, low, torch.full_like(low, NO_OBJECT_LOGIT))
        return upsample_logits(low, size or self.frame_size, via=self.image_size)

    def masks(self, size: tuple[int, int] | None = None, *, gate_objects: bool = False) -> torch.Tensor:
        """``(n, H, W)`` bool masks: logits > 0 (see :meth:`logits` for ``gate_objects``)."""
        return self.logits(size, gate_objects=gate_objects) > 0


class Sam2Segmenter(torch.nn.Module):
    """SAM2 with [SEG]-embedding prompts. Build with :meth:`from_config` or :meth:`from_pretrained`.

    Trainable: ``sam.sam_prompt_encoder`` and ``sam.sam_mask_decoder``. Frozen (``requires_grad=False``):
    the image encoder and the memory modules (docs/architecture.md#the-model).

    Attributes:
        config: the :class:`SegmenterConfig` it was built from.
        sam: the sam2 model (a ``SAM2VideoPredictor`` subclass); parameter names are sam2's own.
    """

    def __init__(self, config: SegmenterConfig, sam: SegPromptVideoPredictor) -> None:
        super().__init__()
        self.config = config
        self.sam = sam
        sam.gate_object_masks = config.gate_objects
        sam.requires_grad_(False)
        sam.sam_prompt_encoder.requires_grad_(True)
        sam.sam_mask_decoder.requires_grad_(True)
        self.eval()

    def train(self, mode: bool = True) -> "Sam2Segmenter":
        """Set training mode on the trained parts only: the frozen image encoder and memory modules stay
        in eval mode (memory attention has dropout), whatever the trainer asks."""
        super().train(mode)
        for frozen in (self.sam.image_encoder, self.sam.memory_attention, self.sam.memory_encoder):
            frozen.eval()
        return self

    # -- construction and checkpoints ---------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: SegmenterConfig, *, device: str | torch.device | None = None) -> "Sam2Segmenter":
        """Build SAM2 from sam2's hydra config ``cfg.model_config`` with random weights or ``cfg.checkpoint``.

        Raises:
            FileNotFoundError: the checkpoint file does not exist.
            ValueError: the checkpoint does not fit the config (the message lists the mismatching names).
        """
        if not isinstance(cfg, SegmenterConfig):
            raise ValueError(f"Invalid cfg ({type(cfg).__name__}). Expected a SegmenterConfig.")
        return cls(cfg, build_sam2_model(cfg, resolve_device(device)))

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, device: str | torch.device | None = None) -> "Sam2Segmenter":
        """Load a directory written by :meth:`save_pretrained` (``segmenter.json`` + ``model.safetensors``)."""
        directory = Path(path)
        if not directory.is_dir():
            raise FileNotFoundError(f"Segmenter directory not found: {directory}. Expected a folder written by "
                                    f"Sam2Segmenter.save_pretrained with {CONFIG_FILE} and {WEIGHTS_FILE}.")
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"Segmenter directory {directory} has no {name}; it needs {CONFIG_FILE} "
                                        f"and {WEIGHTS_FILE} (written by Sam2Segmenter.save_pretrained).")
        try:
            record = json.loads((directory / CONFIG_FILE).read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"Invalid {directory / CONFIG_FILE}: not JSON ({err}).") from err
        if not isinstance(record, dict):
            raise ValueError(f"Invalid {directory / CONFIG_FILE}: expected a JSON object.")
        version = record.pop("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ValueError(f"Invalid format_version ({version}) in {directory / CONFIG_FILE}. "
                             f"Supported values are {FORMAT_VERSION}.")
        cfg = SegmenterConfig.from_dict({**record, "checkpoint": None})  # the weights are in this directory
        segmenter = cls.from_config(cfg, device="cpu")
        from safetensors.torch import load_file

        weights_path = str(directory / WEIGHTS_FILE)
        load_sam2_weights(segmenter.sam, load_file(weights_path, device="cpu"), source=weights_path,
                          model_config=cfg.model_config)
        return segmenter.to(resolve_device(device))

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write ``segmenter.json`` (the config, ``checkpoint`` cleared) and ``model.safetensors`` (sam2-named
        weights) into ``path``; each file is written to a temporary name and renamed, so a crash never
        leaves a half-written checkpoint."""
        from safetensors.torch import save_file

        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        record = {"format_version": FORMAT_VERSION, **self.config.to_dict(), "checkpoint": None}
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.sam.state_dict().items()}
        with _atomic_path(directory / WEIGHTS_FILE) as tmp:
            save_file(state, tmp, metadata={"format": "pt", "model_config": self.config.model_config})
        with _atomic_path(directory / CONFIG_FILE) as tmp:
            Path(tmp).write_text(json.dumps(record, indent=2) + "\n")

    # -- small helpers ------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the SAM2 weights live (inputs are moved here)."""
        return self.sam.no_mem_embed.device

    @property
    def image_size(self) -> int:
        return self.config.image_size

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.config.autocast_bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def prepare_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``(n, H, W, 3)`` -> ``(n, 3, S, S)`` on the model's device: resized to SAM2's square input
        (aspect ratio not kept, like the released model) and ImageNet-normalised.

        ``config.preprocessing == "fast"``: the project's fused frame preparation (antialiased bilinear,
        on the frames' device), float32. ``"reference"``: the released code's steps (PIL's default bicubic
        resize of the uint8 frame on the CPU, then scale and normalise), in bf16 when ``autocast_bf16``
        is set, as the released model feeds SAM2 (see :func:`prepare_frames_reference`).
        """
        if self.config.preprocessing == "reference":
            dtype = torch.bfloat16 if self.config.autocast_bf16 else torch.float32
            return prepare_frames_reference(frames, self.image_size, IMAGENET_MEAN, IMAGENET_STD).to(
                device=self.device, dtype=dtype)
        from videoseg_o3.ops.frame_prep import prepare_frames

        frames = frames.to(self.device)
        return prepare_frames(frames, None, self.image_size, IMAGENET_MEAN, IMAGENET_STD)

    def _encode_backbone(self, frames: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """sam2 ``forward_image`` on prepared frames (used by propagation; includes the decoder's projections)."""
        with self._autocast():
            out = self.sam.forward_image(self.prepare_frames(frames))
        # The sine position encodings depend only on the feature-map size, yet sam2 repeats them per frame
        # (84 MiB per frame at 1024 px, five times the features themselves): keep a single copy.
        return {"backbone_fpn": out["backbone_fpn"], "vision_pos_enc": [p[:1].clone() for p in out["vision_pos_enc"]]}

    # -- single frame -------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_frames(self, frames: torch.Tensor | np.ndarray) -> FrameFeatures:
        """Run the frozen image encoder on uint8 ``(n, H, W, 3)`` frames, ``encode_chunk_size`` at a time.

        Returns :class:`FrameFeatures` on the model's device (no autograd graph).
        """
        frames = check_uint8_frames(frames, "frames")
        n, height, width = int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2])
        if n == 0:
            raise ValueError("Invalid frames (0 frames). Pass at least one frame.")
        sam = self.sam
        levels = sam.num_feature_levels
        embeds: list[torch.Tensor] = []
        high_res: list[list[torch.Tensor]] = [[] for _ in range(levels - 1)]
        step = self.config.encode_chunk_size
        for start in range(0, n, step):
            with self._autocast():
                # image_encoder rather than forward_image: forward_image also applies the mask decoder's
                # conv_s0/conv_s1, which are trained and must stay in the differentiable decode
                fpn = sam.image_encoder(self.prepare_frames(frames[start:start + step]))["backbone_fpn"]
            fpn = [f.float() for f in fpn[-levels:]]
            embed = fpn[-1]
            if sam.directly_add_no_mem_embed:  # a single frame has no memory: as sam2's image predictor
                embed = embed + sam.no_mem_embed.view(1, -1, 1, 1)
            embeds.append(embed)
            for level, feature in enumerate(fpn[:-1]):
                high_res[level].append(feature)
        return FrameFeatures(
            image_embed=torch.cat(embeds),
            high_res=[torch.cat(level) for level in high_res],
            frame_size=(height, width),
        )

    def decode_features(self, features: FrameFeatures, seg_embeddings: torch.Tensor,
                        frame_index: torch.Tensor | None = None) -> SegmenterOutput:
        """Decode ``m`` [SEG] embeddings ``(m, 256)`` on encoded frames.

        Args:
            features: from :meth:`encode_frames`.
            seg_embeddings: ``(m, 256)`` float, from the policy's projector; gradients flow back into it.
            frame_index: ``(m,)`` int, which frame of ``features`` each embedding is decoded on. Default:
                embedding i on frame i (then ``m`` must equal the number of frames).
        """
        n = len(features)
        if (not isinstance(seg_embeddings, torch.Tensor) or seg_embeddings.ndim != 2
                or seg_embeddings.shape[1] != SEG_EMBED_DIM):
            raise ValueError(f"Invalid seg_embeddings ({_describe(seg_embeddings)}). Expected a float tensor of "
                             f"shape (m, {SEG_EMBED_DIM}).")
        m = int(seg_embeddings.shape[0])
        device = features.image_embed.device
        if frame_index is None:
            if m != n:
                raise ValueError(f"Invalid seg_embeddings ({m} embeddings for {n} frames). Pass one embedding per "
                                 "frame, or frame_index saying which frame each embedding is decoded on.")
            frame_index = torch.arange(n, device=device)
        else:
            frame_index = torch.as_tensor(frame_index, device=device, dtype=torch.long).reshape(-1)
            if frame_index.shape[0] != m or (m and (int(frame_index.min()) < 0 or int(frame_index.max()) >= n)):
                raise ValueError(f"Invalid frame_index ({frame_index.tolist()}). Expected {m} indices in 0..{n - 1}.")
        if m == 0:
            raise ValueError(f"Invalid seg_embeddings (0 embeddings). Pass at least one ({SEG_EMBED_DIM}-d) embedding.")
        sam = self.sam
        with self._autocast():
            image_embed = features.image_embed[frame_index]
            high_res = None
            if sam.use_high_res_features_in_sam:
                decoder = sam.sam_mask_decoder
                high_res = [decoder.conv_s0(features.high_res[0][frame_index]),
                            decoder.conv_s1(features.high_res[1][frame_index])]
            # one padding point per item: points=None would make the prompt encoder assume batch 1
            coords = torch.zeros(m, 1, 2, device=device)
            labels = -torch.ones(m, 1, dtype=torch.int32, device=device)
            sparse, dense = sam.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
            seg = seg_embeddings.to(device=device, dtype=sparse.dtype)[:, None, :]
            sparse = torch.cat([sparse, seg], dim=1)
            multi_logits, multi_iou, _, object_score_logits = sam.sam_mask_decoder(
                image_embeddings=image_embed,
                image_pe=sam.sam_prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=True,
                repeat_image=False,
                high_res_features=high_res,
            )
        best = multi_iou.argmax(dim=-1)
        rows = torch.arange(m, device=device)
        return SegmenterOutput(
            low_res_logits=multi_logits[rows, best].float(),
            iou=multi_iou[rows, best].float(),
            object_score_logits=object_score_logits.reshape(m, -1)[:, 0].float(),
            frame_size=features.frame_size,
            image_size=self.image_size,
        )

    def decode_frames(self, frames: torch.Tensor | np.ndarray, seg_embeddings: torch.Tensor) -> SegmenterOutput:
        """Single-frame decode without memory: embedding i ``(n, 256)`` on frame i of uint8 ``(n, H, W, 3)``.

        Differentiable through ``seg_embeddings``, the prompt encoder and the mask decoder; the image
        encoder runs without gradients. Equal to ``decode_features(encode_frames(frames), seg_embeddings)``.
        """
        return self.decode_features(self.encode_frames(frames), seg_embeddings)

    # -- video --------------------------------------------------------------------------------------
    def new_video_state(self, video: VideoSource | torch.Tensor | np.ndarray) -> dict:
        """A sam2 inference state for ``video`` whose frames are prepared and encoded on demand, one
        ``encode_chunk_size`` chunk at a time (for callers that drive sam2's video API themselves)."""
        source = as_video_source(video)
        frame_features = ChunkedFrameFeatures(source, self._encode_backbone, self.config.encode_chunk_size)
        return init_chunked_state(self.sam, frame_features, source.height, source.width)

    @torch.inference_mode()
    def propagate(self, video: VideoSource | torch.Tensor | np.ndarray, seg_embedding: torch.Tensor, anchor: int, *,
                  progress: ProgressFn | None = None, reinject_prompt: bool = True) -> torch.Tensor:
        """Masks for every frame of ``video`` from one [SEG] embedding.

        The anchor frame is decoded with the embedding as its prompt and becomes SAM2's conditioning frame;
        SAM2's memory then tracks forward to the last frame and backward to the first, and (with
        ``reinject_prompt``, the reference behaviour) every propagated frame is prompted with the embedding
        too. Frames are read, prepared and encoded ``encode_chunk_size`` at a time, each once.

        Args:
            video: a ``videoseg_o3.io`` reader (or anything with ``num_frames``, ``height``, ``width``,
                ``get_frames``) or a uint8 ``(T, H, W, 3)`` tensor/array.
            seg_embedding: ``(256,)`` (or ``(1, 256)``) float.
            anchor: 0-based index of the conditioning frame.
            progress: called as ``progress(frames_done, T)`` after each frame.
            reinject_prompt: prompt every propagated frame with the embedding (False: memory only).

        Returns:
            ``(T, H, W)`` bool masks on the CPU at the video's size (logits upsampled, threshold 0).
        """
        source = as_video_source(video)
        num_frames, height, width = int(source.num_frames), int(source.height), int(source.width)
        if not isinstance(seg_embedding, torch.Tensor) or seg_embedding.numel() != SEG_EMBED_DIM:
            raise ValueError(f"Invalid seg_embedding ({_describe(seg_embedding)}). Expected a float tensor of "
                             f"shape ({SEG_EMBED_DIM},).")
        if isinstance(anchor, bool) or not isinstance(anchor, (int, np.integer)) or not 0 <= anchor < num_frames:
            raise ValueError(f"Invalid anchor ({anchor}). Expected a frame index in 0..{num_frames - 1}.")
        anchor = int(anchor)
        masks = torch.zeros(num_frames, height, width, dtype=torch.bool)
        state = self.new_video_state(source)
        try:
            self._propagate_state(state, seg_embedding, anchor, masks, progress, reinject_prompt)
        finally:
            state[FRAME_FEATURES_KEY].release()
        return masks

    def _propagate_state(self, state: dict, seg_embedding: torch.Tensor, anchor: int, masks: torch.Tensor,
                         progress: ProgressFn | None, reinject_prompt: bool) -> None:
        num_frames, height, width = masks.shape
        with _eval_mode(self.sam), self._autocast():
            state[SEG_PROMPTS_KEY][0] = seg_embedding.detach().reshape(1, SEG_EMBED_DIM).float().to(self.device)
            state[REINJECT_KEY] = bool(reinject_prompt)
            # an anchor needs *some* prompt for sam2 to accept it: one padding point (label -1) adds nothing
            self.sam.add_new_points_or_box(state, frame_idx=anchor, obj_id=0, points=[[0.0, 0.0]], labels=[-1])
            done = 0
            passes = [(False, anchor)] + ([(True, anchor - 1)] if anchor > 0 else [])
            for reverse, start in passes:
                keep_near = None if reverse else anchor  # the backward pass starts next to the anchor
                for frame_idx, low_res in self.sam.propagate_object(state, start, reverse=reverse, keep_near=keep_near):
                    logits = upsample_logits(low_res[:, 0], (height, width), via=self.image_size)
                    masks[frame_idx] = (logits[0] > 0).cpu()
                    done += 1
                    if progress is not None:
                        progress(done, num_frames)


def _describe(value: object) -> object:
    """What an error message shows for a bad tensor argument: its shape, or its type if not a tensor."""
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Propagation is inference: dropout off (memory attention has some) whatever the caller's mode."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


@contextlib.contextmanager
def _atomic_path(final: Path) -> Iterator[str]:
    """Yield a temporary path beside ``final``; rename it over ``final`` only if the block succeeds."""
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
