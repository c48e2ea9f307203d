"""Fixtures of the ``torch.compile`` runtime tests: a tiny checkpoint whose SAM2 says "object present".

Random SAM2 weights say "no object" on every frame, which makes every mask empty and every mask comparison
trivially equal; the checkpoint here has the object-score head's last bias set high (saved into it).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def object_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from videoseg_o3.checkpoint import SEGMENTER_DIR, init_tiny_checkpoint
    from videoseg_o3.segmenter import Sam2Segmenter

    path = init_tiny_checkpoint(tmp_path_factory.mktemp("compile_ckpt") / "tiny", seed=0)
    segmenter = Sam2Segmenter.from_pretrained(path / SEGMENTER_DIR, device="cpu")
    with torch.no_grad():
        segmenter.sam.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(10.0)
    segmenter.save_pretrained(path / SEGMENTER_DIR)
    return path
