"""The batched GRPO update forward and the once-per-batch reference scoring, on both tiny model families.

The batch is real: two prompts (different videos) x G = 2 teacher-forced rollouts of the tiny policy (one
with 1 turn, one with 2: different lengths, turn counts, keyframes and [SEG] counts), decoded by a tiny
SAM2, in one micro-batch. ``update_batching="group"`` runs the vision tower once over the distinct images
and the language model once over the right-padded rollouts; ``"rollout"`` is the unpadded per-rollout
loop it replaces.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from types import SimpleNamespace

import pytest
import torch

from tests.tolerances import tol
from tests.training.loss_cases import PROTOCOL, build_loss_models, loss_and_grads
from training.losses import (
    GRPOLossConfig,
    batch_hidden_states,
    behaviour_logps,
    compute_grpo_loss,
    distinct_images,
    reference_logps,
)
from training.rollout_batch import tiny_rollout_batch
from videoseg_o3.policy import SegPolicy
from videoseg_o3.segmenter import Sam2Segmenter

FAMILIES = ("qwen2_5_vl", "qwen3_vl")
NUM_FRAMES, HEIGHT, WIDTH = 8, 40, 56


@functools.lru_cache(maxsize=None)
def family_case(family: str) -> tuple[SegPolicy, SegPolicy, Sam2Segmenter, object]:
    """(policy, perturbed frozen reference, segmenter, batch) of one model family; the batch's advantages are
    set by hand (all non-zero) so every rollout's tokens carry policy gradient. Treat as read-only."""
    policy, ref, segmenter = build_loss_models(family)
    batch = tiny_rollout_batch(policy, segmenter, num_prompts=2, group_size=2, num_frames=NUM_FRAMES, height=HEIGHT,
                               width=WIDTH, protocol=PROTOCOL)
    batch = dataclasses.replace(batch, advantages=torch.tensor([1.0, -0.5, 0.75, -1.25]))
    lengths = [int(t.input_ids.numel()) for t in batch.trajectories]
    assert len(set(lengths)) > 1 and len({t.num_turns for t in batch.trajectories}) > 1  # the case is meaningful
    return policy, ref, segmenter, batch


# ---------------------------------------------------------------------------------------------- the forward
@pytest.mark.parametrize("family", FAMILIES)
def test_batched_logps_match_hugging_face_per_dialogue_forward(family) -> None:
    """Guards the padded batch's positions, padding mask and image placement: every sampled token's log-prob
    (temperature 0.9, fp32) from ONE padded forward over all four rollouts equals the one Hugging Face's own
    forward gives for that dialogue alone (its own position computation, its own vision-tower call, full
    logits). Left padding without a mask, 1-D or row-shifted positions, or images scattered into the wrong
    rows would all differ by far more than float rounding."""
    policy, _, _, batch = family_case(family)
    config = GRPOLossConfig(loss_impl="eager", update_batching="group")
    with torch.no_grad():
        batched = reference_logps(policy, batch, config)
        for i, traj in enumerate(batch.trajectories):
            policy.model.model.rope_deltas = None  # a fresh full forward, as Hugging Face runs one
            logits = policy.model(input_ids=traj.input_ids[None], pixel_values=traj.pixel_values,
                                  image_grid_thw=traj.image_grid_thw, mm_token_type_ids=traj.mm_token_type_ids[None]).logits[0]
            lp = torch.log_softmax(logits[:-1].float() / batch.temperature, -1).gather(1, traj.input_ids[1:, None])[:, 0]
            sampled = traj.response_mask[1:].bool()
            torch.testing.assert_close(batched[i][1:][sampled], lp[sampled], **tol("batched_update_fp32"))
            assert float(batched[i][1:][~sampled].abs().max()) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_batched_update_equals_per_rollout_loop(family) -> None:
    """Guards that batching changes nothing but speed: per-token (calibrated) log-probs, the loss, every metric
    and the gradient of every trainable parameter (language model, LM head, vision tower, projector, SAM2
    prompt encoder and mask decoder) are those of the per-rollout loop, with calibration, the KL to the
    reference and the auxiliary mask loss all on."""
    policy, ref, segmenter, batch = family_case(family)
    config = GRPOLossConfig(loss_impl="chunked", chunk_size=64)
    rollout = dataclasses.replace(config, update_batching="rollout")
    with torch.no_grad():
        for a, b in zip(behaviour_logps(policy, segmenter, batch, config), behaviour_logps(policy, segmenter, batch, rollout)):
            torch.testing.assert_close(a, b, **tol("batched_update_fp32"))
    loss, metrics, grads = loss_and_grads(policy, ref, segmenter, batch, config)
    loop_loss, loop_metrics, loop_grads = loss_and_grads(policy, ref, segmenter, batch, rollout)
    torch.testing.assert_close(loss, loop_loss, **tol("batched_update_fp32"))
    assert metrics.keys() == loop_metrics.keys() and metrics["num_seg"] == loop_metrics["num_seg"] > 0
    for key in metrics:
        torch.testing.assert_close(torch.tensor(metrics[key]), torch.tensor(loop_metrics[key]),
                                   **tol("batched_update_fp32"), msg=lambda m, key=key: f"metric {key}: {m}")
    atol, rtol = tol("batched_update_fp32_grad")["atol"], tol("batched_update_fp32_grad")["rtol"]
    bad = {n: float((grads[n] - loop_grads[n]).abs().max()) for n in loop_grads
           if not torch.allclose(grads[n], loop_grads[n], atol=atol, rtol=rtol)}
    assert not bad, f"{len(bad)}/{len(loop_grads)} gradients differ (worst: {dict(list(bad.items())[:5])})"
    for prefix in ("policy.model.model.visual", "policy.model.model.language_model", "segmenter.sam.sam_mask_decoder"):
        assert sum(float(g.abs().sum()) for n, g in loop_grads.items() if n.startswith(prefix)) > 0, prefix


@pytest.mark.parametrize("family", FAMILIES)
def test_vision_tower_runs_once_over_the_distinct_images(family) -> None:
    """Guards the image deduplication: the batched forward calls the vision tower once, on exactly the distinct
    images the rollouts' own records name (one per distinct (prompt, frame, pixel range): the rollouts of a
    prompt share their turn-0 frames, later turns add their keyframes), where the per-rollout loop calls it
    once per rollout on every image it shows."""
    policy, _, _, batch = family_case(family)
    calls: list[int] = []
    hook = policy.model.model.visual.register_forward_hook(lambda m, args, out: calls.append(int(args[0].shape[0])))
    try:
        with torch.no_grad():
            batch_hidden_states(policy, batch.trajectories, batching="group")
            grouped = list(calls)
            calls.clear()
            batch_hidden_states(policy, batch.trajectories, batching="rollout")
    finally:
        hook.remove()
    shown = [(batch.prompt_of(i), int(spec.index), (spec.min_pixels, spec.max_pixels, spec.sizing), tuple(grid))
             for i, traj in enumerate(batch.trajectories)
             for spec, grid in zip([s for turn in traj.turns for s in turn.frames], traj.image_grid_thw.tolist())]
    distinct = {(p, f, b): g for p, f, b, g in shown}
    patches = lambda grids: sum(t * h * w for t, h, w in grids)  # noqa: E731
    assert len(calls) == len(batch)
    assert calls == [patches(t.image_grid_thw.tolist()) for t in batch.trajectories]
    assert grouped == [patches(distinct.values())]
    assert grouped[0] < sum(calls) / 2


def test_distinct_images_merges_only_equal_content() -> None:
    """Guards the content comparison itself: equal patches under the same grid merge (also across dialogues);
    the same patches under another grid, or the rows of an image swapped (the same fingerprint, another
    image), stay distinct."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(4, 6, generator=gen)
    b = torch.randn(4, 6, generator=gen)
    swapped = a[[1, 0, 2, 3]]
    grid = [1, 2, 2]

    def traj(images):
        return SimpleNamespace(image_grid_thw=torch.tensor([g for g, _ in images], dtype=torch.long),
                               pixel_values=torch.cat([x for _, x in images]))

    first = traj([(grid, a), (grid, b), (grid, a.clone())])
    second = traj([([1, 4, 1], a), (grid, swapped), (grid, b.clone())])
    pixels, grids, which = distinct_images([first, second], "cpu")
    assert which == [0, 1, 0, 2, 3, 1]
    assert grids.tolist() == [grid, grid, [1, 4, 1], grid]
    torch.testing.assert_close(pixels, torch.cat([a, b, a, swapped]), atol=0.0, rtol=0.0)
    empty = SimpleNamespace(image_grid_thw=torch.zeros(0, 3, dtype=torch.long), pixel_values=None)
    assert distinct_images([empty], "cpu")[2] == []


def test_update_batching_error_names_the_field() -> None:
    """Guards the one-line config error."""
    with pytest.raises(ValueError, match="update_batching"):
        GRPOLossConfig(update_batching="token")


# ---------------------------------------------------------------------------------------------- frozen scores once
def test_stored_reference_logps_give_the_same_loss() -> None:
    """Guards the once-per-batch reference: the loss with ``batch.ref_logps`` stored by ``reference_logps`` (and no
    reference model passed at all) equals the loss that runs the reference forward itself, term by term, and
    the stored values survive ``select`` (the trainer's micro-batch cut)."""
    policy, ref, segmenter, batch = family_case("qwen3_vl")
    config = GRPOLossConfig(loss_impl="chunked", chunk_size=64, calibration=False, aux_mask_weight=0.0, beta=0.3)
    with torch.no_grad():
        live, live_metrics = compute_grpo_loss(policy, ref, segmenter, batch, config)
        stored = dataclasses.replace(batch, ref_logps=reference_logps(ref, batch, config))
        cached, cached_metrics = compute_grpo_loss(policy, None, segmenter, stored.select([1]), config)
        live_one, live_one_metrics = compute_grpo_loss(policy, ref, segmenter, batch.select([1]), config)
        whole, whole_metrics = compute_grpo_loss(policy, None, segmenter, stored, config)
    assert live_metrics["kl"] > 0
    torch.testing.assert_close(whole, live, **tol("loss_math"))
    torch.testing.assert_close(cached, live_one, **tol("loss_math"))
    for key in ("kl", "kl_loss"):
        assert whole_metrics[key] == pytest.approx(live_metrics[key], rel=1e-6)
        assert cached_metrics[key] == pytest.approx(live_one_metrics[key], rel=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("batching", ["group", "rollout"])
def test_reference_forward_runs_once_per_batch_over_three_iterations(batching) -> None:
    """Guards the trainer's update on one batch (``training.grpo.update_on_batch``) with num_iterations = 3 and two
    micro-batches: the frozen reference's language model runs once per micro-batch (2 forwards; scoring it
    inside every iteration's loss would make 6); the policy runs once per micro-batch and iteration (6), its
    behaviour log-probs for the clipped ratio being kept from the first iteration's forwards rather than
    scored by 2 more; and those kept log-probs are the behaviour policy's calibrated ones, as a separate
    ``behaviour_logps`` pass of the policy before any update scores them."""
    from training.config import GRPOConfig
    from training.distributed import DistInfo
    from training.grpo import loss_config, update_on_batch

    family_policy, family_ref, segmenter, batch = family_case("qwen3_vl")
    policy, ref = copy.deepcopy(family_policy), copy.deepcopy(family_ref)  # this test takes optimizer steps
    seg = copy.deepcopy(segmenter)
    batch = dataclasses.replace(batch)
    config = GRPOConfig(num_generations=2, per_device_train_batch_size=2, gradient_accumulation_steps=2, num_iterations=3,
                        beta=0.04, update_batching=batching, loss_impl="chunked", max_steps=1,
                        seg_loss_weight=0.0)  # the mask loss does not change the count
    lossc = loss_config(config)
    with torch.no_grad():
        expected_old = behaviour_logps(policy, seg, batch, lossc)
    params = [p for p in list(policy.parameters()) + list(seg.parameters()) if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    counts = {"ref": 0, "policy": 0}
    hooks = [model.model.model.language_model.register_forward_hook(
                 lambda m, a, o, key=key: counts.__setitem__(key, counts[key] + 1))
             for key, model in (("ref", ref), ("policy", policy))]
    try:
        sums, last = update_on_batch(policy, ref, seg, batch, optimizer, scheduler, params, config, lossc, DistInfo())
    finally:
        for hook in hooks:
            hook.remove()
    per_forward = 1 if batching == "group" else batch.group_size  # forwards per micro-batch of one group
    assert counts["ref"] == 2 * per_forward
    assert counts["policy"] == 3 * 2 * per_forward
    assert batch.ref_logps is not None and last["skipped"] == 0 and sums["kl"] > 0
    assert len(batch.old_logps) == len(expected_old) == len(batch)
    for kept, expected in zip(batch.old_logps, expected_old):
        torch.testing.assert_close(kept, expected, **tol("batched_update_fp32"))
