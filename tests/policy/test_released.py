"""The released VideoSEG-O3 layout (Sa2VA-style wrapper names) maps onto our policy, projector and SAM2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from videoseg_o3.policy import SegPolicy, load_released_checkpoint, split_released_state_dict
from videoseg_o3.policy.released import qwen_key

from tests.tiny_models import shared_tiny_policy

TINY_SAM = {"model_config": "sam2_hiera_t", "image_size": 256}


@pytest.fixture(scope="module")
def tiny_segmenter():
    from videoseg_o3.segmenter import Sam2Segmenter, SegmenterConfig

    torch.manual_seed(0)
    return Sam2Segmenter.from_config(SegmenterConfig(**TINY_SAM), device="cpu")


def _released_names(policy: SegPolicy, segmenter, *, legacy: bool = False) -> dict[str, torch.Tensor]:
    """A state dict named as the released wrapper saves it: model.<qwen>, text_hidden_fcs.*, grounding_encoder.sam2_model.*."""
    state: dict[str, torch.Tensor] = {}
    for key, value in policy.model.state_dict().items():
        if legacy:  # transformers < 4.52 layout: visual.* and model.* (language model) at the top
            key = key.replace("model.visual.", "visual.", 1).replace("model.language_model.", "model.", 1)
        state["model." + key] = value.clone()
    for key, value in policy.projector.state_dict().items():
        state["text_hidden_fcs." + key] = value.clone()
    for key, value in segmenter.sam.state_dict().items():
        state["grounding_encoder.sam2_model." + key] = value.clone()
    return state


@pytest.mark.parametrize("legacy", [False, True])
def test_split_maps_every_name(tiny_policy: SegPolicy, tiny_segmenter, legacy: bool) -> None:
    parts = split_released_state_dict(_released_names(tiny_policy, tiny_segmenter, legacy=legacy))
    assert parts.ignored == []
    ours = tiny_policy.model.state_dict()
    assert set(parts.policy) == set(ours)
    for key, value in ours.items():
        assert torch.equal(parts.policy[key], value), key
    assert set(parts.projector) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert set(parts.sam2) == set(tiny_segmenter.sam.state_dict())


def test_unknown_names_are_reported() -> None:
    parts = split_released_state_dict({"text_hidden_fcs.5.weight": torch.zeros(1), "foo.bar": torch.zeros(1)})
    assert sorted(parts.ignored) == ["foo.bar", "text_hidden_fcs.5.weight"]


def test_qwen_key_layouts() -> None:
    assert qwen_key("model.language_model.layers.0.mlp.up_proj.weight") == "model.language_model.layers.0.mlp.up_proj.weight"
    assert qwen_key("model.layers.0.mlp.up_proj.weight") == "model.language_model.layers.0.mlp.up_proj.weight"
    assert qwen_key("visual.blocks.0.attn.qkv.weight") == "model.visual.blocks.0.attn.qkv.weight"
    assert qwen_key("lm_head.weight") == "lm_head.weight"


def _write_released_dir(path: Path, policy: SegPolicy, segmenter, *, sharded: bool) -> None:
    path.mkdir()
    config = policy.model.config.to_dict()
    record = {
        "model_type": "sa2va_chat",  # the wrapper's own type, not a transformers one
        "architectures": ["Sa2VAChatModelQwenCOT"],
        "text_config": config["text_config"],
        "vision_config": config["vision_config"],
        "image_token_id": config["image_token_id"],
        "video_token_id": config["video_token_id"],
        "vision_start_token_id": config["vision_start_token_id"],
        "vision_end_token_id": config["vision_end_token_id"],
        "tie_word_embeddings": config.get("tie_word_embeddings", False),
    }
    (path / "config.json").write_text(json.dumps(record))
    state = {k: v.contiguous() for k, v in _released_names(policy, segmenter).items()}
    if policy.model.config.tie_word_embeddings:
        state.pop("model.lm_head.weight", None)
    if sharded:
        keys = sorted(state)
        half = len(keys) // 2
        shards = {"model-00001-of-00002.safetensors": keys[:half], "model-00002-of-00002.safetensors": keys[half:]}
        weight_map = {}
        for name, shard_keys in shards.items():
            save_file({k: state[k] for k in shard_keys}, str(path / name))
            weight_map.update({k: name for k in shard_keys})
        (path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    else:
        save_file(state, str(path / "model.safetensors"))
    policy.processor.save_pretrained(str(path))


# Each family once; the Qwen2.5-VL case also covers sharded weights.
@pytest.mark.parametrize("family,sharded", [("qwen3_vl", False), ("qwen2_5_vl", True)])
def test_load_released_directory(family: str, tiny_segmenter, tmp_path: Path, sharded: bool) -> None:
    from videoseg_o3.segmenter import SegmenterConfig

    tiny_policy = shared_tiny_policy(family)
    directory = tmp_path / "released"
    _write_released_dir(directory, tiny_policy, tiny_segmenter, sharded=sharded)
    policy, segmenter = load_released_checkpoint(directory, segmenter_config=SegmenterConfig(**TINY_SAM), device="cpu")
    assert policy.family == tiny_policy.family
    assert policy.seg_token_id == tiny_policy.seg_token_id
    ids = torch.tensor([[151644, 872, 198, 3838, policy.seg_token_id, 151645]])
    with torch.no_grad():
        a = tiny_policy.model(input_ids=ids, output_hidden_states=True)
        b = policy.model(input_ids=ids, output_hidden_states=True)
    torch.testing.assert_close(a.logits, b.logits, atol=0, rtol=0)
    torch.testing.assert_close(
        tiny_policy.seg_embeddings(a.hidden_states[-1], ids), policy.seg_embeddings(b.hidden_states[-1], ids), atol=0, rtol=0
    )
    ours, theirs = tiny_segmenter.sam.state_dict(), segmenter.sam.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_load_released_errors(tmp_path: Path, tiny_segmenter) -> None:
    tiny_policy = shared_tiny_policy("qwen2_5_vl")
    with pytest.raises(FileNotFoundError, match="Released checkpoint directory not found"):
        load_released_checkpoint(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="missing config.json"):
        load_released_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="No safetensors weights"):
        load_released_checkpoint(tmp_path)
    state = _released_names(tiny_policy, tiny_segmenter)
    state["stray.weight"] = torch.zeros(2)
    save_file({k: v.contiguous() for k, v in state.items() if k != "model.lm_head.weight"}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="no known owner: stray.weight"):
        load_released_checkpoint(tmp_path)
