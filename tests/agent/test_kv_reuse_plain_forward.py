"""KV reuse against a plain transformers forward of the whole dialogue (independent of our position code).

Our ``kv`` mode computes Qwen's 3-D M-RoPE positions itself (``get_rope_index`` on the full dialogue,
sliced per chunk) and extends the cache chunk by chunk. The reference here is the model run ONCE over the
finished dialogue with every image, no ``position_ids`` (transformers computes M-RoPE itself), no cache and
no earlier state: it shares nothing with our context code. Replacing M-RoPE by 1-D positions, slicing the
wrong positions, or feeding the wrong images to a chunk makes the logits or the [SEG] embeddings move.
"""

from __future__ import annotations

import pytest
import torch

from tests.agent.test_kv_reuse import _dialogue
from tests.tiny_models import shared_tiny_policy
from tests.tolerances import tol
from videoseg_o3.agent.context import DialogueContext


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_kv_logits_and_seg_embeddings_equal_one_plain_forward(family: str) -> None:
    policy = shared_tiny_policy(family)
    steps = _dialogue(policy)
    ctx = DialogueContext(policy, "kv")
    outputs, ends = [], []
    for kind, x in steps:
        outputs.append(ctx.prefill(x) if kind == "prefill" else ctx.decode(x))
        ends.append(len(ctx))

    ids = torch.cat([x.input_ids if kind == "prefill" else x for kind, x in steps])
    types = torch.cat([x.mm_token_type_ids if kind == "prefill" else torch.zeros_like(x, dtype=torch.int32)
                       for kind, x in steps])
    pixels = torch.cat([x.pixel_values for kind, x in steps if kind == "prefill"])
    grids = torch.cat([x.image_grid_thw for kind, x in steps if kind == "prefill"])
    assert torch.equal(ids, ctx.input_ids.cpu())
    inner = policy.model.model
    inner.rope_deltas = None  # no state carried over from the kv run
    with torch.inference_mode():
        plain = inner(input_ids=ids[None], pixel_values=pixels, image_grid_thw=grids, mm_token_type_ids=types[None],
                      use_cache=False)
        hidden = plain.last_hidden_state[0]
        logits = policy.model.lm_head(hidden).float()

    start = 0
    for step, (out, end) in enumerate(zip(outputs, ends)):
        torch.testing.assert_close(out.logits, logits[end - 1], **tol("kv_reuse_logits"),
                                   msg=lambda m: f"step {step} logits: {m}")
        torch.testing.assert_close(out.hidden, hidden[start:end], **tol("kv_reuse_logits"),
                                   msg=lambda m: f"step {step} hidden states: {m}")
        start = end
    seg_rows = (ids == policy.seg_token_id).nonzero().flatten()
    assert seg_rows.numel() == 2
    ours = torch.cat([o.hidden for o in outputs])[seg_rows]
    with torch.inference_mode():
        projector = policy.projector
        torch.testing.assert_close(projector(ours.to(projector[0].weight.dtype)),
                                   projector(hidden[seg_rows].to(projector[0].weight.dtype)),
                                   **tol("kv_reuse_logits"))
