"""Batched rollout decoding: one forward per token for all generating rollouts == one-by-one decoding.

Guards: the left-padded batched cache and its attention mask, the per-row 3-D M-RoPE positions (rows
holding different images have different rope deltas), rows leaving and rejoining the batch, and the
per-rollout generators (sampling draws identical to the sequential driver's).
"""

from __future__ import annotations

import pytest
import torch

from tests.tolerances import tol
from videoseg_o3.agent import GenerationConfig, run_episodes
from videoseg_o3.agent.context import BatchedDecoder
from videoseg_o3.agent.episode import _EpisodeRunner
from videoseg_o3.agent.measure import scripted_turns
from videoseg_o3.protocol import ProtocolConfig, initial_observation, parse_turn

from .conftest import random_video, shared_tiny_policy

FAMILIES = ["qwen3_vl", "qwen2_5_vl"]
RL = ProtocolConfig.preset("rl")


def _contexts(policy):
    """Three dialogues of different lengths and images: two first observations of different videos, and
    one that went on with a select and its follow-up observation (images mid-dialogue)."""
    runners = []
    for seed, (n, h, w), query in [(0, (12, 48, 64), "the cat"), (1, (9, 64, 40), "a dog that runs"),
                                   (2, (16, 40, 56), "it")]:
        runner = _EpisodeRunner(policy, random_video(n, h, w, seed=seed), query, RL, "kv")
        chunk, _, _ = runner.prepare(initial_observation(query, n, RL), 0)
        runner.prefill(chunk)
        runners.append(runner)
    third = runners[2]
    select = scripted_turns(16)[0]
    ids = policy.tokenizer.encode(select, add_special_tokens=False)
    third.ctx.decode(torch.tensor(ids))
    third.pending_stop = int(policy.tokenizer.convert_tokens_to_ids("<|im_end|>"))
    from videoseg_o3.protocol import followup_observation

    chunk, _, _ = third.prepare(followup_observation("it", 16, parse_turn(select), RL), 1)
    third.prefill(chunk)
    return [r.ctx for r in runners]


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_decoder_matches_each_dialogue_alone(family):
    policy = shared_tiny_policy(family)
    ctxs = _contexts(policy)
    assert len({len(c) for c in ctxs}) == 3
    assert len({int(c.rope_deltas.reshape(())) for c in ctxs}) > 1  # rows really need their own positions
    batched = [c.fork() for c in ctxs]
    alone = [c.fork() for c in ctxs]
    decoder = BatchedDecoder(policy)
    seg = policy.seg_token_id
    # each step: (rows, tokens); rows leave (step 2), rejoin in another order (step 3), and one is
    # released and decoded alone in between (its cache must come back intact)
    steps = [([0, 1, 2], [11, seg, 7]), ([0, 2], [seg, 5]), ([2, 1, 0], [9, 3, seg])]
    for rows, tokens in steps:
        outs = decoder.decode([batched[r] for r in rows], tokens)
        for r, token, out in zip(rows, tokens, outs):
            ref = alone[r].decode(torch.tensor([token]))
            torch.testing.assert_close(out.logits, ref.logits, **tol("kv_reuse_logits"))
            torch.testing.assert_close(out.hidden, ref.hidden, **tol("kv_reuse_logits"))
        if rows == [0, 2]:
            decoder.release([batched[1]])
            ref = alone[1].decode(torch.tensor([4]))
            own = batched[1].decode(torch.tensor([4]))
            torch.testing.assert_close(own.logits, ref.logits, **tol("kv_reuse_logits"))
    decoder.release(list(decoder.rows))
    for b, a in zip(batched, alone):
        assert torch.equal(b.input_ids, a.input_ids)
        assert b.cache.get_seq_length() == len(b) == len(a)


def _select(s: int, e: int, k: int) -> str:
    """A short select (no think block: not strict, but a usable action, so the episode goes on)."""
    return f'<select><VTG>{{"start": {s}, "end": {e}, "keyframe": {k}}}</VTG><RefSeg>[SEG]</RefSeg></select>'


def _scripts():
    """Per rollout: free from turn 0; a scripted select then free; two scripted selects then free."""
    return [None, [_select(2, 8, 5)], [_select(1, 9, 3), _select(4, 6, 5)]]


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_batched_greedy_equals_sequential(family):
    policy = shared_tiny_policy(family)
    videos = [random_video(12, 48, 64, seed=0), random_video(10, 64, 48, seed=1)]
    queries = ["the red ball", "a dog"]
    gen = GenerationConfig(max_new_tokens=40)  # a scripted select is < 40 tokens
    scripts = _scripts() * 2
    runs = {d: run_episodes(policy, videos, queries, protocol=RL, generation=gen, num_rollouts=3,
                            forced_turns_by_rollout=scripts, decoding=d) for d in ("batched", "sequential")}
    batched, sequential = runs["batched"], runs["sequential"]
    assert [t.num_turns for t in batched] == [t.num_turns for t in sequential]
    assert len({t.num_turns for t in batched}) > 1  # rollouts really were at different turns
    for a, b in zip(batched, sequential):
        assert torch.equal(a.input_ids, b.input_ids)
        assert torch.equal(a.response_mask, b.response_mask)
        assert [t.token_ids.tolist() for t in a.turns] == [t.token_ids.tolist() for t in b.turns]
        assert a.stop_reason == b.stop_reason
        assert a.decode_tokens == b.decode_tokens
        for ta, tb in zip(a.turns, b.turns):
            torch.testing.assert_close(ta.seg_embeddings, tb.seg_embeddings, **tol("kv_reuse_logits"))


@pytest.mark.slow
def test_batched_sampling_is_seeded_and_equals_sequential():
    policy = shared_tiny_policy("qwen3_vl")
    video = random_video(10, 48, 48)
    gen = GenerationConfig(max_new_tokens=40, do_sample=True, temperature=0.9, top_p=0.9, top_k=50, seed=3)
    scripts = [None, [_select(2, 8, 5)], None]
    run = lambda d: run_episodes(policy, [video], ["it"], protocol=RL, generation=gen, num_rollouts=3,  # noqa: E731
                                 forced_turns_by_rollout=scripts, decoding=d)
    first, again, sequential = run("batched"), run("batched"), run("sequential")
    tokens = lambda trajs: [[t.token_ids.tolist() for t in tr.turns] for tr in trajs]  # noqa: E731
    assert tokens(first) == tokens(again) == tokens(sequential)
    assert tokens(first)[0] != tokens(first)[2]  # rollouts sample with different generators


def test_bad_decoding_name():
    policy = shared_tiny_policy("qwen3_vl")
    with pytest.raises(ValueError, match=r"Invalid decoding \(fast\). Supported values are batched, sequential"):
        run_episodes(policy, [random_video(4, 32, 32)], ["q"], decoding="fast")
