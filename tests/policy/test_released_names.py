"""Every parameter name of a released VideoSEG-O3-2B checkpoint maps onto our model, and nothing is left out.

The names come from ``tests/policy/released_names.py``, written from the released code's module paths (not
from our state dicts). Our side is built at full size on the meta device (no memory, no weights): the
Qwen3-VL-2B policy structure, and SAM2 Hiera-L as ``SegmenterConfig.released()`` builds it (on the CPU).
"""

from __future__ import annotations

import pytest
import torch

from tests.policy.released_names import RELEASED_2B_NAMES
from videoseg_o3.policy import split_released_state_dict


def _qwen3_vl_2b_on_meta() -> torch.nn.Module:
    from transformers import Qwen3VLConfig

    from videoseg_o3.policy.configs import model_class

    config = Qwen3VLConfig(
        text_config=dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                         num_key_value_heads=8, head_dim=128, vocab_size=151936 + 5),
        vision_config=dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048,
                           deepstack_visual_indexes=[5, 11, 17], num_position_embeddings=2304),
        tie_word_embeddings=False,  # the released wrapper unties lm_head (cloned from the embeddings)
    )
    with torch.device("meta"):
        return model_class("qwen3_vl")(config)


def _sam2_hiera_l_names() -> set[str]:
    """SAM2 Hiera-L as the released config builds it (on the CPU: Hiera's constructor reads tensor values,
    which the meta device cannot give)."""
    from videoseg_o3.segmenter import SegmenterConfig
    from videoseg_o3.segmenter.build import build_sam2_model

    return set(build_sam2_model(SegmenterConfig.released(), torch.device("cpu")).state_dict())


@pytest.mark.slow
def test_every_released_name_maps_and_nothing_is_missing() -> None:
    """Guards the released-checkpoint loader's name mapping (policy.released.split_released_state_dict)."""
    assert len(RELEASED_2B_NAMES) == len(set(RELEASED_2B_NAMES)) > 1000
    parts = split_released_state_dict({name: torch.empty(0) for name in RELEASED_2B_NAMES})
    assert parts.ignored == []
    policy_keys = set(_qwen3_vl_2b_on_meta().state_dict())
    sam2_keys = _sam2_hiera_l_names()
    assert sorted(set(parts.policy) - policy_keys) == [], "released Qwen names that map to no parameter of ours"
    assert sorted(policy_keys - set(parts.policy)) == [], "parameters of ours that no released Qwen name fills"
    assert sorted(parts.projector) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert sorted(set(parts.sam2) - sam2_keys) == [], "released SAM2 names that map to no parameter of ours"
    assert sorted(sam2_keys - set(parts.sam2)) == [], "SAM2 parameters of ours that no released name fills"
