"""A tiny random checkpoint shared by the pipeline tests (writing one takes several seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from videoseg_o3.checkpoint import init_tiny_checkpoint

    return init_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_ckpt: Path):
    from videoseg_o3.pipeline import VideoSegO3

    from videoseg_o3.agent import GenerationConfig

    # init-tiny keeps turns at 32 tokens so a random model stays quick; scripted turns need more room.
    pipeline = VideoSegO3.from_pretrained(tiny_ckpt, device="cpu", generation=GenerationConfig(max_new_tokens=96))
    # Random SAM2 weights say "no object" everywhere; force the object score on so masks carry signal.
    with __import__("torch").no_grad():
        pipeline.segmenter.sam.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(10.0)
    return pipeline
