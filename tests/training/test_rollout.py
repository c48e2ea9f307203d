"""collect_rollouts on the tiny policy and the tiny SAM2 (random weights).

Guards: the RolloutBatch contract (prompt-major groups, [SEG] positions on sampled tokens, the keyframe
rule turn 0 -> N // 2 / later -> the previous select's keyframe, frame tables and ground truth), the
IoUs the rewards read (recomputed here through an independent path: SAM2's decode_frames on the raw
frames and a numpy IoU), ungated masks, and that a policy emitting garbage is scored, never raised.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tests.tiny_models import shared_tiny_policy
from training.rollout import collect_rollouts, rl_generation_config
from training.rollout_batch import RolloutBatch, RolloutPrompt, tiny_rollout_batch
from videoseg_o3.protocol import ProtocolConfig, parse_turn, turn0_frame_indices
from videoseg_o3.rewards import DEFAULT_REWARD_WEIGHTS
from videoseg_o3.segmenter import Sam2Segmenter, SegmenterConfig
from videoseg_o3.segmenter.model import NO_OBJECT_LOGIT

NUM_FRAMES = 12
# the RL preset with fewer turn-0 frames: every SAM2 encode and image token costs seconds on a loaded CPU
PROTOCOL = dataclasses.replace(ProtocolConfig.preset("rl"), turn0_temporal_frames=4, turn0_spatial_frames=3)


@pytest.fixture(scope="module")
def segmenter() -> Sam2Segmenter:
    torch.manual_seed(0)
    seg = Sam2Segmenter.from_config(SegmenterConfig(model_config="sam2_hiera_t", image_size=256), device="cpu")
    with torch.no_grad():  # random SAM2 says "no object" everywhere; the rollouts must not care (ungated)
        seg.sam.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(-10.0)
    return seg


@pytest.fixture(scope="module")
def batch(segmenter) -> RolloutBatch:
    return tiny_rollout_batch(shared_tiny_policy("qwen3_vl"), segmenter, num_prompts=2, group_size=3,
                              num_frames=NUM_FRAMES, seed=0, protocol=PROTOCOL)


def _np_iou(pred: np.ndarray, gt: np.ndarray, empty_is_one: bool) -> float:
    inter, union = np.logical_and(pred, gt).sum(), np.logical_or(pred, gt).sum()
    if union < 1:
        return 1.0 if empty_is_one else 0.0
    return inter / (union + 1e-6)


def test_batch_layout_and_keyframe_rule(batch):
    policy = shared_tiny_policy("qwen3_vl")
    assert len(batch) == 6 and batch.num_prompts == 2 and batch.group_size == 3
    assert [t.query for t in batch.trajectories] == ["the bright box 0"] * 3 + ["the bright box 1"] * 3
    assert [t.num_turns for t in batch.trajectories[:3]] == [1, 2, 3]  # rollout g selects g % 3 times
    spatial = turn0_frame_indices(NUM_FRAMES, PROTOCOL)[1]
    assert spatial == [0, 5, 11]
    for i, traj in enumerate(batch.trajectories):
        p = batch.prompt_of(i)
        assert batch.spatial_frames[p].tolist() == spatial
        pos = batch.seg_positions[i]
        assert bool((traj.input_ids[pos] == policy.seg_token_id).all())
        assert bool((traj.response_mask[pos] == 1).all())
        # the keyframe of each [SEG]: N // 2 at turn 0, else the keyframe the previous select chose
        expected = []
        for t, turn in enumerate(traj.turns):
            frame = NUM_FRAMES // 2 if t == 0 else parse_turn(traj.turns[t - 1].text).keyframe
            expected += [frame] * turn.seg_embeddings.shape[0]
        assert batch.seg_frames[i].tolist() == expected
        assert batch.frame_indices[p][batch.seg_frame_rows[i]].tolist() == expected
        assert batch.seg_keyframe_logits[i].shape == (len(expected), 64, 64)
        # odd rollouts end with two [SEG] in their last turn
        assert batch.seg_turns[i].tolist().count(traj.num_turns - 1) == (2 if i % 3 % 2 else 1)
    assert set(batch.rewards) == set(DEFAULT_REWARD_WEIGHTS)
    assert bool((batch.rewards["strict_format_cot"] == 1.0).all())  # scripted turns are well formed
    assert batch.rewards["step_format_cot"].tolist() == [1.0] * 6
    total = sum(batch.rewards[k] * w for k, w in batch.reward_weights.items())
    torch.testing.assert_close(batch.reward, total)
    # advantages recomputed by hand per group
    for p in range(2):
        r = batch.reward[3 * p:3 * p + 3].double()
        std = float(r.std())
        expected = (r - r.mean()) / (std + 1e-4) if float(r.max() - r.min()) > 0 else torch.zeros(3)
        torch.testing.assert_close(batch.advantages[3 * p:3 * p + 3].double(), expected, atol=1e-5, rtol=1e-5)
    assert len(batch.select([1]).trajectories) == 3 and batch.select([1]).trajectories[0] is batch.trajectories[3]


def test_ious_match_an_independent_decode(batch, segmenter):
    """Keyframe and video IoUs against SAM2 on the raw frames and a numpy IoU."""
    i, p = 4, 1  # the 2-turn rollout of the second prompt
    traj = batch.trajectories[i]
    video, masks = _tiny_data()[p]
    spatial = batch.spatial_frames[p].tolist()
    wanted = sorted(set(spatial) | set(batch.seg_frames[i].tolist()))
    feats = segmenter.encode_frames(video[wanted])  # the frozen encoder, run once on the raw frames
    at = {f: r for r, f in enumerate(wanted)}
    emb = batch.seg_embeddings(i)
    assert emb.shape[0] == batch.num_segs(i)
    with torch.no_grad():
        for t in range(traj.num_turns):
            mine = (batch.seg_turns[i] == t).nonzero().flatten().tolist()
            last = mine[-1]
            frame = int(batch.seg_frames[i][last])
            out = segmenter.decode_features(feats, emb[last:last + 1], frame_index=[at[frame]])
            # ungated: the object head says "no object", the logits are still the mask's own
            logits = _one_step(out.low_res_logits, masks.shape[1:])[0]
            assert float(out.object_score_logits[0]) < 0 and logits.max() > NO_OBJECT_LOGIT
            torch.testing.assert_close(batch.seg_keyframe_logits[i][last], out.low_res_logits[0], atol=1e-4, rtol=1e-4)
            expected = _np_iou(logits > 0, masks[frame].numpy(), empty_is_one=True)
            assert float(batch.iou_kf[i][t]) == pytest.approx(expected, abs=1e-4)
            # video IoU of the turn: mean over its [SEG] of the per-frame IoU on the spatial frames
            per_seg = []
            for j in mine:
                dec = segmenter.decode_features(feats, emb[j:j + 1].expand(len(spatial), -1),
                                                frame_index=[at[f] for f in spatial])
                pred = _one_step(dec.low_res_logits, masks.shape[1:]) > 0
                per_seg.append([_np_iou(m, g, True) for m, g in zip(pred, masks[spatial].numpy())])
            np.testing.assert_allclose(batch.iou_vid[i][t].numpy(), np.mean(per_seg, axis=0), atol=1e-4)
    assert batch.trajectories[i].num_turns == 2


def _one_step(low_res_logits: torch.Tensor, size) -> np.ndarray:
    """The rewards' rule (released training code): the decoder's low-resolution logits, ungated, resized to
    the ground truth's size in ONE bilinear step (inference's two-step path through SAM2's input size differs
    along mask edges)."""
    up = torch.nn.functional.interpolate(low_res_logits[:, None].float(), size=tuple(int(s) for s in size),
                                         mode="bilinear", align_corners=False)
    return up[:, 0].numpy()


def _tiny_data():
    """The frames and masks tiny_rollout_batch(seed=0, 48x64) builds (its documented recipe)."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for p in range(2):
        frames = torch.randint(0, 256, (NUM_FRAMES, 48, 64, 3), generator=gen, dtype=torch.uint8)
        masks = torch.zeros(NUM_FRAMES, 48, 64, dtype=torch.bool)
        masks[NUM_FRAMES // 4:(3 * NUM_FRAMES) // 4 + 1, 12:24 + p, 16:32] = True
        frames[masks] = 230
        out.append((frames, masks))
    return out


def test_garbage_policy_is_scored_not_raised(segmenter):
    """The random tiny policy never writes the protocol: every rollout gets the format penalty."""
    from videoseg_o3.io.array_reader import ArrayReader

    frames, masks = _tiny_data()[0]
    prompt = RolloutPrompt(ArrayReader(frames), "the bright box", masks, name="garbage")
    batch = collect_rollouts(shared_tiny_policy("qwen2_5_vl"), segmenter, [prompt], group_size=2,
                             generation=rl_generation_config(max_new_tokens=6), seed=1, protocol=PROTOCOL)
    assert len(batch) == 2
    assert batch.rewards["strict_format_cot"].tolist() == [-1.0, -1.0]
    assert bool(torch.isfinite(batch.reward).all()) and bool(torch.isfinite(batch.advantages).all())
    assert all(t.stop_reason == "invalid" for t in batch.trajectories)


def test_compat_mode_and_weights(segmenter):
    weights = {"strict_format_cot": 2.0, "lr_vtg_keyframe": 1.0}
    batch = tiny_rollout_batch(shared_tiny_policy("qwen3_vl"), segmenter, num_prompts=1, group_size=2,
                               num_frames=NUM_FRAMES, reward_mode="compat", reward_weights=weights,
                               decoding="sequential", protocol=PROTOCOL)
    assert batch.reward_mode == "compat" and set(batch.rewards) == set(weights)
    torch.testing.assert_close(batch.reward, 2.0 * batch.rewards["strict_format_cot"] + batch.rewards["lr_vtg_keyframe"])


def test_bad_inputs(segmenter):
    from videoseg_o3.io.array_reader import ArrayReader

    frames, masks = _tiny_data()[0]
    with pytest.raises(ValueError, match="3 masks for a video of 12 frames"):
        RolloutPrompt(ArrayReader(frames), "q", masks[:3])
    with pytest.raises(ValueError, match="Invalid query"):
        RolloutPrompt(ArrayReader(frames), " ", masks)
    with pytest.raises(ValueError, match="Invalid prompts"):
        collect_rollouts(shared_tiny_policy("qwen3_vl"), segmenter, [])
    with pytest.raises(ValueError, match="Invalid reward mode"):
        collect_rollouts(shared_tiny_policy("qwen3_vl"), segmenter, [RolloutPrompt(ArrayReader(frames), "q", masks)],
                         reward_mode="exact")


class RuleSegmenter(torch.nn.Module):
    """A stand-in for SAM2 whose mask is a known function of the [SEG] embedding: the columns left of
    ``frac(7 * |sum(e)|)`` of the width. It makes the IoUs computable by hand, and different for each [SEG]."""

    image_size = 256

    def encode_frames(self, frames):
        from videoseg_o3.segmenter.model import FrameFeatures

        return FrameFeatures(torch.zeros(frames.shape[0], 1, 1, 1), [], (int(frames.shape[1]), int(frames.shape[2])))

    @staticmethod
    def fraction(emb: torch.Tensor) -> torch.Tensor:
        return torch.frac(emb.float().sum(-1).abs() * 7)

    def decode_features(self, features, emb, frame_index=None):
        from videoseg_o3.segmenter.model import SegmenterOutput

        cols = (torch.arange(64) + 0.5) / 64
        logits = torch.where(cols[None, None, :] < self.fraction(emb)[:, None, None], 4.0, -4.0).expand(-1, 64, 64)
        m = emb.shape[0]
        return SegmenterOutput(logits.clone(), torch.ones(m), -torch.ones(m), features.frame_size)


def test_iou_aggregation_per_turn_with_a_rule_segmenter():
    """IoU_kf from each turn's LAST [SEG] and IoU_vid averaged over the turn's [SEG], by hand."""
    seg = RuleSegmenter()
    batch = tiny_rollout_batch(shared_tiny_policy("qwen3_vl"), seg, num_prompts=1, group_size=2,
                               num_frames=NUM_FRAMES, protocol=PROTOCOL)
    _, masks = _tiny_data()[0]
    spatial = batch.spatial_frames[0].tolist()
    i = 1  # select, then an answer holding two [SEG]
    emb = batch.seg_embeddings(i)
    fracs = RuleSegmenter.fraction(emb).tolist()
    assert len(fracs) == 3 and len({round(f, 3) for f in fracs[1:]}) == 2  # the two final [SEG] differ

    def pred(frac):  # the rule's mask at video size: a column is set when its centre (in 64ths) is left of frac
        cols = (np.arange(64) + 0.5) / 64 < frac
        return np.broadcast_to(cols[None, :], (48, 64))

    turns = batch.seg_turns[i].tolist()
    for t in range(2):
        mine = [j for j, u in enumerate(turns) if u == t]
        frame = int(batch.seg_frames[i][mine[-1]])
        expected_kf = _np_iou(pred(fracs[mine[-1]]), masks[frame].numpy(), True)
        assert float(batch.iou_kf[i][t]) == pytest.approx(expected_kf, abs=1e-6)
        expected_vid = np.mean([[_np_iou(pred(fracs[j]), masks[f].numpy(), True) for f in spatial] for j in mine], 0)
        np.testing.assert_allclose(batch.iou_vid[i][t].numpy(), expected_vid, atol=1e-6)


def test_batch_holds_no_inference_tensors(batch):
    """collect_rollouts returns ordinary tensors (the episode loop runs under torch.inference_mode, and
    autograd refuses to save inference tensors), so any caller can train on the batch as it comes."""
    tensors = []
    for traj in batch.trajectories:
        tensors += [getattr(traj, n) for n in ("input_ids", "response_mask", "mm_token_type_ids", "image_grid_thw",
                                              "pixel_values")]
    for name in ("seg_positions", "seg_turns", "seg_frames", "seg_frame_rows", "seg_keyframe_logits",
                 "spatial_frame_rows", "gt_masks"):
        tensors += list(getattr(batch, name))
    for features in batch.features:
        tensors += [features.image_embed, *features.high_res]
    assert tensors and not [t for t in tensors if isinstance(t, torch.Tensor) and t.is_inference()]
