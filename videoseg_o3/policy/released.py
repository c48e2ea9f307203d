"""Load the released VideoSEG-O3 checkpoints' layout into our objects.

The released Hugging Face directories (VideoSEG-O3-2B/4B-RL) hold ONE state dict for a wrapper
module with three children (names read from the public code: the HF modelling class in
``projects/sa2va/hf/models_qwen3vl/`` and its ``sam2.py``):

=====================================  ==============================================================
released name                          ours
=====================================  ==============================================================
``model.<qwen key>``                   ``SegPolicy.model`` (``Qwen3VLForConditionalGeneration``) ``<qwen key>``
``text_hidden_fcs.{0,2}.{weight,bias}``  ``SegPolicy.projector`` ``{0,2}.*`` (index 3 is a parameter-free Dropout)
``grounding_encoder.sam2_model.<k>``   ``Sam2Segmenter.sam`` ``<k>`` (sam2's own parameter names)
=====================================  ==============================================================

Qwen keys written by older transformers versions (``visual.*`` at the top, ``model.layers.*`` for
the language model, as Qwen2.5-VL checkpoints of early 2025 have) are moved to the current layout
(``model.visual.*``, ``model.language_model.*``). Everything is read with ``safetensors``; no code
from the checkpoint directory is imported or run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

QWEN_PREFIX = "model."
PROJECTOR_PREFIX = "text_hidden_fcs."
SAM2_PREFIX = "grounding_encoder.sam2_model."
_PROJECTOR_LAYERS = ("0", "2")


@dataclass
class ReleasedStateDicts:
    """A released state dict split by owner.

    Attributes:
        policy: keys of ``Qwen*VLForConditionalGeneration`` (``model.language_model...``, ``lm_head.weight``).
        projector: keys of :class:`SegProjector` (``0.weight``, ``0.bias``, ``2.weight``, ``2.bias``).
        sam2: keys of the sam2 model (``image_encoder.trunk...``, ``sam_mask_decoder...``).
        ignored: released keys that belong to none of them (reported, never silently dropped).
    """

    policy: dict[str, torch.Tensor] = field(default_factory=dict)
    projector: dict[str, torch.Tensor] = field(default_factory=dict)
    sam2: dict[str, torch.Tensor] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


def qwen_key(name: str) -> str:
    """A Qwen-VL parameter name (without the wrapper's ``model.``) in transformers' current layout."""
    if name.startswith(("model.visual.", "model.language_model.", "lm_head.")):
        return name
    if name.startswith("visual."):
        return "model." + name
    if name.startswith("model."):
        return "model.language_model." + name[len("model."):]
    if name.startswith("language_model."):
        return "model." + name
    return name


def split_released_state_dict(state: Mapping[str, torch.Tensor]) -> ReleasedStateDicts:
    """Map every released parameter name onto the policy, the projector or SAM2."""
    out = ReleasedStateDicts()
    for name, tensor in state.items():
        if name.startswith(SAM2_PREFIX):
            out.sam2[name[len(SAM2_PREFIX):]] = tensor
        elif name.startswith(PROJECTOR_PREFIX):
            rest = name[len(PROJECTOR_PREFIX):]
            if rest.split(".", 1)[0] in _PROJECTOR_LAYERS:
                out.projector[rest] = tensor
            else:
                out.ignored.append(name)
        elif name.startswith(QWEN_PREFIX):
            out.policy[qwen_key(name[len(QWEN_PREFIX):])] = tensor
        else:
            out.ignored.append(name)
    return out


def to_released_state_dict(policy_state: Mapping[str, torch.Tensor], projector_state: Mapping[str, torch.Tensor],
                           sam2_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`split_released_state_dict` (current Qwen layout): our weights under released names."""
    state = {QWEN_PREFIX + k: v for k, v in policy_state.items()}
    state.update({PROJECTOR_PREFIX + k: v for k, v in projector_state.items()})
    state.update({SAM2_PREFIX + k: v for k, v in sam2_state.items()})
    return state


def read_safetensors_dir(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of ``model.safetensors`` or of the shards listed in ``model.safetensors.index.json``."""
    from safetensors.torch import load_file

    single = path / "model.safetensors"
    index = path / "model.safetensors.index.json"
    if single.is_file():
        return load_file(str(single))
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            shard_path = path / shard
            if not shard_path.is_file():
                raise FileNotFoundError(f"Shard {shard} listed in {index} is missing.")
            state.update(load_file(str(shard_path)))
        return state
    raise FileNotFoundError(
        f"No safetensors weights in {path} (expected model.safetensors or model.safetensors.index.json; "
        "pickle .bin weights are not loaded)."
    )


def _qwen_config(record: dict[str, Any], family: str | None, vocab_rows: int) -> tuple[str, Any]:
    """Our Qwen config from the released ``config.json`` (a Qwen config extended by the wrapper)."""
    from transformers import Qwen2_5_VLConfig, Qwen3VLConfig

    text = dict(record.get("text_config") or {})
    vision = dict(record.get("vision_config") or {})
    if not text or not vision:
        raise ValueError("Invalid released config.json: it has no text_config/vision_config of a Qwen-VL model.")
    if family is None:
        model_type = str(record.get("model_type", "")) + str(vision.get("model_type", ""))
        family = "qwen3_vl" if ("qwen3" in model_type or "deepstack_visual_indexes" in vision) else "qwen2_5_vl"
    text["vocab_size"] = vocab_rows
    for sub in (text, vision):
        sub.pop("model_type", None)
    top = {k: record[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
           if k in record}
    top["tie_word_embeddings"] = bool(record.get("tie_word_embeddings", False))
    cls = Qwen3VLConfig if family == "qwen3_vl" else Qwen2_5_VLConfig
    return family, cls(text_config=text, vision_config=vision, **top)


def load_released_checkpoint(
    path: str | Path,
    *,
    family: str | None = None,
    segmenter_config: Any = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[Any, Any]:
    """Load a released VideoSEG-O3 directory into ``(SegPolicy, Sam2Segmenter)``.

    Args:
        path: the local Hugging Face directory (config.json, safetensors weights, tokenizer files).
        family: ``"qwen3_vl"`` / ``"qwen2_5_vl"``; detected from the config when None.
        segmenter_config: a ``SegmenterConfig`` describing the SAM2 inside (default:
            ``SegmenterConfig.released()``, Hiera-L at 1024 px with the released preprocessing and bf16).
        device, dtype: where and in which dtype the policy lives (default: the default device, the
            checkpoint's dtype).
    Raises:
        FileNotFoundError: the directory, its config.json or its weights are missing.
        ValueError: parameter names or shapes do not fit (the message lists them).
    """
    from transformers import AutoTokenizer

    from videoseg_o3.device import resolve_device
    from videoseg_o3.policy.configs import model_class, processor_class
    from videoseg_o3.policy.model import SegPolicy, SegProjector
    from videoseg_o3.policy.tokenizer import CHAT_TEMPLATE, SEG_TOKEN, build_processor
    from videoseg_o3.segmenter import Sam2Segmenter, SegmenterConfig
    from videoseg_o3.segmenter.build import load_sam2_weights

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"Released checkpoint directory not found: {path}")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"Not a Hugging Face model directory (missing config.json): {path}")
    parts = split_released_state_dict(read_safetensors_dir(path))
    if parts.ignored:
        shown = ", ".join(parts.ignored[:8])
        raise ValueError(f"Released checkpoint {path} has {len(parts.ignored)} parameters of no known owner: {shown}.")
    embed_key = "model.language_model.embed_tokens.weight"
    if embed_key not in parts.policy:
        raise ValueError(f"Released checkpoint {path} has no Qwen embedding table ({QWEN_PREFIX}{embed_key}).")
    if sorted(parts.projector) != ["0.bias", "0.weight", "2.bias", "2.weight"]:
        raise ValueError(f"Released checkpoint {path} has an incomplete projector: {sorted(parts.projector)}.")

    record = json.loads(config_file.read_text())
    family, qwen_config = _qwen_config(record, family, int(parts.policy[embed_key].shape[0]))
    from transformers.initialization import no_init_weights

    # Skip random initialisation (minutes for a 4B model): every parameter is overwritten below.
    # Allocate in the weights' dtype (bf16 for the releases) rather than fp32 then copy: half the memory.
    build_dtype = dtype if dtype is not None else parts.policy[embed_key].dtype
    previous_dtype = torch.get_default_dtype()
    torch.set_default_dtype(build_dtype)
    try:
        with no_init_weights():
            model = model_class(family)(qwen_config)
    finally:
        torch.set_default_dtype(previous_dtype)
    if qwen_config.tie_word_embeddings:
        parts.policy.pop("lm_head.weight", None)
    missing, unexpected = model.load_state_dict(parts.policy, strict=False)
    missing = [k for k in missing if not (qwen_config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(
            f"Released Qwen weights in {path} do not fit {model_class(family).__name__}: "
            f"missing {missing[:8]}, unexpected {unexpected[:8]}."
        )
    if qwen_config.tie_word_embeddings:
        model.tie_weights()
    model = model.to(resolve_device(device))
    if dtype is not None:
        model = model.to(dtype)

    # Load the tokenizer once (parsing Qwen's tokenizer.json takes seconds): through the processor
    # when the directory has processor files, else on its own with a processor assembled around it.
    if (path / "preprocessor_config.json").is_file() or (path / "processor_config.json").is_file():
        processor = processor_class(family).from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
        tokenizer = processor.tokenizer
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
        processor = build_processor(family, tokenizer)
    if SEG_TOKEN not in tokenizer.get_vocab():
        raise ValueError(f"The tokenizer in {path} has no {SEG_TOKEN} token; is this a VideoSEG-O3 checkpoint?")
    if not getattr(processor, "chat_template", None):
        processor.chat_template = CHAT_TEMPLATE
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHAT_TEMPLATE

    projector = SegProjector(parts.projector["0.weight"].shape[1], parts.projector["2.weight"].shape[0])
    projector.load_state_dict(parts.projector)
    policy = SegPolicy(model, processor, family, projector)
    policy.eval()

    seg_cfg = segmenter_config if segmenter_config is not None else SegmenterConfig.released()
    segmenter = Sam2Segmenter.from_config(seg_cfg, device="cpu")
    load_sam2_weights(segmenter.sam, parts.sam2, source=str(path), model_config=seg_cfg.model_config)
    return policy, segmenter.to(resolve_device(device))
