"""Shared fixtures of the web demo tests: a tiny checkpoint whose SAM2 says "object" everywhere
(random weights otherwise give empty masks, and an all-empty overlay checks nothing), and a small
synthetic clip with its query and ground-truth reasoning path."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def app_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from videoseg_o3.agent import GenerationConfig
    from videoseg_o3.checkpoint import save_checkpoint
    from videoseg_o3.policy import SegPolicy
    from videoseg_o3.protocol import ProtocolConfig
    from videoseg_o3.segmenter import Sam2Segmenter, SegmenterConfig

    policy = SegPolicy.tiny("qwen3_vl", seed=0)
    torch.manual_seed(0)
    segmenter = Sam2Segmenter.from_config(SegmenterConfig(model_config="sam2_hiera_t", image_size=256), device="cpu")
    with torch.no_grad():
        segmenter.sam.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(10.0)
    path = tmp_path_factory.mktemp("app_ckpt") / "tiny"
    return save_checkpoint(path, policy, segmenter, ProtocolConfig.preset("eval"), GenerationConfig(max_new_tokens=32))


@dataclass
class Clip:
    """A generated test video: ``path`` (MP4, H.264), its frame count and size, a query and the
    ground-truth assistant turns for it (VTS-CoT, one protocol turn each)."""

    path: Path
    num_frames: int
    height: int
    width: int
    query: str
    turns: list[str]


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    from videoseg_o3.data.synthetic import SynthConfig, generate_split
    from videoseg_o3.io import open_video, write_video

    root = tmp_path_factory.mktemp("clip")
    # seed 5: its 3-turn trace narrows the interval turn by turn ([1, 9], [2, 9], [3, 9]).
    generate_split(root / "data", 1, seed=5, split="test", cfg=SynthConfig(frames=(10, 10), size=(64, 64)))
    records = json.loads((root / "data" / "vts_cot.json").read_text())
    record = max(records, key=lambda r: sum(c["from"] == "gpt" for c in r["conversations"]))
    with open_video(root / "data" / "JPEGImages" / record["video_name"]) as reader:
        frames = reader.get_frames(list(range(reader.num_frames)))
    path = root / "clip.mp4"
    write_video(path, frames, 8.0)
    turns = [c["value"] for c in record["conversations"] if c["from"] == "gpt"]
    return Clip(path, int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2]), record["exp"], turns)
