"""A whole multi-turn ``segment`` of the tiny checkpoint on PyTorch and on ONNX Runtime.

Guards the onnxruntime backend end to end: the agent's KV-cache reuse with M-RoPE positions on the exported
language model (identical tokens, teacher-forced and greedy), the ``[SEG]`` embedding, and SAM2's propagation
through the exported image encoder, decoder, memory encoder and padded memory attention (mask IoU >= 0.99 on
non-empty masks: the checkpoint's object-score head is forced on).
"""

from __future__ import annotations

import pytest
import torch

from tests.tolerances import MIN_BACKEND_MASK_IOU, tol
from videoseg_o3.protocol import format_turn

pytestmark = [pytest.mark.export, pytest.mark.slow]

STEPS = ("The ball rolls in the middle.", "It is small and red.", "The query names it.")


def _video() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (8, 40, 56, 3), dtype=torch.uint8, generator=gen)


@pytest.fixture(scope="module")
def pipelines(object_checkpoint, exported):
    from videoseg_o3.agent import GenerationConfig
    from videoseg_o3.pipeline import VideoSegO3

    out, _ = exported
    generation = GenerationConfig(max_new_tokens=96)  # a scripted turn is ~70 tokens
    eager = VideoSegO3.from_pretrained(object_checkpoint, device="cpu", generation=generation)
    graphs = VideoSegO3.from_pretrained(object_checkpoint, device="cpu", generation=generation, backend="onnxruntime",
                                        export_dir=out)
    return eager, graphs


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def test_teacher_forced_segment_matches_torch(pipelines) -> None:
    eager, graphs = pipelines
    turns = [format_turn("select", STEPS, "See new segment.", 2, 6, 5), format_turn("answer", STEPS, "Confirmed.", 2, 6, 3)]
    expected = eager.segment(_video(), "the small red ball", forced_turns=turns)
    got = graphs.segment(_video(), "the small red ball", forced_turns=turns)
    assert expected.error is None and got.error is None
    assert torch.equal(got.trajectory.input_ids, expected.trajectory.input_ids)
    assert got.anchor_frame == expected.anchor_frame == 5
    torch.testing.assert_close(got.trajectory.final_seg_embedding, expected.trajectory.final_seg_embedding,
                               **tol("onnx_fp32"))
    assert expected.masks.any(), "the comparison needs foreground (object-score head forced on)"
    assert _iou(got.masks, expected.masks) >= MIN_BACKEND_MASK_IOU


def test_greedy_segment_chooses_the_same_tokens(pipelines) -> None:
    """Turn 0 scripted (a select, so the episode continues), turn 1 greedy: the graphs choose exactly the
    torch model's tokens on a cache that already holds a whole turn and a mid-dialogue image chunk."""
    eager, graphs = pipelines
    turns = [format_turn("select", STEPS, "See new segment.", 1, 7, 4), None]
    expected = eager.segment(_video(), "the ball", forced_turns=lambda i, _: turns[i] if i < len(turns) else None)
    got = graphs.segment(_video(), "the ball", forced_turns=lambda i, _: turns[i] if i < len(turns) else None)
    assert len(expected.turns) >= 2 and expected.turns[1]["decode_tokens"] > 0
    assert torch.equal(got.trajectory.input_ids, expected.trajectory.input_ids)
    assert [t["text"] for t in got.turns] == [t["text"] for t in expected.turns]
    assert _iou(got.masks, expected.masks) >= MIN_BACKEND_MASK_IOU


def test_unknown_backend_and_missing_export_are_one_line_errors(object_checkpoint, tmp_path) -> None:
    from videoseg_o3.pipeline import VideoSegO3

    with pytest.raises(ValueError, match="Invalid backend"):
        VideoSegO3.from_pretrained(object_checkpoint, device="cpu", backend="openvino")
    with pytest.raises(FileNotFoundError, match="python -m export.trt"):
        VideoSegO3.from_pretrained(object_checkpoint, device="cpu", backend="onnxruntime", export_dir=tmp_path)


def test_segment_command_runs_the_onnxruntime_backend(object_checkpoint, exported, tmp_path) -> None:
    """``videoseg-o3 segment --backend onnxruntime --export-dir DIR`` writes the same turns as ``--backend torch``."""
    import json

    import numpy as np
    from PIL import Image

    from videoseg_o3.cli import main

    out_dir, _ = exported
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, frame in enumerate(_video()[:5].numpy()):
        Image.fromarray(frame).save(frames / f"{i:05d}.png")
    records = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / backend
        argv = ["segment", str(frames), "the ball", "--ckpt", str(object_checkpoint), "--out", str(out), "--no-progress",
                "--no-overlay", "--device", "cpu", "--max-new-tokens", "8", "--backend", backend]
        if backend != "torch":
            argv += ["--export-dir", str(out_dir)]
        assert main(argv) == 0
        records[backend] = json.loads((out / "turns.json").read_text())
        assert len(list((out / "masks").glob("*.png"))) == 5
    assert [t["text"] for t in records["onnxruntime"]["turns"]] == [t["text"] for t in records["torch"]["turns"]]
    assert np.isfinite(records["onnxruntime"]["timings"]["episode"])
