"""Frames -> pixel_values through the fused frame prep + the processor's patchify equals the Qwen processor."""

from __future__ import annotations

import pytest
import torch

from videoseg_o3.agent.frames import expand_image_placeholders, policy_image_sizes, prepare_policy_images
from videoseg_o3.protocol import FrameSpec

from tests.tiny_models import shared_tiny_policy


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_matches_the_processor_at_grid_sizes(family: str) -> None:
    """Frames already at a patch-grid size are not resampled, so both paths must agree to float rounding."""
    policy = shared_tiny_policy(family)
    f = policy.vision_factor
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (3, 4 * f, 6 * f, 3), generator=g, dtype=torch.uint8)
    big = 10**9  # budgets that keep the size
    specs = [FrameSpec(i, big, 1, "temporal") for i in range(3)]
    ours = prepare_policy_images(frames, specs, policy.processor.image_processor)
    text = "<|vision_start|><|image_pad|><|vision_end|>" * 3
    ref = policy.processor(text=[text], images=list(frames.permute(0, 3, 1, 2)), return_tensors="pt")
    assert torch.equal(ours.image_grid_thw, ref["image_grid_thw"])
    torch.testing.assert_close(ours.pixel_values, ref["pixel_values"], atol=1e-5, rtol=1e-5)
    ids = policy.tokenizer(expand_image_placeholders(text, ours.num_tokens, "<|image_pad|>"),
                           add_special_tokens=False, return_tensors="pt")["input_ids"]
    assert torch.equal(ids, ref["input_ids"])


def test_sizes_follow_spec_then_grid() -> None:
    policy = shared_tiny_policy("qwen3_vl")
    spec_low = FrameSpec(0, 32 * 28 * 28, 4 * 28 * 28, "temporal")
    spec_high = FrameSpec(0, 512 * 28 * 28, 4 * 28 * 28, "keyframe")
    (h1, w1), (h2, w2) = policy_image_sizes(720, 1280, [spec_low, spec_high], policy.processor.image_processor)
    assert h1 % 32 == w1 % 32 == h2 % 32 == w2 % 32 == 0
    assert h1 * w1 < h2 * w2
    assert abs(w1 / h1 - 16 / 9) < 0.25 and abs(w2 / h2 - 16 / 9) < 0.1


def test_placeholder_count_must_match() -> None:
    with pytest.raises(ValueError, match="2 <x> placeholders for 1 images"):
        expand_image_placeholders("<x>a<x>", [3], "<x>")
    assert expand_image_placeholders("a<x>b<x>", [2, 1], "<x>") == "a<x><x>b<x>"
