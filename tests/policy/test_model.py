"""SegPolicy: [SEG] handling, projector, save/load round trip and clear loading errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from videoseg_o3.policy import SEG_TOKEN, SegPolicy
from videoseg_o3.policy.configs import qwen_vocab_size


def test_seg_token_grows_embeddings(tiny_policy: SegPolicy) -> None:
    rows = tiny_policy.model.get_input_embeddings().weight.shape[0]
    assert tiny_policy.seg_token_id == qwen_vocab_size(tiny_policy.family)
    assert rows == tiny_policy.seg_token_id + 1
    assert tiny_policy.model.get_output_embeddings().weight.shape[0] == rows
    assert tiny_policy.tokenizer.convert_tokens_to_ids(SEG_TOKEN) == tiny_policy.seg_token_id


def test_seg_embeddings_pick_seg_positions(tiny_policy: SegPolicy) -> None:
    seg = tiny_policy.seg_token_id
    ids = torch.tensor([[10, seg, 11, seg], [seg, 12, 13, 14]])
    hidden = torch.randn(2, 4, tiny_policy.hidden_size)
    out = tiny_policy.seg_embeddings(hidden, ids)
    assert out.shape == (3, 256)
    expected = tiny_policy.projector(torch.stack([hidden[0, 1], hidden[0, 3], hidden[1, 0]]))
    torch.testing.assert_close(out, expected)
    none = tiny_policy.seg_embeddings(hidden, torch.zeros_like(ids))
    assert none.shape == (0, 256)
    with pytest.raises(ValueError, match="Invalid shapes"):
        tiny_policy.seg_embeddings(hidden, ids[:, :3])


def test_projector_layout(tiny_policy: SegPolicy) -> None:
    keys = sorted(tiny_policy.projector.state_dict())
    assert keys == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert tiny_policy.projector[2].weight.shape == (256, tiny_policy.hidden_size)


def test_tiny_is_seeded() -> None:
    a = SegPolicy.tiny("qwen2_5_vl", seed=3)
    b = SegPolicy.tiny("qwen2_5_vl", seed=3)
    c = SegPolicy.tiny("qwen2_5_vl", seed=4)
    wa, wb, wc = (p.model.lm_head.weight[:100] for p in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_save_load_round_trip(tiny_policy: SegPolicy, tmp_path: Path) -> None:
    tiny_policy.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "projector.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin"))
    loaded = SegPolicy.from_pretrained(tmp_path)
    assert loaded.family == tiny_policy.family
    assert loaded.seg_token_id == tiny_policy.seg_token_id
    ids = torch.tensor([[151644, 872, 198, tiny_policy.seg_token_id, 151645]])
    with torch.no_grad():
        a = tiny_policy.model(input_ids=ids, output_hidden_states=True)
        b = loaded.model(input_ids=ids, output_hidden_states=True)
    torch.testing.assert_close(a.logits, b.logits, atol=0, rtol=0)
    torch.testing.assert_close(
        tiny_policy.seg_embeddings(a.hidden_states[-1], ids), loaded.seg_embeddings(b.hidden_states[-1], ids), atol=0, rtol=0
    )
    # the chat template and special ids survive the round trip
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}]}]
    assert loaded.processor.apply_chat_template(messages, tokenize=False) == tiny_policy.processor.apply_chat_template(
        messages, tokenize=False
    )
    assert loaded.tokenizer.convert_tokens_to_ids("<|image_pad|>") == 151655


def test_from_pretrained_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Policy directory not found"):
        SegPolicy.from_pretrained(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="missing config.json"):
        SegPolicy.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "qwen3_vl"}')
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="No safetensors weights"):
        SegPolicy.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"Invalid model_type \(llama\)"):
        SegPolicy.from_pretrained(tmp_path)


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_plain_qwen_directory_gets_seg_and_a_projector(family: str, tmp_path: Path) -> None:
    """A base Qwen-VL directory as Hugging Face saves it (no [SEG], no projector) is where real training starts."""
    from videoseg_o3.policy.configs import model_class, tiny_config
    from videoseg_o3.policy.tokenizer import build_processor, build_qwen_tokenizer

    torch.manual_seed(0)
    base = model_class(family)(tiny_config(family))
    base.save_pretrained(str(tmp_path))
    build_processor(family, build_qwen_tokenizer(family, add_seg_token=False)).save_pretrained(str(tmp_path))
    assert "[SEG]" not in (tmp_path / "tokenizer_config.json").read_text() + (tmp_path / "tokenizer.json").read_text()

    policy = SegPolicy.from_pretrained(tmp_path, device="cpu")
    assert policy.processor.tokenizer.convert_ids_to_tokens(policy.seg_token_id) == "[SEG]"
    assert policy.model.get_input_embeddings().num_embeddings > policy.seg_token_id
    ids = policy.processor.tokenizer("look [SEG] here", return_tensors="pt").input_ids
    assert (ids == policy.seg_token_id).sum() == 1
    with torch.no_grad():
        hidden = policy.model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    assert policy.seg_embeddings(hidden, ids).shape == (1, 256)
