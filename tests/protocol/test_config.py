"""ProtocolConfig: presets, validation messages, dict round trip."""

from __future__ import annotations

import dataclasses

import pytest

from videoseg_o3.protocol import ProtocolConfig


def test_presets_match_the_released_budgets() -> None:
    ev, rl = ProtocolConfig.preset("eval"), ProtocolConfig.preset("rl")
    assert ev == ProtocolConfig()
    assert (ev.turn0_temporal_frames, ev.turn0_spatial_frames, ev.followup_temporal_frames, ev.max_turns) == (20, 8, 5, 3)
    assert (ev.turn0_temporal_max_pixels, ev.turn0_spatial_max_pixels, ev.keyframe_max_pixels, ev.min_pixels) == (
        32 * 784, 256 * 784, 512 * 784, 4 * 784)
    assert (rl.turn0_temporal_frames, rl.turn0_spatial_frames, rl.followup_temporal_frames, rl.max_turns) == (10, 5, 5, 3)
    assert (rl.turn0_spatial_max_pixels, rl.keyframe_max_pixels, rl.template_variant) == (128 * 784, 256 * 784, "rl")


def test_every_field_has_help_text() -> None:
    for f in dataclasses.fields(ProtocolConfig):
        assert f.metadata.get("help"), f.name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt_style": "fancy"}, "Invalid prompt_style (fancy). Supported values are videoseg-o3, default."),
        ({"template_variant": "train"}, "Invalid template_variant (train). Supported values are eval, rl."),
        ({"max_turns": 0}, "Invalid max_turns (0). Set it to an int >= 1."),
        ({"followup_temporal_frames": 0}, "Invalid followup_temporal_frames (0). Set it to an int >= 1."),
        ({"turn0_temporal_frames": 0, "turn0_spatial_frames": 0}, "both 0"),
        ({"keyframe_max_pixels": 100}, "Invalid keyframe_max_pixels (100): it is below min_pixels (3136). Raise keyframe_max_pixels or lower min_pixels."),
        ({"max_turns": 2.5}, "Invalid max_turns (2.5). It must be an int"),
        ({"turn0_spatial_frames": True}, "Invalid turn0_spatial_frames (True)"),
    ],
)
def test_bad_configs_say_how_to_fix_them(kwargs, message) -> None:
    with pytest.raises(ValueError) as info:
        ProtocolConfig(**kwargs)
    assert message in str(info.value)


def test_preset_name_is_checked() -> None:
    with pytest.raises(ValueError, match=r"Invalid preset \(train\)\. Supported values are eval, rl\."):
        ProtocolConfig.preset("train")


def test_dict_round_trip() -> None:
    cfg = ProtocolConfig(prompt_style="default", max_turns=4)
    assert ProtocolConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"Invalid ProtocolConfig keys \(max_turn\)"):
        ProtocolConfig.from_dict({"max_turn": 3})
