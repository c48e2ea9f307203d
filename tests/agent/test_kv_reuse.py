"""GOLDEN: extending the KV cache gives the logits of a full re-encode, images inserted mid-dialogue.

Both model families; the dialogue is system + user with two images, a generated reply, a new user
message with two more images of different sizes, and more generated tokens. A negative control
shows that letting transformers compute positions on a non-empty cache is measurably wrong, so the
comparison can fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.tolerances import tol
from videoseg_o3.agent.context import Chunk, DialogueContext
from videoseg_o3.policy import SegPolicy

from tests.tiny_models import shared_tiny_policy

IMG = "<|vision_start|><|image_pad|><|vision_end|>"


def _chunk(policy: SegPolicy, text: str, shapes: list[tuple[int, int]], seed: int) -> Chunk:
    rng = np.random.default_rng(seed)
    f = policy.vision_factor
    images = [rng.integers(0, 256, (h * f, w * f, 3), dtype=np.uint8) for h, w in shapes] or None
    out = policy.processor(text=[text], images=images, return_tensors="pt")
    return Chunk(out["input_ids"][0], out["mm_token_type_ids"][0].int(), out.get("pixel_values"), out.get("image_grid_thw"))


def _dialogue(policy: SegPolicy) -> list[tuple[str, object]]:
    tok = policy.tokenizer
    first = _chunk(policy, f"<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nA{IMG}B{IMG}which one?<|im_end|>\n"
                           "<|im_start|>assistant\n", [(2, 3), (4, 2)], 0)
    reply = torch.tensor(tok.encode("<think>Step 1: x</think><select>[SEG]</select>", add_special_tokens=False))
    second = _chunk(policy, f"<|im_end|>\n<|im_start|>user\nmore {IMG} and {IMG}<|im_end|>\n<|im_start|>assistant\n",
                    [(2, 2), (6, 4)], 1)
    more = torch.tensor(tok.encode("<answer>[SEG]</answer>", add_special_tokens=False))
    return [("prefill", first), ("decode", reply[:4]), ("decode", reply[4:]), ("prefill", second),
            ("decode", more[:1]), ("decode", more[1:])]


def _run(policy: SegPolicy, mode: str) -> list:
    ctx = DialogueContext(policy, mode)
    return [ctx.prefill(x) if kind == "prefill" else ctx.decode(x) for kind, x in _dialogue(policy)]


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_kv_reuse_matches_full_reencode(family: str) -> None:
    policy = shared_tiny_policy(family)
    kv, reencode = _run(policy, "kv"), _run(policy, "reencode")
    for step, (a, b) in enumerate(zip(kv, reencode)):
        torch.testing.assert_close(a.logits, b.logits, **tol("kv_reuse_logits"), msg=lambda m: f"step {step}: {m}")
        torch.testing.assert_close(a.hidden, b.hidden, **tol("kv_reuse_logits"), msg=lambda m: f"step {step}: {m}")


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_kv_prefills_only_new_tokens(family: str) -> None:
    policy = shared_tiny_policy(family)
    chunks = _dialogue(policy)
    kv, re = DialogueContext(policy, "kv"), DialogueContext(policy, "reencode")
    for ctx in (kv, re):
        for kind, x in chunks:
            ctx.prefill(x) if kind == "prefill" else ctx.decode(x)
    first, second = chunks[0][1], chunks[3][1]
    generated = sum(int(x.numel()) for kind, x in chunks if kind == "decode")
    reply = sum(int(x.numel()) for _, x in chunks[1:3])
    n1, n2 = first.input_ids.numel(), second.input_ids.numel()
    assert kv.stats.prefill_tokens == n1 + n2
    # re-encode runs the whole dialogue again at the second prompt: first prompt, the reply, the new chunk
    assert re.stats.prefill_tokens == n1 + (n1 + reply + n2)
    assert kv.stats.decode_tokens == re.stats.decode_tokens == generated
    assert torch.equal(kv.input_ids, re.input_ids) and torch.equal(kv.image_grid_thw, re.image_grid_thw)


def test_model_computed_positions_are_wrong() -> None:
    """Negative control: the naive continuation (transformers computes positions from its cached
    rope_deltas) gives new image tokens 1-D positions, and the logits move beyond the tolerance."""
    from transformers import DynamicCache

    policy = shared_tiny_policy("qwen3_vl")
    model = policy.model
    first, second = _dialogue(policy)[0][1], _dialogue(policy)[3][1]
    golden = _run_two(policy, first, second)
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model.model.rope_deltas = None
        model(input_ids=first.input_ids[None], pixel_values=first.pixel_values, image_grid_thw=first.image_grid_thw,
              mm_token_type_ids=first.mm_token_type_ids[None], cache=cache, use_cache=True)
        naive = model(input_ids=second.input_ids[None], pixel_values=second.pixel_values,
                      image_grid_thw=second.image_grid_thw, mm_token_type_ids=second.mm_token_type_ids[None],
                      cache=cache, use_cache=True).logits[0, -1].float()
    atol, _ = tol("kv_reuse_logits").values()
    assert (naive - golden).abs().max() > 10 * atol


def _run_two(policy: SegPolicy, first: Chunk, second: Chunk) -> torch.Tensor:
    ctx = DialogueContext(policy, "reencode")
    ctx.prefill(first)
    return ctx.prefill(second).logits


def test_fork_is_independent() -> None:
    policy = shared_tiny_policy("qwen2_5_vl")
    chunks = _dialogue(policy)
    base = DialogueContext(policy, "kv")
    base.prefill(chunks[0][1])
    branch = base.fork()
    branch.decode(torch.tensor([11, 12, 13]))  # mutates only the branch's cache
    a = base.decode(chunks[1][1])
    fresh = DialogueContext(policy, "kv")
    fresh.prefill(chunks[0][1])
    b = fresh.decode(chunks[1][1])
    torch.testing.assert_close(a.logits, b.logits, atol=0, rtol=0)
    assert len(branch) == len(base) - chunks[1][1].numel() + 3


def test_invalid_mode_and_early_decode() -> None:
    policy = shared_tiny_policy("qwen2_5_vl")
    with pytest.raises(ValueError, match=r"Invalid mode \(cached\)\. Supported values are kv, reencode"):
        DialogueContext(policy, "cached")
    with pytest.raises(RuntimeError, match="prefilled context"):
        DialogueContext(policy, "kv").decode(torch.tensor([1]))
