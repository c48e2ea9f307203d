"""Small real GRPO batches for the loss tests, built straight from the agent's episodes.

A tiny random policy never writes a well-formed turn, so turns are teacher-forced; the policy still
runs every token, so positions, images, hidden states and [SEG] embeddings are real. The protocol is
shrunk (2 + 2 small frames at turn 0, 1 follow-up frame) so a loss with backward takes seconds.
"""

from __future__ import annotations

import copy
import dataclasses
import functools

import torch

from training.rollout_batch import RolloutBatch
from videoseg_o3.agent import GenerationConfig, run_episode
from videoseg_o3.io.array_reader import ArrayReader
from videoseg_o3.policy import SegPolicy
from videoseg_o3.protocol import ProtocolConfig, format_turn
from videoseg_o3.segmenter import Sam2Segmenter, SegmenterConfig

NUM_FRAMES, HEIGHT, WIDTH = 8, 40, 56
PROTOCOL = ProtocolConfig(
    turn0_temporal_frames=2, turn0_spatial_frames=2, followup_temporal_frames=1,
    turn0_temporal_max_pixels=4 * 28 * 28, turn0_spatial_max_pixels=4 * 28 * 28, followup_temporal_max_pixels=4 * 28 * 28,
    keyframe_max_pixels=4 * 28 * 28, max_turns=2,
)
STEPS = ("a", "b", "c")
HYPERNETWORK_GAIN = 40.0


def scripts() -> list[list[str]]:
    """Two rollouts of one prompt: (select, answer with one [SEG] each) and (answer with two [SEG]s)."""
    return [
        [format_turn("select", STEPS, "go", 1, 5, 3), format_turn("answer", STEPS, "ok", 2, 4, 3)],
        [format_turn("answer", STEPS, "ok", 1, 6, 2).replace("</RefSeg>", " [SEG]</RefSeg>")],
    ]


def build_loss_models(family: str = "qwen3_vl") -> tuple[SegPolicy, SegPolicy, Sam2Segmenter]:
    """(policy, reference policy, segmenter) of one model family, freshly built.

    The reference is the policy with perturbed language-model weights, so the KL term is not zero; the
    segmenter's mask logits are made prompt-sensitive (``HYPERNETWORK_GAIN``).
    """
    policy = SegPolicy.tiny(family, seed=0)
    ref = copy.deepcopy(policy)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in ref.model.model.language_model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    ref.requires_grad_(False)
    torch.manual_seed(0)
    segmenter = Sam2Segmenter.from_config(SegmenterConfig(model_config="sam2_hiera_t", image_size=256), device="cpu")
    with torch.no_grad():
        # Random SAM2 weights give near-constant logits (|z| < 0.25) that hardly depend on the prompt, so
        # tests could not tell one [SEG]'s mask from another's: scale the mask hypernetworks' output.
        for mlp in segmenter.sam.sam_mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(HYPERNETWORK_GAIN)
    return policy, ref, segmenter


@functools.lru_cache(maxsize=None)
def loss_models() -> tuple[SegPolicy, SegPolicy, Sam2Segmenter]:
    """(policy, reference policy, segmenter) of the tiny Qwen3-VL, private to the loss tests (they put
    gradients on them); see :func:`build_loss_models`."""
    return build_loss_models("qwen3_vl")


def trainable_params(policy: SegPolicy, segmenter: Sam2Segmenter) -> dict[str, torch.nn.Parameter]:
    """Every trainable parameter of the policy and the segmenter, by a prefixed name."""
    named = {f"policy.{n}": p for n, p in policy.named_parameters() if p.requires_grad}
    named.update({f"segmenter.{n}": p for n, p in segmenter.named_parameters() if p.requires_grad})
    return named


def loss_and_grads(policy, ref, segmenter, batch, config):
    """``(loss, metrics, {name: gradient})`` of ``compute_grpo_loss``; gradients are cleared before and after."""
    from training.losses import compute_grpo_loss

    params = trainable_params(policy, segmenter)
    for p in params.values():
        p.grad = None
    loss, metrics = compute_grpo_loss(policy, ref, segmenter, batch, config)
    loss.backward()
    grads = {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in params.items()}
    for p in params.values():
        p.grad = None
    return loss.detach(), metrics, grads


def loss_batch() -> RolloutBatch:
    """One prompt, G = 2 rollouts of different lengths and [SEG] counts (2 turns x 1 [SEG]; 1 turn x 2 [SEG]),
    advantages (+1, -1) and a temperature of 0.9. Treat as read-only (use ``dataclasses.replace``)."""
    policy, _, segmenter = loss_models()
    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (NUM_FRAMES, HEIGHT, WIDTH, 3), generator=gen, dtype=torch.uint8)
    gt = torch.zeros(NUM_FRAMES, HEIGHT, WIDTH, dtype=torch.bool)
    gt[1:7, 10:30, 12:40] = True
    video = ArrayReader(frames)
    trajectories = [run_episode(policy, video, "the box", protocol=PROTOCOL, generation=GenerationConfig(128),
                                forced_turns=s) for s in scripts()]
    positions, turns, seg_frames = [], [], []
    for traj in trajectories:
        positions.append(torch.nonzero((traj.input_ids == policy.seg_token_id) & traj.response_mask.bool()).flatten())
        turns.append(torch.tensor([t.index for t in traj.turns for _ in range(t.seg_embeddings.shape[0])], dtype=torch.long))
        seg_frames.append(torch.tensor([t.decode_frame(NUM_FRAMES) for t in traj.turns
                                        for _ in range(t.seg_embeddings.shape[0])], dtype=torch.long))
    spatial = torch.tensor([int(s.index) for s in trajectories[0].turns[0].frames if s.role == "spatial"], dtype=torch.long)
    table = torch.unique(torch.cat([spatial, *seg_frames]))
    row = {int(f): r for r, f in enumerate(table.tolist())}
    features = segmenter.encode_frames(frames[table])
    frame_rows = [torch.tensor([row[int(f)] for f in fr], dtype=torch.long) for fr in seg_frames]
    with torch.no_grad():
        keyframe_logits = [segmenter.decode_features(features, torch.cat([t.seg_embeddings for t in traj.turns]),
                                                     frame_index=r).low_res_logits
                           for traj, r in zip(trajectories, frame_rows)]
    advantages = torch.tensor([1.0, -1.0])
    return RolloutBatch(
        group_size=2, trajectories=trajectories, seg_positions=positions, seg_turns=turns, seg_frames=seg_frames,
        seg_frame_rows=frame_rows, spatial_frames=[spatial],
        spatial_frame_rows=[torch.tensor([row[int(f)] for f in spatial], dtype=torch.long)],
        seg_keyframe_logits=keyframe_logits, frame_indices=[table], features=[features], gt_masks=[gt[table]],
        rewards={"total": advantages.clone()}, reward_weights={"total": 1.0}, reward=advantages.clone(),
        advantages=advantages, temperature=0.9,
    )


def compact_vocab_copy(policy: SegPolicy, batch: RolloutBatch, extra_rows: int = 200) -> tuple[SegPolicy, RolloutBatch]:
    """The same policy and batch over a small vocabulary, for the Triton path under the CPU interpreter.

    The interpreter walks the vocabulary tile by tile in Python (about 5 minutes for 8 tokens over
    Qwen's 151,670 rows), so the Triton case keeps only the ids the dialogues use, the special ids the
    model reads, and ``extra_rows`` other rows (so the softmax still has mass off the targets). Ids are
    renumbered in the embedding (tied with the LM head), the config and the trajectories; the
    transformer itself is untouched, so hidden states are the original model's exactly.
    """
    model = policy.model
    config = model.config
    special = [config.image_token_id, config.video_token_id, config.vision_start_token_id, config.vision_end_token_id,
               policy.seg_token_id]
    used = torch.cat([t.input_ids for t in batch.trajectories] + [torch.tensor(special), torch.arange(extra_rows)])
    keep = torch.unique(used)
    new_id = torch.full((model.get_input_embeddings().weight.shape[0],), -1, dtype=torch.long)
    new_id[keep] = torch.arange(keep.numel())
    small = copy.deepcopy(policy)
    table = torch.nn.Embedding(keep.numel(), policy.hidden_size)
    with torch.no_grad():
        table.weight.copy_(model.get_input_embeddings().weight[keep])
    small.model.set_input_embeddings(table)
    small.model.lm_head.weight = table.weight  # tied, as in the tiny model
    for name in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
        setattr(small.model.config, name, int(new_id[getattr(config, name)]))
    small.seg_token_id = int(new_id[policy.seg_token_id])
    trajectories = [dataclasses.replace(t, input_ids=new_id[t.input_ids]) for t in batch.trajectories]
    return small, dataclasses.replace(batch, trajectories=trajectories)
