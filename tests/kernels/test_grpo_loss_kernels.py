"""The fused / chunked GRPO loss against the full-logits reference, and the reference against hand-worked math."""

from __future__ import annotations

import math

import pytest
import torch

from kernels.grpo_loss import (
    KL_TYPES,
    LOSS_AGG_MODES,
    chunked_linear_grpo_loss,
    fused_linear_grpo_loss,
    grpo_loss_from_logps,
    grpo_loss_ref,
    triton_linear_grpo_loss,
)
from tests.kernels.kernel_cases import assert_lowp, assert_match, make_grpo_problem
from tests.tolerances import TOL

# (case id, problem options, loss options)
CASES = [
    ("seq-mean-k3", {}, {}),
    ("token-mean-k1", {}, {"loss_agg_mode": "token-mean", "kl_type": "k1"}),
    ("dr-grpo-k2", {}, {"loss_agg_mode": "seq-mean-token-sum-norm", "kl_type": "k2"}),
    ("dr-grpo-max-len", {}, {"loss_agg_mode": "seq-mean-token-sum-norm", "max_len": 64}),
    ("no-old-no-ref", {"with_old": False, "with_ref": False}, {}),
    ("no-old-with-ref", {"with_old": False}, {"beta": 0.5}),
    ("no-seg-bonus", {"with_seg": False}, {}),
    ("masked-sequence", {"mask_seq": 1}, {}),
    ("zero-advantages", {"zero_adv": True}, {}),
    ("n-1", {"n": 1, "num_seqs": 1}, {}),
    ("very-negative-logits", {"logit_scale": 300.0}, {}),
    ("temperature", {}, {"temperature": 0.6}),
    ("asymmetric-clip", {}, {"clip_low": 0.1, "clip_high": 0.28}),
    ("v-multiple-of-tile", {"v": 64}, {}),
    ("no-seq-ids", {}, {"seq_ids": None}),
]

TIERS = [
    pytest.param("chunked", id="chunked"),
    pytest.param("triton", id="triton", marks=pytest.mark.triton),
    pytest.param("triton-atomic", id="triton-atomic", marks=pytest.mark.triton),
]


def _tier_fn(tier: str):
    if tier == "chunked":
        return lambda *a, **k: chunked_linear_grpo_loss(*a, chunk_size=5, **k)
    if tier == "triton-atomic":
        return lambda *a, **k: triton_linear_grpo_loss(*a, backward_chunk_size=None, **k)
    # several backward chunks, the last one partial
    return lambda *a, **k: triton_linear_grpo_loss(*a, backward_chunk_size=7, **k)


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("case_id,problem_opts,loss_opts", CASES, ids=[c[0] for c in CASES])
def test_matches_reference_fp32(tier, case_id, problem_opts, loss_opts) -> None:
    problem = make_grpo_problem(**problem_opts)
    problem.kwargs.update(loss_opts)
    expected = problem.run(grpo_loss_ref)
    actual = problem.run(_tier_fn(tier))
    prefix = "triton_fp32" if tier.startswith("triton") else "chunked_fp32"
    if problem_opts.get("logit_scale", 1.0) > 10:
        # Logits of ~1e3: lp = z_target - logsumexp cancels two ~1e3 numbers, so every fp32 implementation
        # (the reference too) is off by a few ulp(1e3). Hold the kernel to the low-precision rule against fp64.
        exact = problem.run(grpo_loss_ref, torch.float64)
        for key in ("loss", "logps", "grad_hidden", "grad_weight", "grad_seg_bonus"):
            assert_lowp(key, actual[key], expected[key], exact[key], f"{tier}/{case_id} vs fp64")
        return
    for key in ("loss", "logps"):
        assert_match(key, actual[key], expected[key], prefix, f"{tier}/{case_id}")
    for key in ("grad_hidden", "grad_weight", "grad_seg_bonus"):
        assert_match(key, actual[key], expected[key], prefix + "_grad", f"{tier}/{case_id}")
    assert torch.isfinite(actual["loss"]), case_id


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("loss_agg_mode", LOSS_AGG_MODES)
@pytest.mark.parametrize("kl_type", KL_TYPES)
def test_every_mode_and_kl(tier, loss_agg_mode, kl_type) -> None:
    problem = make_grpo_problem(n=17, v=70, seed=3, loss_agg_mode=loss_agg_mode, kl_type=kl_type, beta=0.3)
    expected = problem.run(grpo_loss_ref)
    actual = problem.run(_tier_fn(tier))
    prefix = "triton_fp32" if tier.startswith("triton") else "chunked_fp32"
    ctx = f"{tier}/{loss_agg_mode}/{kl_type}"
    assert_match("loss", actual["loss"], expected["loss"], prefix, ctx)
    for key in ("grad_hidden", "grad_weight", "grad_seg_bonus"):
        assert_match(key, actual[key], expected[key], prefix + "_grad", ctx)


@pytest.mark.parametrize("tier", TIERS)
def test_bf16_within_twice_plain_torch_error(tier) -> None:
    problem = make_grpo_problem(n=29, h=48, v=90, seed=5, logit_scale=4.0)
    # The fp32 reference sees the same bf16-rounded inputs, so only the arithmetic differs.
    problem.hidden = problem.hidden.bfloat16().float()
    problem.weight = problem.weight.bfloat16().float()
    ref32 = problem.run(grpo_loss_ref, torch.float32)
    plain = problem.run(grpo_loss_ref, torch.bfloat16)
    fast = problem.run(_tier_fn(tier), torch.bfloat16)
    assert fast["grad_hidden"].dtype == torch.bfloat16 and fast["grad_weight"].dtype == torch.bfloat16
    for key in ("loss", "logps", "grad_hidden", "grad_weight", "grad_seg_bonus"):
        assert_lowp(key, fast[key], plain[key], ref32[key], tier)


@pytest.mark.parametrize("tier", TIERS)
def test_no_loss_tokens_gives_zero_loss_and_zero_grads(tier) -> None:
    problem = make_grpo_problem(n=9, num_seqs=2)
    problem.loss_mask = torch.zeros(9, dtype=torch.bool, device=problem.hidden.device)
    problem.target_ids = torch.full((9,), -100, device=problem.hidden.device)
    for fn in (grpo_loss_ref, _tier_fn(tier)):
        out = problem.run(fn)
        assert out["loss"].item() == 0.0
        assert torch.count_nonzero(out["grad_hidden"]) == 0 and torch.count_nonzero(out["grad_weight"]) == 0
        assert torch.count_nonzero(out["logps"]) == 0


@pytest.mark.triton
@pytest.mark.parametrize("backward_chunk_size", [4, None], ids=["chunked-backward", "atomic-backward"])
def test_frozen_lm_head_gets_no_weight_grad(backward_chunk_size) -> None:
    """LoRA freezes the LM head: the kernel then skips the weight product entirely."""
    problem = make_grpo_problem(n=11, seed=2)
    hidden = problem.hidden.clone().requires_grad_()
    loss, _ = triton_linear_grpo_loss(
        hidden, problem.weight, problem.target_ids, problem.loss_mask, problem.advantages, **problem.kwargs,
        backward_chunk_size=backward_chunk_size,
    )
    loss.backward()
    hidden_ref = problem.hidden.clone().requires_grad_()
    loss_ref, _ = grpo_loss_ref(hidden_ref, problem.weight, problem.target_ids, problem.loss_mask, problem.advantages, **problem.kwargs)
    loss_ref.backward()
    assert problem.weight.grad is None
    assert_match("grad_hidden", hidden.grad, hidden_ref.grad, "triton_fp32_grad", "frozen head")


@pytest.mark.triton
def test_entropy_output() -> None:
    problem = make_grpo_problem(n=13, seed=4)
    args = (problem.hidden, problem.weight, problem.target_ids, problem.loss_mask, problem.advantages)
    _, _, ent_ref = grpo_loss_ref(*args, **problem.kwargs, temperature=0.8, return_entropy=True)
    _, _, ent_tri = triton_linear_grpo_loss(*args, **problem.kwargs, temperature=0.8, return_entropy=True)
    _, _, ent_chk = chunked_linear_grpo_loss(*args, **problem.kwargs, temperature=0.8, return_entropy=True, chunk_size=4)
    assert_match("entropy", ent_tri, ent_ref, "triton_fp32", "triton")
    assert_match("entropy", ent_chk, ent_ref, "chunked_fp32", "chunked")
    assert (ent_ref[problem.loss_mask] > 0).all() and (ent_ref[problem.loss_mask] <= math.log(problem.weight.shape[0]) + 1e-5).all()


def test_fused_front_end_takes_cpu_tensors_without_triton_request() -> None:
    """fused_linear_grpo_loss runs on any tensors (Triton when it can, else chunked) with the reference's signature."""
    problem = make_grpo_problem(n=10, seed=6)
    expected = problem.run(grpo_loss_ref)
    actual = problem.run(fused_linear_grpo_loss)
    assert_match("loss", actual["loss"], expected["loss"], "triton_fp32", "fused front end")
    assert_match("grad_hidden", actual["grad_hidden"], expected["grad_hidden"], "triton_fp32_grad", "fused front end")


# --------------------------------------------------------------------------------------------
# The reference against math worked out by hand.
# --------------------------------------------------------------------------------------------


def _lp(problem) -> torch.Tensor:
    logp = (problem.hidden @ problem.weight.T).log_softmax(-1)
    return logp.gather(1, problem.target_ids.clamp(min=0)[:, None])[:, 0]


def test_ratio_one_still_has_the_policy_gradient() -> None:
    """old_logps=None: r = exp(lpc - sg(lpc)) = 1 in value, but d loss / d seg_bonus = -A / (|M_s| * S)."""
    problem = make_grpo_problem(n=12, num_seqs=3, with_old=False, with_ref=False, seed=1)
    out = problem.run(grpo_loss_ref)
    seq_ids, mask, adv = problem.kwargs["seq_ids"], problem.loss_mask, problem.advantages
    seqs = [s for s in seq_ids.unique() if bool((mask & (seq_ids == s)).any())]
    expected_loss = -torch.stack([adv[seq_ids == s][0] for s in seqs]).mean()
    atol, rtol = TOL["loss_math"]
    torch.testing.assert_close(out["loss"], expected_loss, atol=atol, rtol=rtol)
    counts = {int(s): int((mask & (seq_ids == s)).sum()) for s in seqs}
    expected_grad = torch.tensor(
        [(-adv[i].item() / (counts[int(seq_ids[i])] * len(seqs)) if mask[i] else 0.0) for i in range(12)], device=adv.device
    )
    torch.testing.assert_close(out["grad_seg_bonus"], expected_grad, atol=atol, rtol=rtol)


@pytest.mark.parametrize("kl_type", KL_TYPES)
def test_kl_estimators_by_hand(kl_type) -> None:
    problem = make_grpo_problem(n=8, num_seqs=1, zero_adv=True, with_old=False, seed=7, loss_agg_mode="token-mean", beta=1.0, kl_type=kl_type)
    loss, _ = grpo_loss_ref(problem.hidden, problem.weight, problem.target_ids, problem.loss_mask, problem.advantages, seg_bonus=problem.seg_bonus, **problem.kwargs)
    lp = _lp(problem)
    d = problem.kwargs["ref_logps"] - lp  # log(pi_ref / pi)
    per = {"k1": -d, "k2": 0.5 * d**2, "k3": d.exp() - d - 1}[kl_type]
    atol, rtol = TOL["loss_math"]
    torch.testing.assert_close(loss, per[problem.loss_mask].mean(), atol=atol, rtol=rtol)


def test_clipped_ratio_has_no_gradient() -> None:
    """r = 2 > 1 + clip_high with A > 0: pg = -(1.2) A, flat in the parameters."""
    problem = make_grpo_problem(n=6, num_seqs=1, with_ref=False, with_seg=False, seed=8, loss_agg_mode="token-mean")
    problem.advantages = torch.full((6,), 0.7, device=problem.hidden.device)
    problem.kwargs["old_logps"] = _lp(problem).detach() - math.log(2.0)
    out = problem.run(lambda *a, **k: grpo_loss_ref(*a, **k))
    atol, rtol = TOL["loss_math"]
    torch.testing.assert_close(out["loss"].cpu(), torch.tensor(-1.2 * 0.7), atol=atol, rtol=rtol)
    # only the 0.1 * logps.sum() term of the test harness is left in the gradient
    hidden = problem.hidden.clone().requires_grad_()
    loss, _ = grpo_loss_ref(hidden, problem.weight, problem.target_ids, problem.loss_mask, problem.advantages, **problem.kwargs)
    loss.backward()
    assert torch.count_nonzero(hidden.grad) == 0


def test_dr_grpo_divides_by_max_len_and_masked_sequences_drop_out() -> None:
    problem = make_grpo_problem(n=15, num_seqs=3, mask_seq=2, with_old=False, with_ref=False, with_seg=False, seed=9)
    args = (problem.hidden, problem.weight, problem.target_ids, problem.loss_mask, problem.advantages)
    loss, _ = grpo_loss_ref(*args, **problem.kwargs, loss_agg_mode="seq-mean-token-sum-norm", max_len=10)
    seq_ids, mask, adv = problem.kwargs["seq_ids"], problem.loss_mask, problem.advantages
    live = [s for s in seq_ids.unique() if bool((mask & (seq_ids == s)).any())]
    assert 2 not in [int(s) for s in live]
    expected = torch.stack([-(adv * (mask & (seq_ids == s))).sum() / 10 for s in live]).mean()
    atol, rtol = TOL["loss_math"]
    torch.testing.assert_close(loss, expected, atol=atol, rtol=rtol)


def test_vectorised_aggregation_equals_the_loop() -> None:
    """grpo_loss_from_logps (scatter sums) against the reference's Python loop, on odd seq ids."""
    problem = make_grpo_problem(n=31, num_seqs=5, seed=10)
    problem.kwargs["seq_ids"] = problem.kwargs["seq_ids"] * 7 + 100  # non-contiguous labels
    for mode in LOSS_AGG_MODES:
        loss_ref, _ = grpo_loss_ref(problem.hidden, problem.weight, problem.target_ids, problem.loss_mask, problem.advantages, seg_bonus=problem.seg_bonus, **problem.kwargs, loss_agg_mode=mode)
        lp = _lp(problem)
        loss_vec = grpo_loss_from_logps(lp, problem.loss_mask, problem.advantages, seg_bonus=problem.seg_bonus, **problem.kwargs, loss_agg_mode=mode)
        atol, rtol = TOL["loss_math"]
        torch.testing.assert_close(loss_vec, loss_ref, atol=atol, rtol=rtol)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"kl_type": "k4"}, "Invalid kl_type (k4). Supported values are k1, k2, k3."),
        ({"loss_agg_mode": "sum"}, "Invalid loss_agg_mode (sum)"),
        ({"clip_low": 1.5}, "Invalid clip range"),
        ({"max_len": 0}, "Invalid max_len (0)"),
        ({"temperature": 0.0}, "Invalid temperature (0.0)"),
        ({"seq_ids": torch.zeros(3, dtype=torch.long)}, "Invalid seq_ids shape (3,)"),
    ],
)
@pytest.mark.parametrize("fn", [grpo_loss_ref, chunked_linear_grpo_loss, fused_linear_grpo_loss])
def test_bad_arguments_are_named(fn, change, message) -> None:
    problem = make_grpo_problem(n=5, num_seqs=1)
    problem.kwargs.update(change)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        fn(problem.hidden, problem.weight, problem.target_ids, problem.loss_mask, problem.advantages, **problem.kwargs)


def test_out_of_range_target_on_a_loss_token_is_rejected() -> None:
    problem = make_grpo_problem(n=5, num_seqs=1)
    targets = problem.target_ids.clone()
    targets[0] = problem.weight.shape[0]
    with pytest.raises(ValueError, match="Invalid target_ids"):
        grpo_loss_ref(problem.hidden, problem.weight, targets, problem.loss_mask, problem.advantages)
