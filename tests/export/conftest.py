"""Shared fixtures of the export tests: one tiny checkpoint whose SAM2 says "object present", exported once.

sam2's object-score head with random weights says "no object" on every frame and every mask becomes the
no-object logit, so a torch-vs-ONNX comparison of masks would compare empty with empty. The checkpoint
used here has that head's last bias set high (saved into the checkpoint, so the exported decoder graph
carries it too) and the masks are non-empty.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def object_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from videoseg_o3.checkpoint import SEGMENTER_DIR, init_tiny_checkpoint
    from videoseg_o3.segmenter import Sam2Segmenter

    path = init_tiny_checkpoint(tmp_path_factory.mktemp("export_ckpt") / "tiny", seed=0)
    segmenter = Sam2Segmenter.from_pretrained(path / SEGMENTER_DIR, device="cpu")
    with torch.no_grad():
        segmenter.sam.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(10.0)
    segmenter.save_pretrained(path / SEGMENTER_DIR)
    return path


@pytest.fixture(scope="session")
def exported(object_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """``(export_dir, manifest)`` of ``python -m export.trt`` on ``object_ckpt`` (all components)."""
    from export.shapes import COMPONENTS
    from export.trt import export_all

    out = tmp_path_factory.mktemp("export_out")
    manifest = export_all(object_ckpt, out, components=list(COMPONENTS), log=lambda line: None)
    return out, manifest


@pytest.fixture(scope="session")
def loaded(object_ckpt: Path):
    """``(policy, segmenter)`` of ``object_ckpt`` in PyTorch, float32, eval."""
    from videoseg_o3.checkpoint import load_checkpoint

    policy, segmenter, _ = load_checkpoint(object_ckpt, device="cpu")
    return policy.float().eval(), segmenter.eval()
