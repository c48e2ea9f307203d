"""The episode loop: scripted 3-turn episodes in both modes, malformed turns, sampling, rollouts, frame fetching."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.tolerances import tol
from videoseg_o3.agent import GenerationConfig, run_episode, run_episodes
from videoseg_o3.agent.measure import measure_prefill_ratio, scripted_turns, synthetic_video
from videoseg_o3.protocol import ProtocolConfig, parse_turn

from .conftest import random_video, shared_tiny_policy

SHORT = GenerationConfig(max_new_tokens=16)


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_scripted_three_turns_kv_equals_reencode(family: str) -> None:
    policy = shared_tiny_policy(family)
    video = random_video()
    script = scripted_turns(video.num_frames)
    runs = {mode: run_episode(policy, video, "the red ball", protocol=ProtocolConfig(), generation=GenerationConfig(256),
                              mode=mode, forced_turns=script) for mode in ("kv", "reencode")}
    kv, re = runs["kv"], runs["reencode"]
    assert [t.action for t in kv.turns] == ["select", "select", "answer"]
    assert kv.stop_reason == "answer" and kv.num_turns == 3
    assert torch.equal(kv.input_ids, re.input_ids)
    assert torch.equal(kv.response_mask, re.response_mask)
    for a, b in zip(kv.turns, re.turns):
        assert a.seg_embeddings.shape == (1, 256)
        torch.testing.assert_close(a.seg_embeddings, b.seg_embeddings, **tol("kv_reuse_logits"))
    # every policy token, and only those, is marked 1; the scripted texts come back verbatim
    chosen = torch.cat([t.token_ids for t in kv.turns])
    assert torch.equal(kv.input_ids[kv.response_mask.bool()], chosen)
    assert [t.text for t in kv.turns] == script
    assert kv.decode_tokens == re.decode_tokens == sum(len(t.token_ids) - 1 for t in kv.turns)
    # the protocol decides the anchor: the last select's keyframe
    assert kv.anchor_frame == parse_turn(script[1]).keyframe
    assert kv.final_seg_embedding is not None and kv.final_seg_embedding.shape == (256,)
    # follow-up observations show the selected keyframe at high resolution
    assert kv.turns[0].shown_keyframe is None
    assert kv.turns[1].shown_keyframe == parse_turn(script[0]).keyframe
    assert kv.turns[2].decode_frame(video.num_frames) == parse_turn(script[1]).keyframe
    assert kv.turns[0].decode_frame(video.num_frames) == video.num_frames // 2
    # the images of the dialogue are all there, for re-scoring in training
    assert kv.image_grid_thw.shape[0] == sum(len(t.frames) for t in kv.turns)
    assert int((kv.mm_token_type_ids == 1).sum()) == int((kv.image_grid_thw.prod(-1) // 4).sum())
    assert kv.pixel_values.shape[0] == int(kv.image_grid_thw.prod(-1).sum())
    assert kv.prefill_tokens < re.prefill_tokens
    assert set(kv.timings) >= {"video_decode", "preprocess", "vision_encoder", "prefill", "decode", "total"}


def test_prefill_ratio_three_turns() -> None:
    """KV reuse prefills at most 0.4x the tokens of re-encoding over a 3-turn eval-preset episode (360x640 video)."""
    result = measure_prefill_ratio(shared_tiny_policy("qwen3_vl"), synthetic_video(30, 360, 640))
    assert result["turns"] == 3
    kv_turns = result["prefill_tokens_per_turn"]["kv"]
    re_turns = result["prefill_tokens_per_turn"]["reencode"]
    assert kv_turns[0] == re_turns[0]  # the first prompt costs the same
    assert re_turns[2] > re_turns[1] > re_turns[0] > kv_turns[1]
    assert result["prefill_ratio"] <= 0.4, result["prefill_tokens"]


@pytest.mark.parametrize("text", ["no tags at all", "<think>Step 1: x</think><select><VTG>{\"start\": 9, \"end\": 2, "
                                  "\"keyframe\": 5}</VTG><RefSeg>[SEG]</RefSeg></select>", ""])
def test_malformed_or_empty_turn_ends_episode(text: str) -> None:
    policy = shared_tiny_policy("qwen2_5_vl")
    video = random_video(12)
    traj = run_episode(policy, video, "it", protocol=ProtocolConfig(), generation=GenerationConfig(128), forced_turns=[text])
    assert traj.num_turns == 1
    assert traj.stop_reason in ("invalid", "empty_interval")
    assert traj.turns[0].parse == parse_turn(text)
    assert 0 <= traj.anchor_frame < video.num_frames
    if "[SEG]" not in text:
        assert traj.final_seg_embedding is None


def test_greedy_generation_is_deterministic_and_bounded() -> None:
    policy = shared_tiny_policy("qwen2_5_vl")
    video = random_video(10, 64, 64)
    cfg = ProtocolConfig.preset("rl")
    a = run_episode(policy, video, "it", protocol=cfg, generation=SHORT)
    b = run_episode(policy, video, "it", protocol=cfg, generation=SHORT, mode="reencode")
    assert all(len(t.token_ids) <= SHORT.max_new_tokens for t in a.turns)
    assert torch.equal(a.input_ids, b.input_ids)
    assert int(a.response_mask.sum()) == sum(len(t.token_ids) for t in a.turns)


def test_sampling_is_seeded() -> None:
    policy = shared_tiny_policy("qwen2_5_vl")
    video = random_video(10, 64, 64)
    cfg = ProtocolConfig.preset("rl")
    gen = lambda seed: GenerationConfig(max_new_tokens=8, do_sample=True, temperature=1.0, top_p=0.9, seed=seed)  # noqa: E731
    a = run_episode(policy, video, "it", protocol=cfg, generation=gen(1))
    b = run_episode(policy, video, "it", protocol=cfg, generation=gen(1))
    c = run_episode(policy, video, "it", protocol=cfg, generation=gen(2))
    assert torch.equal(a.turns[0].token_ids, b.turns[0].token_ids)
    assert not torch.equal(a.turns[0].token_ids, c.turns[0].token_ids)


def test_rollouts_share_the_prompt_and_match_single_episodes() -> None:
    policy = shared_tiny_policy("qwen3_vl")
    videos = [random_video(20, 64, 96, seed=0), random_video(16, 96, 64, seed=1)]
    queries = ["first", "second"]
    script = scripted_turns(16)
    cfg = ProtocolConfig.preset("rl")
    trajs = run_episodes(policy, videos, queries, protocol=cfg, generation=GenerationConfig(256), num_rollouts=2,
                         forced_turns=script)
    assert len(trajs) == 4 and [t.query for t in trajs] == ["first", "first", "second", "second"]
    single = run_episode(policy, videos[1], "second", protocol=cfg, generation=GenerationConfig(256), forced_turns=script)
    for traj in trajs[2:]:
        assert torch.equal(traj.input_ids, single.input_ids)
        for a, b in zip(traj.turns, single.turns):
            torch.testing.assert_close(a.seg_embeddings, b.seg_embeddings, **tol("kv_reuse_logits"))
    # the shared first prompt is prefilled once per prompt
    assert trajs[2].turns[0].prefill_tokens == single.turns[0].prefill_tokens
    assert trajs[3].turns[0].prefill_tokens == 0


def test_sampled_rollouts_differ_and_repeat() -> None:
    policy = shared_tiny_policy("qwen2_5_vl")
    video = random_video(10, 64, 64)
    gen = GenerationConfig(max_new_tokens=6, do_sample=True, top_p=0.9, seed=7)
    cfg = ProtocolConfig.preset("rl")
    first = run_episodes(policy, [video], ["it"], protocol=cfg, generation=gen, num_rollouts=3)
    again = run_episodes(policy, [video], ["it"], protocol=cfg, generation=gen, num_rollouts=3)
    tokens = [t.turns[0].token_ids.tolist() for t in first]
    assert tokens == [t.turns[0].token_ids.tolist() for t in again]
    assert len({tuple(t) for t in tokens}) > 1


def test_only_new_frames_are_decoded(tmp_path: Path) -> None:
    from PIL import Image

    from videoseg_o3.io import open_video

    g = torch.Generator().manual_seed(0)
    for i in range(24):
        Image.fromarray(torch.randint(0, 256, (48, 64, 3), generator=g, dtype=torch.uint8).numpy()).save(
            tmp_path / f"{i:05d}.jpg")
    video = open_video(tmp_path)
    policy = shared_tiny_policy("qwen2_5_vl")
    cfg = ProtocolConfig.preset("rl")
    traj = run_episode(policy, video, "it", protocol=cfg, generation=GenerationConfig(256), forced_turns=scripted_turns(24))
    shown = {spec.index for turn in traj.turns for spec in turn.frames}
    assert traj.num_turns == 3
    assert video.num_decoded == len(shown)


def test_bad_arguments() -> None:
    policy = shared_tiny_policy("qwen2_5_vl")
    video = random_video(5, 32, 32)
    with pytest.raises(ValueError, match="Invalid query"):
        run_episode(policy, video, "  ")
    with pytest.raises(ValueError, match=r"Invalid mode \(fast\)"):
        run_episode(policy, video, "q", mode="fast")
    with pytest.raises(ValueError, match="Invalid batch: 1 videos but 2 queries"):
        run_episodes(policy, [video], ["a", "b"])
    with pytest.raises(ValueError, match="Invalid num_rollouts"):
        run_episodes(policy, [video], ["a"], num_rollouts=0)
    with pytest.raises(ValueError, match="Invalid top_p"):
        GenerationConfig(top_p=0.0)
    with pytest.raises(ValueError, match="Invalid temperature"):
        GenerationConfig(temperature=0.0)
    with pytest.raises(ValueError, match="Invalid max_new_tokens"):
        GenerationConfig(max_new_tokens=0)
