"""Model families and the tiny configurations built in code.

The tiny models keep Qwen's real vocabulary and token ids (so prompts tokenise exactly as with a
released checkpoint) but shrink everything else: 2 decoder layers of width 64, a 2-block vision
tower of width 32. They are random-init and only for tests, ``init-tiny`` and the embedded default;
their forward pass on a few hundred tokens takes milliseconds on a CPU.
"""

from __future__ import annotations

from typing import Any

from videoseg_o3.policy.tokenizer import QWEN_SPECIAL_START_ID, QWEN2_5_VL_SPECIAL_TOKENS, QWEN3_VL_EXTRA_TOKENS, check_family

# transformers model_type -> our family name
MODEL_TYPE_TO_FAMILY = {"qwen3_vl": "qwen3_vl", "qwen2_5_vl": "qwen2_5_vl"}


def model_class(family: str) -> type:
    """The transformers ``*ForConditionalGeneration`` class of a family."""
    check_family(family)
    if family == "qwen3_vl":
        from transformers import Qwen3VLForConditionalGeneration

        return Qwen3VLForConditionalGeneration
    from transformers import Qwen2_5_VLForConditionalGeneration

    return Qwen2_5_VLForConditionalGeneration


def processor_class(family: str) -> type:
    """The transformers processor class of a family."""
    check_family(family)
    if family == "qwen3_vl":
        from transformers import Qwen3VLProcessor

        return Qwen3VLProcessor
    from transformers import Qwen2_5_VLProcessor

    return Qwen2_5_VLProcessor


def qwen_vocab_size(family: str) -> int:
    """Number of tokens in Qwen's tokenizer of ``family`` before ``[SEG]`` is added."""
    extra = len(QWEN3_VL_EXTRA_TOKENS) if check_family(family) == "qwen3_vl" else 0
    return QWEN_SPECIAL_START_ID + len(QWEN2_5_VL_SPECIAL_TOKENS) + extra


def tiny_config(family: str = "qwen3_vl") -> Any:
    """A random-init-sized config of ``family``: hidden 64, 2 layers, a 2-block vision tower.

    ``vocab_size`` is Qwen's tokenizer size *without* ``[SEG]`` so that adding ``[SEG]`` exercises
    the embedding resize exactly as on a released Qwen model whose table is full.
    Word embeddings are tied to halve the checkpoint (the 151k-row table dominates a tiny model).
    """
    check_family(family)
    text = dict(
        vocab_size=qwen_vocab_size(family),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
    )
    if family == "qwen3_vl":
        from transformers import Qwen3VLConfig

        text.update(head_dim=16, rope_parameters={"rope_type": "default", "rope_theta": 500000.0,
                                                   "mrope_section": [2, 3, 3], "mrope_interleaved": True})
        vision = dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16, spatial_merge_size=2,
            temporal_patch_size=2, out_hidden_size=64, num_position_embeddings=256, deepstack_visual_indexes=[0, 1],
        )
        return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True)
    from transformers import Qwen2_5_VLConfig

    text.update(rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]})
    vision = dict(
        depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=14, spatial_merge_size=2,
        temporal_patch_size=2, out_hidden_size=64, window_size=112, fullatt_block_indexes=[1],
    )
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True)
