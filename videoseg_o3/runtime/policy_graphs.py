"""The policy on exported graphs, with the interface the agent uses.

:class:`GraphPolicy` stands in for :class:`videoseg_o3.policy.SegPolicy`: the agent's ``DialogueContext``
calls ``policy.model.model.get_rope_index`` (M-RoPE positions of the whole dialogue — plain Python, no
weights), ``policy.model.model.get_image_features`` (the vision-encoder graph, one image per call),
``policy.model.model(...)`` with a transformers ``DynamicCache`` (the language-model graph: the cache's
tensors go in as ``past_*`` inputs and the chunk's new keys/values are appended from the ``present_*``
outputs, so forks, copies and lengths behave as with PyTorch) and ``policy.model.lm_head`` on the last
hidden state (the graph already returned those logits). The processor, tokenizer, projector and
config come from the checkpoint's policy directory; the language model's weights are never loaded
into PyTorch.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

# Qwen3-VL resamples its learned square position table bilinearly with align_corners=True
# (transformers' Qwen3VLVisionModel: interpolation_mode, interpolation_align_corners).
VISION_INTERPOLATION = ("bilinear", True)


def vision_inputs(visual_or_config: Any, grid_thw: torch.Tensor) -> dict[str, torch.Tensor]:
    """Grid-dependent inputs of the vision-encoder graph for ONE image ``grid_thw (1, 3)``.

    Returns ``interp_indices (N, 4) int64``, ``interp_weights (N, 4) float32`` (position-table resampling)
    and ``rotary_pos_ids (N, 2) int64``, computed with transformers' own helpers.
    """
    from transformers.vision_utils import get_vision_interpolation_indices_and_weights, get_vision_position_ids

    config = getattr(visual_or_config, "config", visual_or_config)
    mode, align = getattr(visual_or_config, "interpolation_mode", VISION_INTERPOLATION[0]), getattr(
        visual_or_config, "interpolation_align_corners", VISION_INTERPOLATION[1])
    merge = int(config.spatial_merge_size)
    grid_thw = grid_thw.reshape(1, 3).long().cpu()
    indices, weights = get_vision_interpolation_indices_and_weights(
        grid_thw, num_grid_per_side=int(config.num_position_embeddings ** 0.5), mode=mode, align_corners=align,
        spatial_merge_size=merge)
    return {"interp_indices": indices.long(), "interp_weights": weights.float(),
            "rotary_pos_ids": get_vision_position_ids(grid_thw, merge).long()}


class _GraphLanguageModel:
    """``policy.model.model``: rope indexing, image features and the cached forward on graphs."""

    def __init__(self, config: Any, graphs: dict[str, Any], device: torch.device) -> None:
        from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLModel

        self.config = config
        self.device = device
        self.vision = graphs["vision_encoder"]
        self.lm = graphs["language_model"]
        self.rope_deltas: torch.Tensor | None = None  # the agent sets it, as on the transformers model
        self.last_logits: torch.Tensor | None = None
        self.last_hidden: torch.Tensor | None = None
        self.num_layers = int(config.text_config.num_hidden_layers)
        text = config.text_config
        self.kv_shape = (1, int(text.num_key_value_heads), 0,
                         int(getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads))
        self.num_deepstack = len(getattr(config.vision_config, "deepstack_visual_indexes", []) or [])
        # get_rope_index reads only self.config and self.get_vision_position_ids: bind transformers' code
        # to a weightless holder rather than re-implementing Qwen's position rules.
        holder = SimpleNamespace(config=config)
        holder.get_vision_position_ids = Qwen3VLModel.get_vision_position_ids.__get__(holder)
        self._rope_index = Qwen3VLModel.get_rope_index.__get__(holder)
        self.merge_unit = int(config.vision_config.spatial_merge_size) ** 2

    def get_rope_index(self, input_ids, mm_token_type_ids=None, image_grid_thw=None, **kwargs):
        return self._rope_index(input_ids, mm_token_type_ids=mm_token_type_ids, image_grid_thw=image_grid_thw, **kwargs)

    def get_image_features(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor, **kwargs: Any) -> Any:
        """Per image: the vision graph; returns what transformers returns (``pooler_output`` and
        ``deepstack_features`` as per-image tuples)."""
        embeds, deepstack = [], []
        start = 0
        for grid in image_grid_thw.reshape(-1, 3):
            count = int(grid.prod())
            inputs = vision_inputs(self.config.vision_config, grid)
            image, stack = self.vision(pixel_values=pixel_values[start:start + count].float(), **inputs)
            start += count
            embeds.append(image)
            deepstack.append(stack)
        deepstack_features = [tuple(stack[k] for stack in deepstack) for k in range(self.num_deepstack)]
        return SimpleNamespace(pooler_output=tuple(embeds), deepstack_features=deepstack_features)

    def __call__(self, input_ids: torch.Tensor, position_ids: torch.Tensor, cache: Any, use_cache: bool = True,
                 image_grid_thw: Any = None, mm_token_type_ids: Any = None, mm_encoder_outputs: Any = None,
                 **kwargs: Any) -> Any:
        if position_ids is None:
            raise ValueError("Invalid call: the exported language model needs position_ids (3, 1, L) computed on the "
                             "whole dialogue; DialogueContext passes them.")
        hidden_size = int(self.config.text_config.hidden_size)
        image = (mm_encoder_outputs or {}).get("image")
        if image is not None:
            image_embeds = torch.cat(list(image.pooler_output))
            deepstack = torch.stack([torch.cat(list(level)) for level in image.deepstack_features]) \
                if self.num_deepstack else torch.zeros(0, image_embeds.shape[0], hidden_size)
        else:
            image_embeds = torch.zeros(0, hidden_size)
            deepstack = torch.zeros(self.num_deepstack, 0, hidden_size)
        feed = {"input_ids": input_ids.long(), "position_ids": position_ids.long(), "image_embeds": image_embeds,
                "deepstack_embeds": deepstack}
        past_len = cache.get_seq_length() if cache is not None else 0
        for i in range(self.num_layers):
            if past_len:
                layer = cache.layers[i]
                feed[f"past_key_{i}"], feed[f"past_value_{i}"] = layer.keys, layer.values
            else:
                feed[f"past_key_{i}"] = feed[f"past_value_{i}"] = torch.zeros(self.kv_shape)
        logits, hidden, _seg, *present = self.lm(**feed)
        if cache is not None:
            for i in range(self.num_layers):
                key, value = present[2 * i], present[2 * i + 1]
                cache.update(key[:, :, past_len:], value[:, :, past_len:], i)
        self.last_logits, self.last_hidden = logits, hidden[:, -1]
        return SimpleNamespace(last_hidden_state=hidden)


class _LogitsFromGraph:
    """``policy.model.lm_head``: the language-model graph computes the last position's logits itself; this
    returns them for the hidden state the agent passes (which must be that last position)."""

    def __init__(self, inner: _GraphLanguageModel) -> None:
        self.inner = inner

    def __call__(self, hidden_last: torch.Tensor) -> torch.Tensor:
        last = self.inner.last_hidden
        if last is None or hidden_last.shape[0] != 1 or not torch.equal(hidden_last.reshape(-1), last.reshape(-1)):
            raise ValueError("Invalid lm_head call: the exported language model returns logits for the last position "
                             "of its latest forward only.")
        return self.inner.last_logits


class GraphPolicy:
    """A :class:`~videoseg_o3.policy.SegPolicy` look-alike whose vision encoder and language model are graphs.

    Attributes used by the agent: ``model`` (``.model``, ``.lm_head``, ``.config``, ``.generation_config``),
    ``processor``, ``tokenizer``, ``projector``, ``seg_token_id``, ``device``, ``dtype``, ``hidden_size``,
    ``vision_factor``, ``family``.
    """

    def __init__(self, config: Any, processor: Any, projector: torch.nn.Module, graphs: dict[str, Any],
                 device: torch.device, generation_config: Any = None) -> None:
        from videoseg_o3.policy.tokenizer import add_seg

        self.family = "qwen3_vl"
        self.processor = processor
        self.seg_token_id = add_seg(processor.tokenizer)
        inner = _GraphLanguageModel(config, graphs, device)
        self.model = SimpleNamespace(model=inner, lm_head=_LogitsFromGraph(inner), config=config,
                                     generation_config=generation_config)
        self.projector = projector.to(device).eval()
        self._device = device

    @classmethod
    def from_pretrained(cls, path: str | Path, graphs: dict[str, Any], *, device: torch.device) -> "GraphPolicy":
        """Config, processor and projector from a policy directory written by ``SegPolicy.save_pretrained``."""
        from safetensors.torch import load_file
        from transformers import GenerationConfig, Qwen3VLConfig

        from videoseg_o3.policy.configs import MODEL_TYPE_TO_FAMILY, processor_class
        from videoseg_o3.policy.model import PROJECTOR_FILE, SegProjector

        path = Path(path)
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
        if MODEL_TYPE_TO_FAMILY.get(model_type) != "qwen3_vl":
            raise ValueError(f"Invalid model_type ({model_type}) for the exported backends. Supported values are qwen3_vl.")
        config = Qwen3VLConfig.from_pretrained(str(path), local_files_only=True)
        processor = processor_class("qwen3_vl").from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
        state = load_file(str(path / PROJECTOR_FILE))
        projector = SegProjector(state["0.weight"].shape[1], state["2.weight"].shape[0])
        projector.load_state_dict(state)
        generation_config = None
        if (path / "generation_config.json").is_file():
            generation_config = GenerationConfig.from_pretrained(str(path), local_files_only=True)
        return cls(config, processor, projector, graphs, device, generation_config)

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.text_config.hidden_size)

    @property
    def vision_factor(self) -> int:
        vision = self.model.config.vision_config
        return int(vision.patch_size) * int(vision.spatial_merge_size)

    def eval(self) -> "GraphPolicy":
        return self
