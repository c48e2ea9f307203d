"""The GRPO loss on the tiny model: scoring, paths, calibration, masking, KL, clipping, non-finite losses.

The gradient comparisons run a full backward (policy, projector, SAM2 decoder) twice or more: marked slow.

The batch (``loss_cases.loss_batch``) is real: two teacher-forced multi-turn rollouts of the tiny Qwen3-VL
policy with images, [SEG] tokens in several turns (one turn with two), decoded by a tiny SAM2.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from kernels.seg_calibration import seg_calibration_ref
from tests.tolerances import tol
from tests.training.loss_cases import compact_vocab_copy, loss_and_grads, loss_batch, loss_models, trainable_params
from training import losses
from training.losses import GRPOLossConfig, behaviour_logps, compute_grpo_loss, dialogue_hidden_states, mask_bce_dice

NO_AUX = dict(aux_mask_weight=0.0)
losses_batch_hidden_states = losses.batch_hidden_states  # the unpatched function, for the capturing wrapper


def _assert_grads_close(actual: dict, expected: dict, key: str) -> None:
    atol, rtol = tol(key)["atol"], tol(key)["rtol"]
    bad = [n for n in expected if not torch.allclose(actual[n], expected[n], atol=atol, rtol=rtol)]
    worst = {n: float((actual[n] - expected[n]).abs().max()) for n in bad[:5]}
    assert not bad, f"{len(bad)}/{len(expected)} gradients differ beyond {key} (worst: {worst})"


def _module_grad_norm(grads: dict, prefix: str) -> float:
    return sum(float(g.abs().sum()) for n, g in grads.items() if n.startswith(prefix))


# ---------------------------------------------------------------------------------------------- scoring
def test_training_forward_reproduces_rollout_seg_states() -> None:
    """Guards the re-scoring forward: one full forward over the sampled ids with the agent's 3-D M-RoPE
    positions and the trajectory's images reproduces the hidden states the rollout saw at every [SEG]
    (computed there chunk by chunk on a KV cache). 1-D positions or missing images would not."""
    policy, _, _ = loss_models()
    batch = loss_batch()
    with torch.no_grad():
        for i, traj in enumerate(batch.trajectories):
            hidden = dialogue_hidden_states(policy, traj)
            rollout = torch.cat([t.seg_hidden for t in traj.turns])
            torch.testing.assert_close(hidden[batch.seg_positions[i]], rollout, **tol("kv_reuse_logits"))


def test_loss_matches_independent_full_logits_computation() -> None:
    """Guards what is scored and how (no calibration, no mask loss): the log-prob of each *sampled* token
    (response_mask 1, shifted by one) at the sampling temperature 0.9, k3 KL to the reference at beta 0.04,
    seq-mean-token-mean. The expectation comes from Hugging Face's own forward (its logits, its position
    computation) and the formula written out here."""
    policy, ref, segmenter = loss_models()
    batch = loss_batch()
    config = GRPOLossConfig(loss_impl="eager", calibration=False, **NO_AUX)
    with torch.no_grad():
        loss, metrics = compute_grpo_loss(policy, ref, segmenter, batch, config)
        seq_losses = []
        for i, traj in enumerate(batch.trajectories):
            logps = []
            for model in (policy.model, ref.model):
                model.model.rope_deltas = None  # a fresh full forward, as Hugging Face runs one
                logits = model(input_ids=traj.input_ids[None], pixel_values=traj.pixel_values,
                               image_grid_thw=traj.image_grid_thw, mm_token_type_ids=traj.mm_token_type_ids[None]).logits[0]
                logps.append(torch.log_softmax(logits[:-1].float() / 0.9, -1).gather(1, traj.input_ids[1:, None])[:, 0])
            lp, lp_ref = logps
            sampled = traj.response_mask[1:].bool()
            kl = torch.exp(lp_ref - lp) - (lp_ref - lp) - 1
            per_token = -batch.advantages[i] * 1.0 + 0.04 * kl  # ratio exp(lp - sg(lp)) = 1
            seq_losses.append(per_token[sampled].mean())
        expected = torch.stack(seq_losses).mean()
    torch.testing.assert_close(loss, expected, **tol("chunked_fp32"))
    assert metrics["num_loss_tokens"] == sum(int(t.response_mask[1:].sum()) for t in batch.trajectories)
    assert metrics["loss_nonfinite"] == 0.0 and metrics["kl"] > 0


# ---------------------------------------------------------------------------------------------- three paths
@pytest.fixture(scope="module")
def eager_full():
    policy, ref, segmenter = loss_models()
    batch = loss_batch()
    return loss_and_grads(policy, ref, segmenter, batch, GRPOLossConfig(loss_impl="eager"))


@pytest.mark.slow
def test_chunked_equals_eager_on_tiny_model(eager_full) -> None:
    """Guards that the chunked LM-head path (no tokens x vocab logits) gives the eager loss and the same
    gradients on every trainable parameter (policy incl. LM head and vision tower, projector, SAM2 prompt
    encoder and mask decoder), with calibration, KL and the mask loss all on."""
    policy, ref, segmenter = loss_models()
    loss, metrics, grads = loss_and_grads(policy, ref, segmenter, loss_batch(), GRPOLossConfig(loss_impl="chunked", chunk_size=64))
    eager_loss, eager_metrics, eager_grads = eager_full
    torch.testing.assert_close(loss, eager_loss, **tol("chunked_fp32"))
    _assert_grads_close(grads, eager_grads, "chunked_fp32_grad")
    assert _module_grad_norm(eager_grads, "segmenter.sam.sam_mask_decoder") > 0
    assert metrics["entropy"] > 0 and metrics["num_seg"] == 4


@pytest.mark.triton
@pytest.mark.slow
def test_three_paths_agree_on_compact_vocabulary() -> None:
    """Guards eager == chunked == Triton (loss and every gradient) through the whole GRPO loss.

    Triton runs under its CPU interpreter here, which cannot walk Qwen's 151,670-row vocabulary in test
    time, so this case uses the same policy over a compact vocabulary (``compact_vocab_copy``: the same
    transformer, only the rows the dialogues use plus 200 more).
    """
    policy, ref, segmenter = loss_models()
    small, batch = compact_vocab_copy(policy, loss_batch())
    small_ref, _ = compact_vocab_copy(ref, loss_batch())
    small_ref.requires_grad_(False)
    results = {impl: loss_and_grads(small, small_ref, segmenter, batch, GRPOLossConfig(loss_impl=impl, chunk_size=64))
               for impl in ("eager", "chunked", "triton")}
    eager_loss, _, eager_grads = results["eager"]
    for impl, key in (("chunked", "chunked_fp32"), ("triton", "triton_fp32")):
        loss, _, grads = results[impl]
        torch.testing.assert_close(loss, eager_loss, **tol(key))
        _assert_grads_close(grads, eager_grads, f"{key}_grad")
    head = next(n for n, p in trainable_params(small, segmenter).items() if p is small.model.get_output_embeddings().weight)
    assert float(eager_grads[head].abs().sum()) > 0  # the LM head (tied to the embeddings) is trained


# ---------------------------------------------------------------------------------------------- calibration
@pytest.mark.slow
def test_calibration_gradient_reaches_decoder_and_projector_through_seg_term() -> None:
    """Guards the SEG-aware calibration: with the mask loss and KL off, the only path into SAM2's decoder and
    the projector is the bonus m at each sampled [SEG], weighted like that token's policy-gradient term:
    d loss / d m_k = -A_i / (sampled tokens of rollout i) / (rollouts) (ratio 1). The expected gradients
    come from decoding the [SEG]s here (policy.seg_embeddings + decode_features + the torch calibration
    reference); with calibration off they are exactly zero."""
    policy, ref, segmenter = loss_models()
    batch = loss_batch()
    config = GRPOLossConfig(loss_impl="chunked", beta=0.0, **NO_AUX)
    _, metrics, grads = loss_and_grads(policy, ref, segmenter, batch, config)
    assert metrics["num_seg"] == 4

    params = trainable_params(policy, segmenter)
    weighted = []
    for i, traj in enumerate(batch.trajectories):
        hidden = dialogue_hidden_states(policy, traj)
        emb = policy.seg_embeddings(hidden, torch.where(traj.response_mask.bool(), traj.input_ids, -1))
        z = segmenter.decode_features(batch.features[0], emb, frame_index=batch.seg_frame_rows[i]).low_res_logits
        m = seg_calibration_ref(z, batch.seg_keyframe_logits[i])
        weight = -batch.advantages[i] / int(traj.response_mask[1:].sum()) / len(batch)
        weighted.append(weight * m.sum())
    torch.stack(weighted).sum().backward()
    for prefix in ("segmenter.sam.sam_mask_decoder", "segmenter.sam.sam_prompt_encoder", "policy.projector"):
        names = [n for n in params if n.startswith(prefix)]
        expected = {n: params[n].grad if params[n].grad is not None else torch.zeros_like(params[n]) for n in names}
        assert _module_grad_norm(expected, prefix) > 0
        _assert_grads_close({n: grads[n] for n in names}, expected, "segmenter_fp32")
    for p in params.values():
        p.grad = None

    _, off_metrics, off = loss_and_grads(policy, ref, segmenter, batch, dataclasses.replace(config, calibration=False))
    for prefix in ("segmenter.", "policy.projector"):
        assert _module_grad_norm(off, prefix) == 0.0, f"{prefix} got gradient with calibration off"
    assert "calibration_m" not in off_metrics


@pytest.mark.slow
def test_kl_term_ignores_the_bonus() -> None:
    """Guards that m enters the policy-gradient term only: with zero advantages the loss is beta x KL, and it
    is the same with calibration on or off (a KL on lp + m would differ by about exp(-m) + m - 1 per [SEG]);
    the decoder gets no gradient."""
    policy, ref, segmenter = loss_models()
    batch = dataclasses.replace(loss_batch(), advantages=torch.zeros(2))
    config = GRPOLossConfig(loss_impl="chunked", beta=0.5, **NO_AUX)
    on_loss, on_metrics, on = loss_and_grads(policy, ref, segmenter, batch, config)
    off_loss, _, _ = loss_and_grads(policy, ref, segmenter, batch, dataclasses.replace(config, calibration=False))
    assert on_metrics["calibration_m"] < -0.1  # the bonus is far from 0, so a KL on lp + m would show
    torch.testing.assert_close(on_loss, off_loss, **tol("loss_math"))
    torch.testing.assert_close(on_loss, torch.tensor(on_metrics["kl_loss"]), **tol("loss_math"))
    assert _module_grad_norm(on, "segmenter.") == 0.0


# ---------------------------------------------------------------------------------------------- masking
@pytest.mark.parametrize("batching", ["group", "rollout"])
def test_observation_and_image_tokens_get_zero_gradient(monkeypatch, batching) -> None:
    """Guards the response mask: the loss's gradient with respect to the hidden state at a position whose next
    token is a prompt, observation or image token (response_mask 0) is exactly zero, while sampled
    tokens' positions get gradient. Calibration and the mask loss are off (they read [SEG] hidden states).
    Both update forwards (one padded batch, one forward per rollout)."""
    policy, ref, segmenter = loss_models()
    batch = loss_batch()
    captured: list[torch.Tensor] = []

    def capture(p, trajectories, **kwargs):
        hidden = losses_batch_hidden_states(p, trajectories, **kwargs)
        if p is policy:
            for h in hidden:
                h.retain_grad()
            captured.extend(hidden)
        return hidden

    monkeypatch.setattr(losses, "batch_hidden_states", capture)
    config = GRPOLossConfig(loss_impl="chunked", calibration=False, update_batching=batching, **NO_AUX)
    loss, _ = compute_grpo_loss(policy, ref, segmenter, batch, config)
    loss.backward()
    for p in trainable_params(policy, segmenter).values():
        p.grad = None
    assert len(captured) == len(batch)
    for traj, h in zip(batch.trajectories, captured):
        next_sampled = traj.response_mask[1:].bool()
        grad = h.grad[:-1].abs().sum(-1)
        images_next = traj.mm_token_type_ids[1:].bool()
        assert images_next.sum() > 0 and (~next_sampled).sum() > next_sampled.sum()  # the case is meaningful
        assert float(grad[~next_sampled].max()) == 0.0
        assert float(grad[images_next].max()) == 0.0
        assert bool((grad[next_sampled] > 0).all())


# ---------------------------------------------------------------------------------------------- mask loss
def test_aux_mask_loss_pairs_masks_as_released() -> None:
    """Guards the auxiliary loss end to end: 0.2 x (BCE + Dice) over every [SEG] x spatial frame, plus BCE + Dice
    of the last [SEG] of each turn on its keyframe, against ground truth at the video's resolution, from
    the policy forward through the projector and SAM2 (the pairing itself, on masks that differ a lot,
    is pinned down by test_losses_aux.py)."""
    policy, ref, segmenter = loss_models()
    batch = dataclasses.replace(loss_batch(), advantages=torch.zeros(2))
    config = GRPOLossConfig(loss_impl="chunked", beta=0.0, calibration=False)
    with torch.no_grad():
        loss, metrics = compute_grpo_loss(policy, ref, segmenter, batch, config)
        vid_b, vid_d, kf_b, kf_d = [], [], [], []
        gt = batch.gt_masks[0]
        spatial_rows = batch.spatial_frame_rows[0]
        for i, traj in enumerate(batch.trajectories):
            hidden = dialogue_hidden_states(policy, traj)
            emb = policy.seg_embeddings(hidden, torch.where(traj.response_mask.bool(), traj.input_ids, -1))
            for k in range(emb.shape[0]):
                sp = segmenter.decode_features(batch.features[0], emb[k:k + 1].expand(len(spatial_rows), -1),
                                               frame_index=spatial_rows).low_res_logits
                b, d = mask_bce_dice(sp, gt[spatial_rows], reduction="none")
                vid_b.append(b)
                vid_d.append(d)
            last_of_turn = {int(t): k for k, t in enumerate(batch.seg_turns[i])}  # later [SEG]s overwrite earlier ones
            for k in last_of_turn.values():
                row = batch.seg_frame_rows[i][k:k + 1]
                kf = segmenter.decode_features(batch.features[0], emb[k:k + 1], frame_index=row).low_res_logits
                b, d = mask_bce_dice(kf, gt[row])
                kf_b.append(b)
                kf_d.append(d)
        assert len(kf_b) == 3 and len(vid_b) == 4
        expected = {"mask_vid_bce": torch.cat(vid_b).mean(), "mask_vid_dice": torch.cat(vid_d).mean(),
                    "mask_kf_bce": torch.stack(kf_b).mean(), "mask_kf_dice": torch.stack(kf_d).mean()}
    total = sum(expected.values())
    for name, value in expected.items():
        torch.testing.assert_close(torch.tensor(metrics[name]), value, **tol("segmenter_fp32"))
    # policy-gradient term: -A = 0 and no KL, so the loss is the auxiliary term alone
    torch.testing.assert_close(loss, 0.2 * total, **tol("segmenter_fp32"))
    torch.testing.assert_close(torch.tensor(metrics["aux_mask_loss"]), total, **tol("segmenter_fp32"))


# ---------------------------------------------------------------------------------------------- ratio, robustness
def test_behaviour_logps_give_ratio_one_and_clipping_reacts() -> None:
    """Guards the clipped ratio with a stored behaviour policy: behaviour_logps (calibrated, scored like the
    loss) make every ratio 1 (no clipping, loss equal to the on-policy loss); shifting them by log 1.5 on
    the positive-advantage rollout clips its tokens (clip_high 0.28)."""
    policy, ref, segmenter = loss_models()
    batch = loss_batch()
    config = GRPOLossConfig(loss_impl="chunked", beta=0.0, clip_high=0.28, **NO_AUX)
    with torch.no_grad():
        on_policy, _ = compute_grpo_loss(policy, ref, segmenter, batch, config)
        old = behaviour_logps(policy, segmenter, batch, config)
        assert [o.shape for o in old] == [t.input_ids.shape for t in batch.trajectories]
        assert all(float(o[t.response_mask == 0].abs().max()) == 0.0 for o, t in zip(old, batch.trajectories))
        reused, metrics = compute_grpo_loss(policy, ref, segmenter, dataclasses.replace(batch, old_logps=old), config)
        torch.testing.assert_close(reused, on_policy, **tol("chunked_fp32"))
        assert metrics["clip_frac"] == 0.0
        # the bonus sits exactly at the sampled [SEG] tokens' entries
        plain = behaviour_logps(policy, segmenter, batch, dataclasses.replace(config, calibration=False))
        for i, (o, q) in enumerate(zip(old, plain)):
            diff = o - q
            assert torch.equal(torch.nonzero(diff).flatten(), batch.seg_positions[i])
            assert bool((diff[batch.seg_positions[i]] < 0).all())  # m is a log-likelihood
        shifted = [old[0] - torch.log(torch.tensor(1.5)) * batch.trajectories[0].response_mask, old[1]]
        _, clipped = compute_grpo_loss(policy, ref, segmenter, dataclasses.replace(batch, old_logps=shifted), config)
    share = int(batch.trajectories[0].response_mask[1:].sum()) / sum(int(t.response_mask[1:].sum()) for t in batch.trajectories)
    assert clipped["clip_frac"] == pytest.approx(share)


def test_nonfinite_loss_is_reported() -> None:
    """Guards the trainer's skip signal: a NaN advantage makes the loss non-finite and the metrics say so."""
    policy, ref, segmenter = loss_models()
    batch = dataclasses.replace(loss_batch(), advantages=torch.tensor([float("nan"), 1.0]))
    with torch.no_grad():
        loss, metrics = compute_grpo_loss(policy, ref, segmenter, batch, GRPOLossConfig(loss_impl="chunked", **NO_AUX))
    assert not torch.isfinite(loss) and metrics["loss_nonfinite"] == 1.0


@pytest.mark.parametrize(
    "field_name,value,match",
    [("kl_type", "k4", "kl_type"), ("loss_agg_mode", "sum", "loss_agg_mode"), ("loss_impl", "cuda", "loss_impl"),
     ("clip_low", 1.0, "clip"), ("temperature", 0.0, "temperature"), ("logprob_dtype", "fp16", "logprob_dtype"),
     ("beta", -1.0, "beta"), ("max_segs", -1, "max_segs")],
)
def test_config_errors_name_the_field(field_name, value, match) -> None:
    """Guards the one-line config errors."""
    with pytest.raises(ValueError, match=match):
        GRPOLossConfig(**{field_name: value})


def test_reference_compat_options_take_effect() -> None:
    """Guards the compat switches: ``max_segs`` keeps only the first [SEG]s of each rollout (the released
    ``MAX_OBJS`` cap; 1 here -> one per rollout, 2 of the batch's 4), and scoring at temperature 1 from bf16 logits
    changes the KL, while staying within bf16 rounding of the fp32 score at that temperature."""
    policy, ref, segmenter = loss_models()
    batch = loss_batch()
    base = GRPOLossConfig(loss_impl="chunked", **NO_AUX)
    with torch.no_grad():
        _, one = compute_grpo_loss(policy, ref, segmenter, batch, dataclasses.replace(base, max_segs=1))
        compat = GRPOLossConfig.reference_compat(loss_impl="chunked", calibration=False, **NO_AUX)
        _, bf16 = compute_grpo_loss(policy, ref, segmenter, batch, compat)
        _, fp32_t1 = compute_grpo_loss(policy, ref, segmenter, batch, dataclasses.replace(compat, logprob_dtype="float32"))
        _, fp32_t09 = compute_grpo_loss(policy, ref, segmenter, batch, dataclasses.replace(compat, logprob_dtype="float32", temperature=None))
    assert one["num_seg"] == 2
    assert (compat.temperature, compat.logprob_dtype, compat.compat_threshold, compat.max_segs) == (1.0, "bfloat16", 0.5, 3)
    assert fp32_t1["kl"] != fp32_t09["kl"]
    assert bf16["kl"] != fp32_t1["kl"] and bf16["kl"] == pytest.approx(fp32_t1["kl"], rel=0.1)
