"""Which [SEG] prompts SAM2 at the end of an episode (the released evaluation's rule)."""

from __future__ import annotations

import torch

from videoseg_o3.agent import GenerationConfig, run_episode
from videoseg_o3.protocol import ProtocolConfig

from .conftest import random_video, shared_tiny_policy

SELECT = '<think>Step 1: a Step 2: b Step 3: c Action: See new segment.</think><select><VTG>{"start": 2, "end": 8, ' \
         '"keyframe": 5}</VTG><RefSeg>[SEG]</RefSeg></select>'
ANSWER_WITHOUT_SEG = '<think>Step 1: a Step 2: b Step 3: c Action: Confirmed.</think><answer><VTG>{"start": 2, ' \
                     '"end": 8, "keyframe": 6}</VTG><RefSeg></RefSeg></answer>'


def test_final_seg_falls_back_to_the_latest_earlier_turn() -> None:
    """Guards: the released evaluation takes the last [SEG] of the whole dialogue, so a final turn without
    one uses the latest earlier turn's (here the select's); only a dialogue with no [SEG] at all has none."""
    policy = shared_tiny_policy("qwen3_vl")
    video = random_video(12, 64, 64)
    traj = run_episode(policy, video, "the ball", protocol=ProtocolConfig(), generation=GenerationConfig(256),
                       forced_turns=[SELECT, ANSWER_WITHOUT_SEG])
    assert [t.action for t in traj.turns] == ["select", "answer"]
    assert traj.turns[1].seg_embeddings.shape[0] == 0
    assert traj.final_seg_embedding is not None
    assert torch.equal(traj.final_seg_embedding, traj.turns[0].seg_embeddings[-1])
    assert traj.anchor_frame == 5  # the select's keyframe, not the answer's

    none = run_episode(policy, video, "the ball", protocol=ProtocolConfig(), generation=GenerationConfig(256),
                       forced_turns=[ANSWER_WITHOUT_SEG])
    assert none.final_seg_embedding is None
