"""SAM2's video predictor with a [SEG] embedding as its prompt, chunked frames and bounded memory.

sam2 stays unedited; hydra instantiates this subclass through a ``_target_`` override (build.py). What it
changes, and why:

- **[SEG] as a sparse prompt.** A forward hook on ``sam_prompt_encoder`` appends the current object's 256-d
  embedding to the sparse prompt embeddings (after sam2's padding-point tokens), exactly as the single-frame
  path does. The embedding is chosen per (object, frame) in :meth:`_run_single_frame_inference`, the only
  method that sees the inference state, the frame and the object together.
- **bf16 memory on CPU.** sam2 stores memory features in bf16 (hard-coded). When a frame's memory holds no
  object pointer (e.g. a second object tracked before its own anchor frame), nothing promotes them back to
  fp32 and memory attention fails with "mat1 and mat2 must have the same dtype" unless bf16 autocast is on,
  which CPUs usually are not. A forward pre-hook on ``memory_attention`` casts ``memory`` and
  ``memory_pos`` to the query's dtype.
- **Frames on demand.** :meth:`_get_image_feature` reads features from a :class:`ChunkedFrameFeatures`
  stored in the state instead of sam2's all-frames ``images`` tensor (see frames.py).
- **Bounded state.** :meth:`propagate_object` prunes per-frame outputs that no later frame can attend to.
- **No object-score gating of masks.** Stock sam2 replaces the mask logits of a frame whose object-score
  logit is <= 0 by -1024 (an empty mask, and memory encoded from it). The released VideoSEG-O3 code
  comments that replacement out in every path (its [SEG] prompts never trained the object-score head), so
  :meth:`_forward_sam_heads` returns the decoder's raw masks unless ``gate_object_masks`` is set. The
  object pointer still goes through sam2's occlusion logic (``no_obj_ptr`` mixing), as in the reference.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from sam2.sam2_video_predictor import SAM2VideoPredictor

from videoseg_o3.segmenter.frames import ChunkedFrameFeatures

# Keys this module adds to sam2's inference-state dict.
FRAME_FEATURES_KEY = "frame_features"      # ChunkedFrameFeatures: image features on demand
SEG_PROMPTS_KEY = "seg_prompts"            # {obj_idx: (1, 256) tensor}: the [SEG] embedding per object
REINJECT_KEY = "reinject_seg_prompt"       # bool: also prompt non-anchor frames with [SEG]

_MEMORY_ATTENTION_ARGS = ("curr", "memory", "curr_pos", "memory_pos", "num_obj_ptr_tokens")


def _cast_memory_to_query_dtype(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Forward pre-hook (with kwargs) on ``memory_attention``: memory tensors take the query's dtype."""
    bound = dict(zip(_MEMORY_ATTENTION_ARGS, args))
    bound.update(kwargs)
    curr = bound.get("curr")
    query = curr[0] if isinstance(curr, (list, tuple)) else curr
    if not isinstance(query, torch.Tensor):
        return args, kwargs
    args = list(args)
    for name in ("memory", "memory_pos"):
        value = bound.get(name)
        if isinstance(value, torch.Tensor) and value.dtype != query.dtype:
            value = value.to(query.dtype)
            position = _MEMORY_ATTENTION_ARGS.index(name)
            if name in kwargs:
                kwargs[name] = value
            elif position < len(args):
                args[position] = value
    return tuple(args), kwargs


def init_chunked_state(predictor: SAM2VideoPredictor, frame_features: ChunkedFrameFeatures,
                       video_height: int, video_width: int) -> dict[str, Any]:
    """An inference state for sam2's video API whose frames come from ``frame_features`` on demand.

    Mirrors sam2's ``init_state`` field for field except ``images`` (never materialised) and the warm-up
    encode of frame 0 (the first prompt encodes what it needs).
    """
    device = predictor.device
    return {
        # sam2 reads the frame count from here (memory/pointer windows, propagation bounds)
        "num_frames": frame_features.num_frames,
        # no all-frames tensor: frames are prepared per chunk by FRAME_FEATURES_KEY
        "images": None,
        "offload_video_to_cpu": False,
        "offload_state_to_cpu": False,
        # the output size that sam2's own mask resizing uses
        "video_height": int(video_height),
        "video_width": int(video_width),
        "device": device,
        # per-frame outputs stay on the compute device; their number is bounded by pruning instead
        "storage_device": device,
        # prompts per object and frame
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        # sam2's single-frame feature cache (unused by our _get_image_feature, kept for compatibility)
        "cached_features": {},
        # values shared by all frames (sam2 caches maskmem_pos_enc here)
        "constants": {},
        # client object id <-> model object index
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        # per-object tracking outputs: the memory bank
        "output_dict_per_obj": {},
        # outputs of prompted frames before propagation consolidates them
        "temp_output_dict_per_obj": {},
        # which frames each object has been tracked on, and in which direction
        "frames_tracked_per_obj": {},
        FRAME_FEATURES_KEY: frame_features,
        SEG_PROMPTS_KEY: {},
        REINJECT_KEY: True,
    }


class SegPromptVideoPredictor(SAM2VideoPredictor):
    """``SAM2VideoPredictor`` prompted by [SEG] embeddings (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # The embedding the prompt-encoder hook appends during the current frame's decode (None: no [SEG]).
        self._active_seg_prompt: torch.Tensor | None = None
        # True: stock sam2's blanking of masks where the object score is <= 0; False: the released model's.
        self.gate_object_masks = False
        self.sam_prompt_encoder.register_forward_hook(self._append_seg_prompt)
        # kept so a test can remove it and watch sam2 fail without it
        self.memory_dtype_hook = self.memory_attention.register_forward_pre_hook(
            _cast_memory_to_query_dtype, with_kwargs=True
        )

    # -- hooks --------------------------------------------------------------------------------------
    def _append_seg_prompt(self, module: torch.nn.Module, args: tuple, output: tuple) -> tuple | None:
        prompt = self._active_seg_prompt
        if prompt is None:
            return None
        sparse, dense = output
        token = prompt.to(device=sparse.device, dtype=sparse.dtype).reshape(-1, 1, sparse.shape[-1])
        token = token.expand(sparse.shape[0], 1, sparse.shape[-1])
        return torch.cat([sparse, token], dim=1), dense

    def _object_index(self, inference_state: dict, output_dict: dict) -> int | None:
        for obj_idx, obj_output_dict in inference_state["output_dict_per_obj"].items():
            if obj_output_dict is output_dict:
                return obj_idx
        return None

    # -- sam2 overrides -----------------------------------------------------------------------------
    def _forward_sam_heads(self, backbone_features, point_inputs=None, mask_inputs=None, high_res_features=None,
                           multimask_output=False):
        """sam2's heads, with the mask outputs taken before the object-score gating (see module docstring).

        sam2 computes everything else (object pointer with its occlusion mixing, object score, IoU) from
        the decoder's outputs independently of the gated masks, so only the four mask outputs are rebuilt
        here from the decoder's raw logits, with sam2's own upsampling and best-IoU choice.
        """
        if self.gate_object_masks or not self.pred_obj_scores:
            return super()._forward_sam_heads(backbone_features, point_inputs, mask_inputs, high_res_features,
                                              multimask_output)
        raw: dict[str, torch.Tensor] = {}

        def keep_raw_masks(module: torch.nn.Module, args: tuple, output: tuple) -> None:
            raw["low_res_multimasks"] = output[0]

        handle = self.sam_mask_decoder.register_forward_hook(keep_raw_masks)
        try:
            (_, _, ious, _, _, obj_ptr, object_score_logits) = super()._forward_sam_heads(
                backbone_features, point_inputs, mask_inputs, high_res_features, multimask_output)
        finally:
            handle.remove()
        low_res_multimasks = raw["low_res_multimasks"].float()
        high_res_multimasks = F.interpolate(low_res_multimasks, size=(self.image_size, self.image_size),
                                            mode="bilinear", align_corners=False)
        if multimask_output:
            best = torch.argmax(ious, dim=-1)
            rows = torch.arange(low_res_multimasks.shape[0], device=low_res_multimasks.device)
            low_res_masks = low_res_multimasks[rows, best].unsqueeze(1)
            high_res_masks = high_res_multimasks[rows, best].unsqueeze(1)
        else:
            low_res_masks, high_res_masks = low_res_multimasks, high_res_multimasks
        return (low_res_multimasks, high_res_multimasks, ious, low_res_masks, high_res_masks, obj_ptr,
                object_score_logits)

    def _run_single_frame_inference(self, inference_state, output_dict, frame_idx, batch_size,
                                    is_init_cond_frame, point_inputs, mask_inputs, reverse, run_mem_encoder,
                                    prev_sam_mask_logits=None):
        prompt = None
        prompts = inference_state.get(SEG_PROMPTS_KEY)
        if prompts:
            obj_idx = self._object_index(inference_state, output_dict)
            reinject = inference_state.get(REINJECT_KEY, True)
            # the anchor is a prompted frame (point_inputs set); propagated frames get [SEG] only if reinjecting
            if obj_idx is not None and (point_inputs is not None or reinject):
                prompt = prompts.get(obj_idx)
        self._active_seg_prompt = prompt
        try:
            return super()._run_single_frame_inference(
                inference_state, output_dict, frame_idx, batch_size, is_init_cond_frame, point_inputs,
                mask_inputs, reverse, run_mem_encoder, prev_sam_mask_logits,
            )
        finally:
            self._active_seg_prompt = None

    def _get_image_feature(self, inference_state, frame_idx, batch_size):
        frame_features: ChunkedFrameFeatures | None = inference_state.get(FRAME_FEATURES_KEY)
        if frame_features is None:  # a state from sam2's own init_state
            return super()._get_image_feature(inference_state, frame_idx, batch_size)
        backbone_out = frame_features.backbone_out(frame_idx)
        expanded = {
            "backbone_fpn": [f.expand(batch_size, -1, -1, -1) for f in backbone_out["backbone_fpn"]],
            "vision_pos_enc": [p.expand(batch_size, -1, -1, -1) for p in backbone_out["vision_pos_enc"]],
        }
        # sam2 returns the prepared image first; no caller uses it and we do not keep pixels
        return (None,) + self._prepare_backbone_features(expanded)

    # -- propagation --------------------------------------------------------------------------------
    def memory_reach(self) -> int:
        """How many frames back (in the direction of travel) a frame's memory attention can look: spatial
        memories up to ``(num_maskmem - 1) * stride + 1`` frames, object pointers up to
        ``max_obj_ptrs_in_encoder - 1``."""
        stride = self.memory_temporal_stride_for_eval
        reach = (self.num_maskmem - 1) * stride + 1
        if self.use_obj_ptrs_in_encoder:
            reach = max(reach, self.max_obj_ptrs_in_encoder - 1)
        return reach

    @torch.inference_mode()
    def propagate_object(self, inference_state: dict, start_frame_idx: int, *, reverse: bool,
                         keep_near: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """Track object 0 from ``start_frame_idx`` to the last frame (or to frame 0 when ``reverse``).

        Yields ``(frame_idx, low_res_logits (1, 1, S/4, S/4) float32)``. This mirrors sam2's
        ``propagate_in_video`` for a single object, with two differences that the library cannot be asked
        for: no tqdm bar of its own (the caller reports progress), and outputs that no later frame can
        attend to are dropped as it goes, so the state stays bounded on long videos. ``keep_near`` is a
        frame whose neighbourhood must survive for a later pass (the anchor, before the backward pass).
        """
        self.propagate_in_video_preflight(inference_state)
        obj_output_dict = inference_state["output_dict_per_obj"][0]
        tracked = inference_state["frames_tracked_per_obj"][0]
        num_frames = inference_state["num_frames"]
        frame_features = inference_state.get(FRAME_FEATURES_KEY)
        if frame_features is not None:
            frame_features.direction = -1 if reverse else 1
        order = range(start_frame_idx, -1, -1) if reverse else range(start_frame_idx, num_frames)
        reach = self.memory_reach()
        for frame_idx in order:
            if frame_idx in obj_output_dict["cond_frame_outputs"]:
                pred_masks = obj_output_dict["cond_frame_outputs"][frame_idx]["pred_masks"]
            else:
                current_out, pred_masks = self._run_single_frame_inference(
                    inference_state=inference_state, output_dict=obj_output_dict, frame_idx=frame_idx,
                    batch_size=1, is_init_cond_frame=False, point_inputs=None, mask_inputs=None,
                    reverse=reverse, run_mem_encoder=True,
                )
                obj_output_dict["non_cond_frame_outputs"][frame_idx] = current_out
            tracked[frame_idx] = {"reverse": reverse}
            self._prune_outputs(obj_output_dict, frame_idx, reverse, reach, keep_near)
            yield frame_idx, pred_masks

    @staticmethod
    def _prune_outputs(obj_output_dict: dict, frame_idx: int, reverse: bool, reach: int,
                       keep_near: int | None) -> None:
        """Drop non-conditioning outputs farther than ``reach`` behind ``frame_idx`` (they can no longer be
        attended to on this pass) unless they are within ``reach`` of ``keep_near``."""
        outputs = obj_output_dict["non_cond_frame_outputs"]
        stale = [
            t for t in outputs
            if (t > frame_idx + reach if reverse else t < frame_idx - reach)
            and not (keep_near is not None and abs(t - keep_near) <= reach)
        ]
        for t in stale:
            del outputs[t]
