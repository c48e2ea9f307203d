"""The GRPO policy loss fused with the LM head, beside its plain-torch reference.

Per token n (all inputs (N,) except hidden (N, H) and weight (V, H)):

    lp   = log_softmax(hidden @ weight.T / temperature)[target]        # target log-prob
    lpc  = lp + seg_bonus                                               # SEG-aware calibration (PG term only)
    old  = old_logps if given, else lpc.detach()                       # value 1 ratio, gradient d lpc
    r    = exp(lpc - old)
    pg   = -min(r * A, clip(r, 1 - clip_low, 1 + clip_high) * A)
    kl   = k1: lp - ref | k2: (lp - ref)^2 / 2 | k3: exp(ref - lp) - (ref - lp) - 1   (only with ref_logps)
    per  = pg + beta * kl

then the masked aggregation (``loss_agg_mode``):

- ``token-mean``: sum over loss tokens / number of loss tokens.
- ``seq-mean-token-mean``: mean over sequences (``seq_ids``) of each sequence's token mean.
- ``seq-mean-token-sum-norm`` (Dr. GRPO): mean over sequences of (token sum / ``max_len``), a
  constant so long answers are not down-weighted. ``max_len`` defaults to the longest sequence
  in the batch (tokens sharing a ``seq_id``, masked or not); pass the generation budget
  (max completion length) to make it constant across batches as Dr. GRPO intends.

Sequences with no loss token are left out of the mean over sequences (a fully masked rollout must
not shrink everyone else's loss); ``seq_ids=None`` means all tokens form one sequence; a batch
without any loss token gives a loss of 0 with zero gradients.

Four front ends with one signature (a trainer can swap them freely):

- :func:`grpo_loss_ref`: the full (N, V) logits, obvious code, a Python loop over sequences.
- :func:`chunked_linear_grpo_loss`: torch, logits ``chunk_size`` tokens at a time.
- :func:`triton_linear_grpo_loss`: the Triton kernels of :mod:`kernels.linear_logprobs` (its extra
  ``backward_chunk_size`` picks the chunked or the fully fused backward).
- :func:`fused_linear_grpo_loss`: Triton when it can take the inputs, else the chunked torch path.

The fast paths run the vocabulary-sized work in :mod:`kernels.linear_logprobs` and the per-token
epilogue above as a few vectorised torch ops on (N,) vectors: it costs O(N) memory and microseconds,
so fusing it into the kernel would buy nothing measurable, and keeping it in torch lets autograd
derive the gradient of every option (including ``seg_bonus``'s) without hand-written backward code.
"""

from __future__ import annotations

from typing import Callable

import torch

from kernels import _triton_support
from kernels.linear_logprobs import DEFAULT_BACKWARD_CHUNK_SIZE, linear_logprobs_chunked, linear_logprobs_ref, linear_logprobs_triton

KL_TYPES = ("k1", "k2", "k3")
LOSS_AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")

LogprobFn = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]


def _validate(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target_ids: torch.Tensor,
    loss_mask: torch.Tensor,
    advantages: torch.Tensor,
    seq_ids: torch.Tensor | None,
    old_logps: torch.Tensor | None,
    ref_logps: torch.Tensor | None,
    seg_bonus: torch.Tensor | None,
    kl_type: str,
    clip_low: float,
    clip_high: float,
    loss_agg_mode: str,
    max_len: int | None,
) -> None:
    if kl_type not in KL_TYPES:
        raise ValueError(f"Invalid kl_type ({kl_type}). Supported values are {', '.join(KL_TYPES)}.")
    if loss_agg_mode not in LOSS_AGG_MODES:
        raise ValueError(f"Invalid loss_agg_mode ({loss_agg_mode}). Supported values are {', '.join(LOSS_AGG_MODES)}.")
    if not (0 <= clip_low < 1) or clip_high < 0:
        raise ValueError(f"Invalid clip range (clip_low={clip_low}, clip_high={clip_high}). Need 0 <= clip_low < 1 and clip_high >= 0.")
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"Invalid shapes: hidden {tuple(hidden.shape)} must be (N, H) and weight {tuple(weight.shape)} must be (V, H).")
    n = hidden.shape[0]
    named = {
        "target_ids": target_ids, "loss_mask": loss_mask, "advantages": advantages, "seq_ids": seq_ids,
        "old_logps": old_logps, "ref_logps": ref_logps, "seg_bonus": seg_bonus,
    }
    for name, t in named.items():
        if t is not None and t.shape != (n,):
            raise ValueError(f"Invalid {name} shape {tuple(t.shape)}. Expected (N,) = ({n},), one value per token.")
        if t is not None and t.device != hidden.device:
            raise ValueError(f"Invalid {name} device ({t.device}); hidden is on {hidden.device}.")
    if max_len is not None and max_len < 1:
        raise ValueError(f"Invalid max_len ({max_len}). It must be >= 1 (the Dr. GRPO normaliser, in tokens).")
    mask = loss_mask.bool()
    if bool(mask.any()):
        t = target_ids[mask]
        if bool(((t < 0) | (t >= weight.shape[0])).any()):
            raise ValueError(f"Invalid target_ids: loss tokens must have ids in [0, V={weight.shape[0]}); masked tokens may hold anything (e.g. -100).")


def _kl(lp: torch.Tensor, ref_logps: torch.Tensor, kl_type: str) -> torch.Tensor:
    log_ratio = ref_logps.float() - lp  # log(pi_ref / pi)
    if kl_type == "k1":
        return -log_ratio
    if kl_type == "k2":
        return 0.5 * log_ratio.square()
    return torch.exp(log_ratio) - log_ratio - 1.0


def _per_token_loss(
    lp: torch.Tensor,
    advantages: torch.Tensor,
    old_logps: torch.Tensor | None,
    ref_logps: torch.Tensor | None,
    seg_bonus: torch.Tensor | None,
    beta: float,
    kl_type: str,
    clip_low: float,
    clip_high: float,
) -> torch.Tensor:
    lpc = lp + seg_bonus.float() if seg_bonus is not None else lp
    old = old_logps.float() if old_logps is not None else lpc.detach()
    ratio = torch.exp(lpc - old)
    adv = advantages.float()
    pg = -torch.minimum(ratio * adv, torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * adv)
    if ref_logps is not None and beta != 0.0:
        # KL on the uncalibrated lp: the calibration enters the policy-gradient term only.
        return pg + beta * _kl(lp, ref_logps, kl_type)
    return pg


def _default_max_len(seq_ids: torch.Tensor | None, n: int) -> int:
    if seq_ids is None:
        return max(n, 1)
    return int(torch.unique(seq_ids, return_counts=True)[1].max()) if n > 0 else 1


def grpo_loss_from_logps(
    lp: torch.Tensor,
    loss_mask: torch.Tensor,
    advantages: torch.Tensor,
    *,
    seq_ids: torch.Tensor | None = None,
    old_logps: torch.Tensor | None = None,
    ref_logps: torch.Tensor | None = None,
    seg_bonus: torch.Tensor | None = None,
    beta: float = 0.04,
    kl_type: str = "k3",
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    loss_agg_mode: str = "seq-mean-token-mean",
    max_len: int | None = None,
) -> torch.Tensor:
    """The GRPO loss from already computed target log-probs, vectorised (scatter sums over ``seq_ids``).

    Args:
        lp: (N,) fp32 target log-probs (differentiable), e.g. from :mod:`kernels.linear_logprobs`.
        loss_mask, advantages, seq_ids, old_logps, ref_logps, seg_bonus, beta, kl_type, clip_low,
        clip_high, loss_agg_mode, max_len: as in :func:`grpo_loss_ref`.
    Returns:
        () fp32 loss.
    """
    mask = loss_mask.bool()
    per = _per_token_loss(lp, advantages, old_logps, ref_logps, seg_bonus, beta, kl_type, clip_low, clip_high)
    # where() rather than a product: a masked token's inf/NaN (e.g. -100 targets, garbage advantages) must not leak.
    per = torch.where(mask, per, torch.zeros_like(per))
    if loss_agg_mode == "token-mean":
        return per.sum() / mask.sum().clamp(min=1)
    n = lp.shape[0]
    if seq_ids is None:
        seq_index = torch.zeros(n, dtype=torch.long, device=lp.device)
        num_seqs = 1
    else:
        _, seq_index = torch.unique(seq_ids, return_inverse=True)
        num_seqs = int(seq_index.max()) + 1 if n > 0 else 1
    seq_sum = torch.zeros(num_seqs, dtype=per.dtype, device=per.device).index_add(0, seq_index, per)
    seq_count = torch.zeros(num_seqs, dtype=per.dtype, device=per.device).index_add(0, seq_index, mask.to(per.dtype))
    has_tokens = seq_count > 0
    if loss_agg_mode == "seq-mean-token-mean":
        seq_loss = seq_sum / seq_count.clamp(min=1)
    else:
        seq_loss = seq_sum / float(max_len if max_len is not None else _default_max_len(seq_ids, n))
    return torch.where(has_tokens, seq_loss, torch.zeros_like(seq_loss)).sum() / has_tokens.sum().clamp(min=1)


def grpo_loss_ref(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target_ids: torch.Tensor,
    loss_mask: torch.Tensor,
    advantages: torch.Tensor,
    *,
    seq_ids: torch.Tensor | None = None,
    old_logps: torch.Tensor | None = None,
    ref_logps: torch.Tensor | None = None,
    seg_bonus: torch.Tensor | None = None,
    beta: float = 0.04,
    kl_type: str = "k3",
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    loss_agg_mode: str = "seq-mean-token-mean",
    temperature: float = 1.0,
    max_len: int | None = None,
    return_entropy: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Plain-torch reference of the GRPO policy loss (full logits; see the module docstring for the math).

    Args:
        hidden: (N, H) float32/bfloat16/float16, hidden states of the tokens predicting ``target_ids``.
        weight: (V, H) same dtype, LM head.
        target_ids: (N,) int64 token ids in [0, V) where ``loss_mask`` is set (anything elsewhere).
        loss_mask: (N,) bool or 0/1; 1 = policy token that enters the loss.
        advantages: (N,) float, each sequence's advantage broadcast to its tokens.
        seq_ids: (N,) int, which sequence (rollout) each token belongs to; None = one sequence.
        old_logps: (N,) float, calibrated log-probs of the behaviour policy; None = ratio of value 1.
        ref_logps: (N,) float, reference-policy log-probs; None = no KL term.
        seg_bonus: (N,) float, calibration m at [SEG] positions and 0 elsewhere (differentiable).
        beta: KL weight. kl_type: k1 | k2 | k3. clip_low / clip_high: ratio clip range (DAPO).
        loss_agg_mode: token-mean | seq-mean-token-mean | seq-mean-token-sum-norm.
        temperature: > 0, divides the logits (use the sampling temperature).
        max_len: Dr. GRPO normaliser in tokens (seq-mean-token-sum-norm only); None = longest sequence.
        return_entropy: also return the per-token entropy (detached).
    Returns:
        loss: () fp32. logps: (N,) fp32 uncalibrated target log-probs, 0 at masked tokens, differentiable.
        entropy (only with ``return_entropy``): (N,) fp32 nats, 0 at masked tokens.
    """
    _validate(hidden, weight, target_ids, loss_mask, advantages, seq_ids, old_logps, ref_logps, seg_bonus, kl_type, clip_low, clip_high, loss_agg_mode, max_len)
    mask = loss_mask.bool()
    safe_targets = torch.where(mask, target_ids.long(), torch.zeros_like(target_ids.long()))
    lp, entropy = linear_logprobs_ref(hidden, weight, safe_targets, temperature, with_entropy=return_entropy)
    per = _per_token_loss(lp, advantages, old_logps, ref_logps, seg_bonus, beta, kl_type, clip_low, clip_high)
    per = torch.where(mask, per, torch.zeros_like(per))
    if loss_agg_mode == "token-mean":
        loss = per.sum() / max(int(mask.sum()), 1)
    else:
        # The obvious loop over sequences; the fast paths use scatter sums instead (tested to agree).
        ids = seq_ids if seq_ids is not None else torch.zeros_like(target_ids)
        if max_len is not None:
            norm = max_len
        else:
            norm = max((int((ids == s).sum()) for s in ids.unique()), default=1)
        seq_losses = []
        for s in ids.unique():
            in_seq = (ids == s) & mask
            count = int(in_seq.sum())
            if count == 0:
                continue
            total = per[in_seq].sum()
            seq_losses.append(total / count if loss_agg_mode == "seq-mean-token-mean" else total / norm)
        loss = torch.stack(seq_losses).mean() if seq_losses else per.sum() * 0.0
    logps = torch.where(mask, lp, torch.zeros_like(lp))
    if return_entropy:
        return loss, logps, torch.where(mask, entropy, torch.zeros_like(entropy))
    return loss, logps


def _linear_grpo_loss(
    logprob_fn: LogprobFn,
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target_ids: torch.Tensor,
    loss_mask: torch.Tensor,
    advantages: torch.Tensor,
    *,
    seq_ids: torch.Tensor | None,
    old_logps: torch.Tensor | None,
    ref_logps: torch.Tensor | None,
    seg_bonus: torch.Tensor | None,
    beta: float,
    kl_type: str,
    clip_low: float,
    clip_high: float,
    loss_agg_mode: str,
    temperature: float,
    max_len: int | None,
    return_entropy: bool,
) -> tuple[torch.Tensor, ...]:
    _validate(hidden, weight, target_ids, loss_mask, advantages, seq_ids, old_logps, ref_logps, seg_bonus, kl_type, clip_low, clip_high, loss_agg_mode, max_len)
    mask = loss_mask.bool()
    safe_targets = torch.where(mask, target_ids.long(), torch.zeros_like(target_ids.long()))
    lp, entropy = logprob_fn(hidden, weight, safe_targets, temperature)
    loss = grpo_loss_from_logps(
        lp, mask, advantages, seq_ids=seq_ids, old_logps=old_logps, ref_logps=ref_logps, seg_bonus=seg_bonus,
        beta=beta, kl_type=kl_type, clip_low=clip_low, clip_high=clip_high, loss_agg_mode=loss_agg_mode, max_len=max_len,
    )
    logps = torch.where(mask, lp, torch.zeros_like(lp))
    if return_entropy:
        return loss, logps, torch.where(mask, entropy, torch.zeros_like(entropy))
    return loss, logps


def chunked_linear_grpo_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target_ids: torch.Tensor,
    loss_mask: torch.Tensor,
    advantages: torch.Tensor,
    *,
    seq_ids: torch.Tensor | None = None,
    old_logps: torch.Tensor | None = None,
    ref_logps: torch.Tensor | None = None,
    seg_bonus: torch.Tensor | None = None,
    beta: float = 0.04,
    kl_type: str = "k3",
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    loss_agg_mode: str = "seq-mean-token-mean",
    temperature: float = 1.0,
    max_len: int | None = None,
    return_entropy: bool = False,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, ...]:
    """:func:`grpo_loss_ref` with logits ``chunk_size`` tokens at a time (torch only; recomputed in backward)."""

    def logprob_fn(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor, temp: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        return linear_logprobs_chunked(h, w, t, temp, chunk_size=chunk_size)

    return _linear_grpo_loss(
        logprob_fn, hidden, weight, target_ids, loss_mask, advantages, seq_ids=seq_ids, old_logps=old_logps,
        ref_logps=ref_logps, seg_bonus=seg_bonus, beta=beta, kl_type=kl_type, clip_low=clip_low, clip_high=clip_high,
        loss_agg_mode=loss_agg_mode, temperature=temperature, max_len=max_len, return_entropy=return_entropy,
    )


def triton_linear_grpo_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target_ids: torch.Tensor,
    loss_mask: torch.Tensor,
    advantages: torch.Tensor,
    *,
    seq_ids: torch.Tensor | None = None,
    old_logps: torch.Tensor | None = None,
    ref_logps: torch.Tensor | None = None,
    seg_bonus: torch.Tensor | None = None,
    beta: float = 0.04,
    kl_type: str = "k3",
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    loss_agg_mode: str = "seq-mean-token-mean",
    temperature: float = 1.0,
    max_len: int | None = None,
    return_entropy: bool = False,
    backward_chunk_size: int | None = DEFAULT_BACKWARD_CHUNK_SIZE,
) -> tuple[torch.Tensor, ...]:
    """:func:`grpo_loss_ref` with the Triton LM-head kernels; raises when Triton cannot take these tensors.

    ``backward_chunk_size``: tokens per backward chunk, or None for the fully fused atomic backward
    (:func:`kernels.linear_logprobs.linear_logprobs_triton`).
    """
    reason = _triton_support.unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"The Triton GRPO loss is unavailable: {reason}")
    if not _triton_support.tensors_supported(hidden, weight):
        raise RuntimeError(
            f"The Triton GRPO loss cannot take hidden on {hidden.device} ({hidden.dtype}): "
            + ("the interpreter takes CPU tensors" if _triton_support.INTERPRET else "it needs accelerator tensors")
            + " in float32/bfloat16/float16."
        )
    def logprob_fn(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor, temp: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        return linear_logprobs_triton(h, w, t, temp, backward_chunk_size=backward_chunk_size)

    return _linear_grpo_loss(
        logprob_fn, hidden, weight, target_ids, loss_mask, advantages, seq_ids=seq_ids, old_logps=old_logps,
        ref_logps=ref_logps, seg_bonus=seg_bonus, beta=beta, kl_type=kl_type, clip_low=clip_low, clip_high=clip_high,
        loss_agg_mode=loss_agg_mode, temperature=temperature, max_len=max_len, return_entropy=return_entropy,
    )


def fused_linear_grpo_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target_ids: torch.Tensor,
    loss_mask: torch.Tensor,
    advantages: torch.Tensor,
    *,
    seq_ids: torch.Tensor | None = None,
    old_logps: torch.Tensor | None = None,
    ref_logps: torch.Tensor | None = None,
    seg_bonus: torch.Tensor | None = None,
    beta: float = 0.04,
    kl_type: str = "k3",
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    loss_agg_mode: str = "seq-mean-token-mean",
    temperature: float = 1.0,
    max_len: int | None = None,
    return_entropy: bool = False,
) -> tuple[torch.Tensor, ...]:
    """The memory-lean GRPO loss: Triton when it can take the tensors, else the chunked torch path.

    Same arguments and results as :func:`grpo_loss_ref`; the (N, V) logits are never stored.
    """
    fn = triton_linear_grpo_loss if _triton_support.tensors_supported(hidden, weight) else chunked_linear_grpo_loss
    return fn(
        hidden, weight, target_ids, loss_mask, advantages, seq_ids=seq_ids, old_logps=old_logps, ref_logps=ref_logps,
        seg_bonus=seg_bonus, beta=beta, kl_type=kl_type, clip_low=clip_low, clip_high=clip_high,
        loss_agg_mode=loss_agg_mode, temperature=temperature, max_len=max_len, return_entropy=return_entropy,
    )


def triton_supports(args: tuple, kwargs: dict) -> bool:
    """Dispatcher predicate: can the Triton tier take this call's hidden and weight?"""
    hidden = args[0] if args else kwargs.get("hidden")
    weight = args[1] if len(args) > 1 else kwargs.get("weight")
    return isinstance(hidden, torch.Tensor) and isinstance(weight, torch.Tensor) and _triton_support.tensors_supported(hidden, weight)
