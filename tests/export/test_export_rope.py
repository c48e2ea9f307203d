"""sam2's complex-number RoPE rewritten as real arithmetic, and memory attention with padded, masked slots.

Guards: the exported memory attention computes what sam2's own ``MemoryAttention`` computes. The
references are sam2's functions themselves (``apply_rotary_enc`` on complex tensors, the module's forward
on the unpadded memory), not our code.
"""

from __future__ import annotations

import pytest
import torch
from sam2.modeling.position_encoding import apply_rotary_enc, compute_axial_cis

from export.sam2_graphs import MemoryAttentionGraph, apply_rope_real, axial_rope_angles
from tests.tolerances import tol
from videoseg_o3.runtime.sam2_graphs import memory_slots, pad_memory

pytestmark = pytest.mark.export


@pytest.mark.parametrize("head_dim,side,repeat", [(32, 4, 1), (64, 16, 3), (256, 8, 7)])
def test_real_rope_equals_sam2_complex_rope(head_dim: int, side: int, repeat: int) -> None:
    gen = torch.Generator().manual_seed(head_dim)
    q = torch.randn(2, 3, side * side, head_dim, generator=gen)
    k = torch.randn(2, 3, side * side * repeat, head_dim, generator=gen)
    cis = compute_axial_cis(dim=head_dim, end_x=side, end_y=side)
    ref_q, ref_k = apply_rotary_enc(q, k, freqs_cis=cis, repeat_freqs_k=repeat > 1)
    angles = axial_rope_angles(head_dim, side, side)
    cos, sin = angles.cos(), angles.sin()
    torch.testing.assert_close(apply_rope_real(q, cos, sin), ref_q, **tol("onnx_fp32"))
    torch.testing.assert_close(apply_rope_real(k, cos.repeat(repeat, 1), sin.repeat(repeat, 1)), ref_k, **tol("onnx_fp32"))


@pytest.fixture(scope="module")
def tiny_sam():
    from videoseg_o3.segmenter import Sam2Segmenter, SegmenterConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Sam2Segmenter.from_config(SegmenterConfig(model_config="sam2_hiera_t", image_size=256), device="cpu")


@pytest.mark.parametrize("frames,pointers", [(7, 16), (1, 0), (3, 5)])
def test_padded_memory_attention_equals_sam2(tiny_sam, frames: int, pointers: int) -> None:
    """Full slots (7 memories, 16 pointers) and partly filled ones give sam2's result on the unpadded memory."""
    sam = tiny_sam.sam
    hw, num_spatial, max_ptr = memory_slots(sam, 256)
    graph = MemoryAttentionGraph(sam, (16, 16)).eval()
    gen = torch.Generator().manual_seed(frames)
    curr, curr_pos = torch.randn(hw, 1, 256, generator=gen), torch.randn(hw, 1, 256, generator=gen)
    num_ptr_tokens = pointers * 4
    memory = torch.randn(frames * hw + num_ptr_tokens, 1, 64, generator=gen)
    memory_pos = torch.randn_like(memory)
    with torch.no_grad():
        expected = sam.memory_attention(curr=[curr], curr_pos=[curr_pos], memory=memory, memory_pos=memory_pos,
                                        num_obj_ptr_tokens=num_ptr_tokens)
        padded = pad_memory(memory, memory_pos, num_ptr_tokens, hw, num_spatial, max_ptr)
        got = graph(curr, curr_pos, *padded)
    assert padded[0].shape[0] == num_spatial + max_ptr  # the slot count is fixed whatever the memory holds
    torch.testing.assert_close(got, expected, **tol("onnx_fp32"))


def test_pad_memory_rejects_more_memories_than_slots(tiny_sam) -> None:
    hw, num_spatial, max_ptr = memory_slots(tiny_sam.sam, 256)
    too_many = torch.zeros(num_spatial + hw, 1, 64)
    with pytest.raises(ValueError, match="spatial tokens"):
        pad_memory(too_many, too_many, 0, hw, num_spatial, max_ptr)
