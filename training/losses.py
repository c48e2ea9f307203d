"""Training losses: the mask loss (BCE + Dice) shared by SFT and GRPO, and the GRPO loss on a rollout batch.

Mask loss (both stages). For each predicted mask (low-resolution logits) and its ground truth:

    z    = bilinear upsample of the logits to the GT's resolution (align_corners=False)
    BCE  = pixel mean of BCE-with-logits(z, g)
    Dice = 1 - (2 sum(sigmoid(z) g) + 1) / (sum(sigmoid(z)) + sum(g) + 1)

each averaged over masks. This is the released VideoSEG-O3 RL auxiliary loss
(projects/open_r1/trainer/sam_loss.py) and mmdet's naive Dice with eps = 1; the released SFT code
scores 12,544 uncertainty-sampled points instead of every pixel, which the full-resolution pixel
mean replaces (no sampling noise, same expectation for a uniform sample).

GRPO loss on a :class:`training.rollout_batch.RolloutBatch` (the released trainer,
projects/open_r1/trainer_videorl_cot.py, with its quirks behind options)::

    lp_j   = log softmax(h_j W^T / temperature)[y_{j+1}]    at every sampled token (response_mask 1)
    lpc_j  = lp_j + m_k   where y_{j+1} is the k-th sampled [SEG]    (calibration: policy-gradient term only)
    L_RL   = kernels.grpo_loss(lpc, lp, ref, old, advantages; clip, KL type, loss_agg_mode)
    L_mask = BCE + Dice of the forward-pass [SEG] masks on the keyframes and the turn-0 spatial frames
    loss   = L_RL + aux_mask_weight * L_mask
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from kernels import _triton_support
from kernels.grpo_loss import (
    KL_TYPES,
    LOSS_AGG_MODES,
    chunked_linear_grpo_loss,
    grpo_loss_from_logps,
    grpo_loss_ref,
    triton_linear_grpo_loss,
)
from kernels.linear_logprobs import linear_logprobs_chunked, linear_logprobs_ref, linear_logprobs_triton
from training.calibration import calibration_bonus, decode_batch_segs

#: SFT mask-loss weights (released cold-start configs: loss_mask 2.0, loss_dice 0.5).
SFT_BCE_WEIGHT = 2.0
SFT_DICE_WEIGHT = 0.5

MASK_REDUCTIONS = ("mean", "none")


def _check_mask_pair(pred_logits: torch.Tensor, gt_masks: torch.Tensor) -> None:
    if not isinstance(pred_logits, torch.Tensor) or pred_logits.dim() != 3 or not pred_logits.is_floating_point():
        shape = tuple(pred_logits.shape) if isinstance(pred_logits, torch.Tensor) else type(pred_logits).__name__
        raise ValueError(f"Invalid pred_logits ({shape}). Expected float mask logits of shape (n, h, w).")
    if not isinstance(gt_masks, torch.Tensor) or gt_masks.dim() != 3:
        shape = tuple(gt_masks.shape) if isinstance(gt_masks, torch.Tensor) else type(gt_masks).__name__
        raise ValueError(f"Invalid gt_masks ({shape}). Expected ground-truth masks of shape (n, H, W), bool or float in [0, 1].")
    if gt_masks.shape[0] != pred_logits.shape[0]:
        raise ValueError(
            f"Invalid gt_masks: {gt_masks.shape[0]} ground-truth masks for {pred_logits.shape[0]} predictions; pass one per prediction."
        )
    if min(gt_masks.shape[1:]) < 1 or min(pred_logits.shape[1:]) < 1:
        raise ValueError("Invalid masks: every side must be >= 1 pixel.")


def mask_bce_dice(
    pred_logits: torch.Tensor, gt_masks: torch.Tensor, *, reduction: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE-with-logits and Dice of predicted masks against ground truth, at the ground truth's resolution.

    Args:
        pred_logits: (n, h, w) float mask logits (e.g. SAM2's 256 x 256 low-resolution logits);
            differentiable.
        gt_masks: (n, H, W) bool, or float in [0, 1], on the same device. Predictions are upsampled
            bilinearly to (H, W) (never the other way: the GT keeps its thin structures).
        reduction: ``"mean"`` (average over the n masks) or ``"none"`` (one value per mask, for callers
            that weight masks, e.g. by [SEG]s per turn).
    Returns:
        bce, dice: () fp32 each (or (n,) with ``reduction="none"``). With n = 0 both are 0 and still
        attached to ``pred_logits``' graph (a sample without masks keeps every parameter in the
        backward, as distributed data parallel needs).
    """
    if reduction not in MASK_REDUCTIONS:
        raise ValueError(f"Invalid reduction ({reduction}). Supported values are {', '.join(MASK_REDUCTIONS)}.")
    _check_mask_pair(pred_logits, gt_masks)
    n = pred_logits.shape[0]
    if n == 0:
        zero = pred_logits.float().sum() * 0.0
        empty = pred_logits.float().new_zeros(0) + zero
        return (zero, zero) if reduction == "mean" else (empty, empty)
    size = tuple(gt_masks.shape[1:])
    z = pred_logits.float()
    if tuple(z.shape[1:]) != size:
        z = F.interpolate(z[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    g = gt_masks.to(device=z.device, dtype=torch.float32)
    bce = F.binary_cross_entropy_with_logits(z, g, reduction="none").mean(dim=(1, 2))
    prob = z.sigmoid()
    dice = 1.0 - (2.0 * (prob * g).sum(dim=(1, 2)) + 1.0) / (prob.sum(dim=(1, 2)) + g.sum(dim=(1, 2)) + 1.0)
    if reduction == "mean":
        return bce.mean(), dice.mean()
    return bce, dice


def sft_mask_loss(
    pred_logits: torch.Tensor,
    gt_masks: torch.Tensor,
    *,
    bce_weight: float = SFT_BCE_WEIGHT,
    dice_weight: float = SFT_DICE_WEIGHT,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The SFT mask term ``bce_weight * BCE + dice_weight * Dice`` (defaults 2.0 and 0.5, the released recipe).

    Args:
        pred_logits: (n, h, w) float [SEG] mask logits. gt_masks: (n, H, W) bool/float ground truth.
        bce_weight, dice_weight: the weights (>= 0).
    Returns:
        loss: () fp32, differentiable (0, attached to the graph, when n = 0).
        parts: ``{"mask_bce": float, "mask_dice": float}`` unweighted values, for logging.
    """
    if bce_weight < 0 or dice_weight < 0:
        raise ValueError(f"Invalid mask loss weights (bce_weight={bce_weight}, dice_weight={dice_weight}). Both must be >= 0.")
    bce, dice = mask_bce_dice(pred_logits, gt_masks)
    loss = bce_weight * bce + dice_weight * dice
    return loss, {"mask_bce": float(bce.detach()), "mask_dice": float(dice.detach())}


# ---------------------------------------------------------------------------------------------- GRPO

LOSS_IMPLS = ("auto", "eager", "chunked", "triton")
LOGPROB_DTYPES = ("float32", "bfloat16")
UPDATE_BATCHINGS = ("group", "rollout")


@dataclass
class GRPOLossConfig:
    """Options of :func:`compute_grpo_loss`. Field names follow TRL / verl where one exists."""

    beta: float = field(default=0.04, metadata={"help": "KL weight (0 disables the KL term and the reference forward)."})
    kl_type: str = field(default="k3", metadata={"help": "KL estimator on the uncalibrated log-probs: k1, k2 or k3."})
    clip_low: float = field(default=0.2, metadata={"help": "Ratio clip below 1 (ratio >= 1 - clip_low). Only matters when old_logps are set."})
    clip_high: float = field(default=0.2, metadata={"help": "Ratio clip above 1 (ratio <= 1 + clip_high; DAPO uses 0.28)."})
    loss_agg_mode: str = field(
        default="seq-mean-token-mean",
        metadata={"help": "token-mean, seq-mean-token-mean (released code) or seq-mean-token-sum-norm (Dr. GRPO)."},
    )
    max_len: int | None = field(
        default=None,
        metadata={"help": "Dr. GRPO normaliser in tokens (seq-mean-token-sum-norm): set it to the generation budget "
                          "(max_completion_length x max turns). None = the most sampled tokens of any rollout in the batch."},
    )
    temperature: float | None = field(
        default=None,
        metadata={"help": "Temperature the log-probs are scored at. None = the batch's sampling temperature "
                          "(the correct importance weight); the released code scores at 1.0."},
    )
    logprob_dtype: str = field(
        default="float32",
        metadata={"help": "float32 (fp32 logits), or bfloat16 (the released code's bf16 logits: hidden states and LM "
                          "head cast to bf16 before the LM-head product; the log-softmax itself still runs in fp32)."},
    )
    loss_impl: str = field(
        default="auto",
        metadata={"help": "eager (full logits), chunked (torch, chunk_size tokens of logits at a time), triton "
                          "(fused kernels), auto (triton on an accelerator, else chunked)."},
    )
    chunk_size: int = field(default=1024, metadata={"help": "Tokens per logits chunk of the chunked path."})
    calibration: bool = field(default=True, metadata={"help": "Add the SEG-aware calibration bonus m at every sampled [SEG]."})
    compat_threshold: float | None = field(
        default=None,
        metadata={"help": "Binarise the rollout's keyframe mask at this logit (None = 0, i.e. p = 0.5; the released "
                          "code uses 0.5 on logits)."},
    )
    calibration_size: int = field(default=32, metadata={"help": "Grid side of the calibration log-likelihood."})
    aux_mask_weight: float = field(default=0.2, metadata={"help": "Weight of BCE + Dice of the forward-pass masks vs ground truth."})
    max_segs: int | None = field(
        default=None,
        metadata={"help": "Decode only the first max_segs [SEG] of a rollout for calibration and the mask loss "
                          "(the released code: 3). None = all."},
    )
    update_batching: str = field(
        default="group",
        metadata={"help": "group: one vision-tower pass over the micro-batch's distinct images and one padded "
                          "language-model forward over its rollouts; rollout: one unpadded forward per rollout "
                          "(memory fallback for long dialogues of very different lengths)."},
    )

    def __post_init__(self) -> None:
        if self.kl_type not in KL_TYPES:
            raise ValueError(f"Invalid kl_type ({self.kl_type}). Supported values are {', '.join(KL_TYPES)}.")
        if self.loss_agg_mode not in LOSS_AGG_MODES:
            raise ValueError(f"Invalid loss_agg_mode ({self.loss_agg_mode}). Supported values are {', '.join(LOSS_AGG_MODES)}.")
        if self.loss_impl not in LOSS_IMPLS:
            raise ValueError(f"Invalid loss_impl ({self.loss_impl}). Supported values are {', '.join(LOSS_IMPLS)}.")
        if self.logprob_dtype not in LOGPROB_DTYPES:
            raise ValueError(f"Invalid logprob_dtype ({self.logprob_dtype}). Supported values are {', '.join(LOGPROB_DTYPES)}.")
        if self.beta < 0:
            raise ValueError(f"Invalid beta ({self.beta}). Set it to >= 0 (0 disables the KL term).")
        if not (0 <= self.clip_low < 1) or self.clip_high < 0:
            raise ValueError(f"Invalid clip range (clip_low={self.clip_low}, clip_high={self.clip_high}). Need 0 <= clip_low < 1 and clip_high >= 0.")
        if self.temperature is not None and not self.temperature > 0:
            raise ValueError(f"Invalid temperature ({self.temperature}). Set it > 0, or None for the sampling temperature.")
        if self.max_len is not None and self.max_len < 1:
            raise ValueError(f"Invalid max_len ({self.max_len}). Set it to >= 1 tokens or None.")
        if self.chunk_size < 1 or self.calibration_size < 1:
            raise ValueError(f"Invalid chunk_size ({self.chunk_size}) or calibration_size ({self.calibration_size}). Both must be >= 1.")
        if self.aux_mask_weight < 0:
            raise ValueError(f"Invalid aux_mask_weight ({self.aux_mask_weight}). Set it to >= 0.")
        if self.max_segs is not None and self.max_segs < 0:
            raise ValueError(f"Invalid max_segs ({self.max_segs}). Use None (every [SEG]) or an int >= 0.")
        if self.update_batching not in UPDATE_BATCHINGS:
            raise ValueError(f"Invalid update_batching ({self.update_batching}). Supported values are "
                             f"{', '.join(UPDATE_BATCHINGS)}.")

    @classmethod
    def reference_compat(cls, **overrides: Any) -> "GRPOLossConfig":
        """The released trainer's choices: log-probs at temperature 1 from bf16 logits, the rollout mask
        binarised at logit 0.5, at most 3 [SEG] per rollout (its ``MAX_OBJS``); everything else as default."""
        values: dict[str, Any] = dict(temperature=1.0, logprob_dtype="bfloat16", compat_threshold=0.5, max_segs=3)
        values.update(overrides)
        return cls(**values)

    def resolved_impl(self, hidden: torch.Tensor) -> str:
        """The loss path ``auto`` stands for on this tensor: triton on an accelerator, else chunked
        (never the slow CPU interpreter, which only an explicit ``triton`` runs)."""
        if self.loss_impl != "auto":
            return self.loss_impl
        return "triton" if (not _triton_support.INTERPRET and _triton_support.tensors_supported(hidden)) else "chunked"


def dialogue_hidden_states(policy: Any, trajectory: Any) -> torch.Tensor:
    """One forward of the policy's language model over a whole rollout dialogue; its last hidden states.

    The reference for :func:`batch_hidden_states` (``update_batching="rollout"`` runs this once per
    rollout): no padding, the trajectory's own images through the vision tower.

    The sampled ids are scored as they were sampled (never re-rendered or re-tokenised text). Qwen's
    3-D M-RoPE positions come from ``model.model.get_rope_index`` on the full dialogue's ids and image
    grids, exactly as the rollout's :class:`videoseg_o3.agent.context.DialogueContext` computed them,
    so the hidden states equal the rollout's (the rollout extended a KV cache chunk by chunk; a full
    forward with these positions is the same computation).

    Args:
        policy: a ``SegPolicy``.
        trajectory: a :class:`videoseg_o3.agent.Trajectory` (``input_ids``, ``mm_token_type_ids``,
            ``image_grid_thw``, ``pixel_values``).
    Returns:
        ``(L, H)`` last-layer hidden states after the final norm, in the model's dtype, differentiable
        (unless called under ``torch.no_grad``).
    """
    inner = policy.model.model
    device = policy.device
    ids = trajectory.input_ids.to(device)[None]
    types = trajectory.mm_token_type_ids.to(device=device, dtype=torch.int32)[None]
    grids = trajectory.image_grid_thw.to(device=device, dtype=torch.long)
    has_images = grids.shape[0] > 0
    if has_images and trajectory.pixel_values is None:
        raise ValueError(f"Invalid trajectory: {grids.shape[0]} images in image_grid_thw but no pixel_values.")
    positions, _ = inner.get_rope_index(ids, mm_token_type_ids=types, image_grid_thw=grids if has_images else None)
    pixels = trajectory.pixel_values.to(device=device, dtype=policy.dtype) if has_images else None
    out = inner(
        input_ids=ids,
        position_ids=positions,
        pixel_values=pixels,
        image_grid_thw=grids if has_images else None,
        mm_token_type_ids=types,
        use_cache=False,
    )
    return out.last_hidden_state[0]


def distinct_images(trajectories: list[Any], device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """The distinct images of several dialogues, by content, and which one each dialogue image is.

    The G rollouts of a prompt show the same turn-0 frames, and often the same follow-up frames and
    keyframes; the update's vision tower then runs once per distinct image instead of once per rollout.
    Images are compared by content (grid and every patch value), not by frame index, so nothing is
    assumed about how the rollouts chose their frames: candidates are grouped by grid and a cheap
    fingerprint (a fixed random projection of the patches, float64), and a candidate is only merged
    after ``torch.equal`` on its patches.

    Args:
        trajectories: ``B`` trajectories (``image_grid_thw (n_i, 3)``, ``pixel_values (sum prod(grid), D)``).
        device: where the patches are compared and returned.
    Returns:
        pixel_values: ``(sum prod(grid) over distinct images, D)`` patches of the distinct images, in order
            of first appearance.
        image_grid_thw: ``(num_distinct, 3) long`` their grids.
        which: for every image of every dialogue, in dialogue order, its index among the distinct ones
            (``sum n_i`` ints).
    """
    pixels: list[torch.Tensor] = []
    grids: list[torch.Tensor] = []
    which: list[int] = []
    buckets: dict[tuple, list[int]] = {}
    projection: torch.Tensor | None = None
    for traj in trajectories:
        traj_grids = traj.image_grid_thw.to(dtype=torch.long)
        if traj_grids.shape[0] == 0:
            continue
        if traj.pixel_values is None:
            raise ValueError(f"Invalid trajectory: {traj_grids.shape[0]} images in image_grid_thw but no pixel_values.")
        patches = traj.pixel_values.to(device)
        sizes = traj_grids.prod(-1).tolist()
        if sum(sizes) != patches.shape[0]:
            raise ValueError(f"Invalid trajectory: image_grid_thw covers {sum(sizes)} patches but pixel_values has "
                             f"{patches.shape[0]} rows.")
        if projection is None:
            gen = torch.Generator().manual_seed(0)
            projection = torch.rand(patches.shape[1], generator=gen, dtype=torch.float64).to(device)
        parts = torch.split(patches, sizes)
        row_prints = torch.split(patches.double() @ projection, sizes)
        prints = torch.stack([r.sum() for r in row_prints]).tolist()  # one device sync per dialogue
        for grid, part, fingerprint in zip(traj_grids.tolist(), parts, prints):
            key = (*grid, fingerprint)
            found = next((d for d in buckets.get(key, []) if torch.equal(pixels[d], part)), None)
            if found is None:
                found = len(pixels)
                pixels.append(part)
                grids.append(torch.tensor(grid, dtype=torch.long))
                buckets.setdefault(key, []).append(found)
            which.append(found)
    if not pixels:
        return torch.zeros(0, 0, device=device), torch.zeros(0, 3, dtype=torch.long, device=device), []
    return torch.cat(pixels), torch.stack(grids).to(device), which


def batch_hidden_states(policy: Any, trajectories: list[Any], *, batching: str = "group") -> list[torch.Tensor]:
    """Last hidden states of several rollout dialogues; the update step's forward.

    ``batching="group"``: the vision tower runs ONCE over the distinct images of all the dialogues
    (:func:`distinct_images`; the rollouts of a prompt share their turn-0 frames), and the language model
    runs ONE forward over the dialogues right-padded into a ``(B, L_max)`` batch. Each row's 3-D M-RoPE
    positions come from ``model.model.get_rope_index`` over the padded batch with a padding mask
    (transformers skips padded tokens, so each row gets exactly the positions of its dialogue alone, as
    the rollout's context computed them). The forward itself takes NO attention mask: with right padding
    a real token's causal window holds only real tokens of its own row, so its computation is that of the
    unpadded dialogue, while the padded queries' outputs are never read (no loss, no gradient). Without
    a mask the attention runs the plain causal kernel (``is_causal``: flash / memory-efficient on a GPU)
    instead of materialising a ``(B, 1, L, L)`` mask. The encoded images are handed to the model as precomputed
    encoder outputs, ordered row by row as the model scatters them into the image placeholders
    (deepstack features of Qwen3-VL alike). Gradients of an image shared by several rows sum on its
    one encoding, as they would over separate encodings.

    ``batching="rollout"``: :func:`dialogue_hidden_states` once per dialogue, the memory fallback: no
    padding (the batch holds ``B x L_max`` activations where the loop holds ``sum L_i``, which matters when
    long and short dialogues share a micro-batch), and the transient attention buffers of one dialogue at
    a time.

    Args:
        policy: a ``SegPolicy``.
        trajectories: ``B`` :class:`videoseg_o3.agent.Trajectory`.
        batching: ``"group"`` or ``"rollout"``.
    Returns:
        ``B`` tensors ``(L_i, H)`` in the model's dtype (views of one padded output when batched),
        differentiable unless called under ``torch.no_grad``.
    """
    if batching not in UPDATE_BATCHINGS:
        raise ValueError(f"Invalid update_batching ({batching}). Supported values are {', '.join(UPDATE_BATCHINGS)}.")
    if not trajectories:
        raise ValueError("Invalid trajectories (empty). Pass at least one rollout dialogue.")
    if batching == "rollout" or len(trajectories) == 1:
        return [dialogue_hidden_states(policy, t) for t in trajectories]
    inner = policy.model.model
    device = policy.device
    lengths = [int(t.input_ids.numel()) for t in trajectories]
    longest = max(lengths)
    pad_id = int(getattr(policy.model.config, "pad_token_id", None) or 0)
    ids = torch.full((len(trajectories), longest), pad_id, dtype=torch.long, device=device)
    types = torch.zeros(len(trajectories), longest, dtype=torch.int32, device=device)
    mask = torch.zeros(len(trajectories), longest, dtype=torch.long, device=device)
    for b, (traj, n) in enumerate(zip(trajectories, lengths)):
        ids[b, :n] = traj.input_ids.to(device)
        types[b, :n] = traj.mm_token_type_ids.to(device=device, dtype=torch.int32)
        mask[b, :n] = 1
    all_grids = torch.cat([t.image_grid_thw.to(device=device, dtype=torch.long) for t in trajectories])
    has_images = all_grids.shape[0] > 0
    positions, _ = inner.get_rope_index(ids, mm_token_type_ids=types, image_grid_thw=all_grids if has_images else None,
                                        attention_mask=mask)
    encoder_outputs = None
    if has_images:
        pixels, grids, which = distinct_images(trajectories, device)
        features = inner.get_image_features(pixels.to(policy.dtype), grids, return_dict=True)
        # every dialogue image, row by row, points at its distinct image's encoding (no copy of the tower's work)
        features.pooler_output = tuple(features.pooler_output[d] for d in which)
        if getattr(features, "deepstack_features", None) is not None:
            features.deepstack_features = [tuple(layer[d] for d in which) for layer in features.deepstack_features]
        encoder_outputs = {"image": features}
    out = inner(
        input_ids=ids,
        position_ids=positions,
        image_grid_thw=all_grids if has_images else None,
        mm_token_type_ids=types,
        mm_encoder_outputs=encoder_outputs,
        use_cache=False,
    )
    hidden = out.last_hidden_state
    return [hidden[b, :n] for b, n in enumerate(lengths)]


@dataclass
class TokenRows:
    """The loss rows of a batch: one per sampled token, whose log-prob is read from the hidden state just
    before it (position ``j`` predicts ``input_ids[j + 1]``).

    Only tokens with ``response_mask`` 1 become rows: system, user, observation and image tokens never
    reach the LM head here, so they get no policy gradient by construction and cost no vocabulary-sized
    work (they are most of a multimodal dialogue).

    Attributes:
        hidden: ``(N, H)`` hidden states at the rows' positions (differentiable).
        target_ids: ``(N,) long`` the sampled token each row predicts.
        positions: ``(N,) long`` the row's position ``j`` in its dialogue (the target is at ``j + 1``).
        seq_ids: ``(N,) long`` the rollout of each row.
        advantages: ``(N,) float32`` the rollout's advantage on each row.
        offsets: ``B + 1`` row offsets: rollout ``i``'s rows are ``offsets[i]:offsets[i + 1]``.
    """

    hidden: torch.Tensor
    target_ids: torch.Tensor
    positions: torch.Tensor
    seq_ids: torch.Tensor
    advantages: torch.Tensor
    offsets: list[int]

    @property
    def loss_mask(self) -> torch.Tensor:
        """``(N,) bool``, all True (every row is a sampled token); the kernels take a mask argument."""
        return torch.ones_like(self.target_ids, dtype=torch.bool)

    def rows_of(self, i: int, token_positions: torch.Tensor) -> torch.Tensor:
        """``(k,) long`` rows scoring rollout ``i``'s sampled tokens at ``token_positions`` (each must be sampled)."""
        own = self.positions[self.offsets[i]:self.offsets[i + 1]]
        before = token_positions.to(own.device) - 1
        rows = torch.searchsorted(own, before)
        if bool((rows >= own.numel()).any()) or not torch.equal(own[rows.clamp(max=max(own.numel() - 1, 0))], before):
            raise ValueError(f"Invalid token positions {token_positions.tolist()} for rollout {i}: not all are sampled tokens.")
        return self.offsets[i] + rows


def token_rows(batch: Any, hidden: list[torch.Tensor]) -> TokenRows:
    """The loss rows of ``B`` dialogues given their hidden states ``(L_i, H)`` (see :class:`TokenRows`)."""
    device = hidden[0].device
    rows_h, targets, positions, seqs, advs, offsets = [], [], [], [], [], [0]
    for i, (traj, h) in enumerate(zip(batch.trajectories, hidden)):
        sampled = traj.response_mask[1:].to(device).bool()
        pos = torch.nonzero(sampled).flatten()
        n = int(pos.numel())
        rows_h.append(h[pos])
        targets.append(traj.input_ids.to(device)[pos + 1])
        positions.append(pos)
        seqs.append(torch.full((n,), i, dtype=torch.long, device=device))
        advs.append(batch.advantages[i].to(device=device, dtype=torch.float32).expand(n))
        offsets.append(offsets[-1] + n)
    return TokenRows(torch.cat(rows_h), torch.cat(targets).long(), torch.cat(positions), torch.cat(seqs),
                     torch.cat(advs), offsets)


def _lm_head_weight(policy: Any) -> torch.Tensor:
    return policy.model.get_output_embeddings().weight


def _cast_for_logprobs(hidden: torch.Tensor, weight: torch.Tensor, config: GRPOLossConfig, impl: str) -> tuple[torch.Tensor, torch.Tensor]:
    """LM-head operands in the dtype that gives the configured logits precision.

    ``float32``: fp32 logits. The Triton kernels accumulate in fp32 whatever they read, so they keep the
    model's dtype (no weight copy); the eager and chunked paths multiply in their input dtype, so a bf16
    model's operands are upcast for them. ``bfloat16`` (compat): operands in bf16, so eager and chunked
    round the logits to bf16 like the released code (Triton still accumulates them in fp32).
    """
    if config.logprob_dtype == "bfloat16":
        dtype = torch.bfloat16
    else:
        dtype = weight.dtype if impl == "triton" else torch.promote_types(weight.dtype, torch.float32)
    return hidden.to(dtype), weight.to(dtype)


def _target_logprobs(impl: str, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, temperature: float,
                     chunk_size: int) -> torch.Tensor:
    """``(N,) fp32`` target log-probs through the same LM-head path as the loss (the reference's and the
    behaviour policy's log-probs must be scored like the policy's)."""
    if impl == "eager":
        return linear_logprobs_ref(hidden, weight, targets, temperature, with_entropy=False)[0]
    if impl == "triton":
        return linear_logprobs_triton(hidden, weight, targets, temperature)[0]
    return linear_logprobs_chunked(hidden, weight, targets, temperature, chunk_size=chunk_size)[0]


def _temperature(batch: Any, config: GRPOLossConfig) -> float:
    return float(config.temperature if config.temperature is not None else batch.temperature)


def _ref_logprobs(ref_policy: Any, batch: Any, rows: TokenRows, impl: str, temperature: float, config: GRPOLossConfig) -> torch.Tensor:
    """``(N,) fp32`` reference log-probs of the rows: the batch's stored ``ref_logps`` when set (the reference is
    frozen, so the trainer scores it once per batch), else one no-grad reference forward now."""
    if batch.ref_logps is not None:
        return _stored_rows(batch.ref_logps, rows)
    with torch.no_grad():
        ref_hidden = batch_hidden_states(ref_policy, batch.trajectories, batching=config.update_batching)
        ref_rows = token_rows(batch, ref_hidden)
        h, w = _cast_for_logprobs(ref_rows.hidden, _lm_head_weight(ref_policy), config, impl)
        return _target_logprobs(impl, h, w, ref_rows.target_ids, temperature, config.chunk_size).detach()


def _seg_bonus(batch: Any, rows: TokenRows, decodes: list[Any], config: GRPOLossConfig, impl: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N,)`` bonus (m at the rows predicting a kept [SEG], 0 elsewhere) and the ``(k,)`` m values."""
    bonus = torch.zeros(rows.hidden.shape[0], dtype=torch.float32, device=rows.hidden.device)
    values, where = [], []
    for i, dec in enumerate(decodes):
        if dec.keep.numel() == 0:
            continue
        target = batch.seg_keyframe_logits[i][dec.keep]
        m = calibration_bonus(dec.keyframe_logits, target, compat_threshold=config.compat_threshold,
                              size=config.calibration_size, impl="triton" if impl == "triton" else "torch")
        values.append(m.to(bonus.device))
        where.append(rows.rows_of(i, batch.seg_positions[i][dec.keep]))
    if not values:
        return bonus, bonus.new_zeros(0)
    m_all = torch.cat(values)
    return bonus.index_add(0, torch.cat(where), m_all), m_all


def _aux_mask_loss(batch: Any, decodes: list[Any]) -> tuple[torch.Tensor | None, dict[str, float]]:
    """``L_vid + L_kf`` of the released trainer (BCE + Dice of forward-pass masks vs ground truth).

    ``L_vid``: mean over every kept [SEG] x spatial frame (= the released [SEG]-count-weighted mean over
    turns); ``L_kf``: mean over (rollout, turn) of the turn's last kept [SEG] on its keyframe.
    """
    vid_bce, vid_dice, kf_bce, kf_dice = [], [], [], []
    for i, dec in enumerate(decodes):
        k = int(dec.keep.numel())
        if k == 0:
            continue
        if dec.spatial_logits is not None:
            num_spatial = dec.spatial_logits.shape[1]
            gt = batch.gt_spatial(i).to(dec.spatial_logits.device)
            b, d = mask_bce_dice(dec.spatial_logits.reshape(k * num_spatial, *dec.spatial_logits.shape[2:]),
                                 gt.repeat(k, 1, 1), reduction="none")
            vid_bce.append(b)
            vid_dice.append(d)
        turns = batch.seg_turns[i][dec.keep]
        # the last kept [SEG] of each turn: where the next [SEG] belongs to another turn
        last = torch.ones(k, dtype=torch.bool)
        last[:-1] = turns[1:] != turns[:-1]
        pick = torch.nonzero(last).flatten()
        gt_kf = batch.gt_keyframes(i)[dec.keep][pick].to(dec.keyframe_logits.device)
        b, d = mask_bce_dice(dec.keyframe_logits[pick], gt_kf, reduction="none")
        kf_bce.append(b)
        kf_dice.append(d)
    if not kf_bce:
        return None, {}
    parts = {"kf_bce": torch.cat(kf_bce).mean(), "kf_dice": torch.cat(kf_dice).mean()}
    if vid_bce:
        parts["vid_bce"] = torch.cat(vid_bce).mean()
        parts["vid_dice"] = torch.cat(vid_dice).mean()
    total = sum(parts.values())
    return total, {f"mask_{k}": float(v.detach()) for k, v in parts.items()}


def _stored_rows(per_token: list[torch.Tensor], rows: TokenRows) -> torch.Tensor:
    """``(N,) fp32`` rows of per-token log-probs stored per rollout (``old_logps`` / ``ref_logps`` layout)."""
    # entry j of a rollout's tensor is the log-prob of input_ids[j]: the row at position j - 1
    return torch.cat([o.to(device=rows.hidden.device, dtype=torch.float32)[rows.positions[rows.offsets[i]:rows.offsets[i + 1]] + 1]
                      for i, o in enumerate(per_token)])


def _old_rows(batch: Any, rows: TokenRows) -> torch.Tensor | None:
    return None if batch.old_logps is None else _stored_rows(batch.old_logps, rows)


def _per_token(batch: Any, rows: TokenRows, lp: torch.Tensor) -> list[torch.Tensor]:
    """Row log-probs ``(N,)`` back in the per-rollout layout: ``B`` tensors ``(L_i,) float32`` on the CPU, entry
    ``j`` the log-prob of ``input_ids[j]``, 0 where ``response_mask`` is 0."""
    out = []
    for i, traj in enumerate(batch.trajectories):
        full = torch.zeros(int(traj.input_ids.numel()), dtype=torch.float32, device=lp.device)
        span = slice(rows.offsets[i], rows.offsets[i + 1])
        out.append(full.index_copy(0, rows.positions[span] + 1, lp[span].float()).cpu())
    return out


def _max_len(rows: TokenRows, config: GRPOLossConfig) -> int:
    if config.max_len is not None:
        return config.max_len
    return max(max(b - a for a, b in zip(rows.offsets[:-1], rows.offsets[1:])), 1)


def compute_grpo_loss(
    policy: Any,
    ref_policy: Any | None,
    segmenter: Any,
    batch: Any,
    config: GRPOLossConfig | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The GRPO loss of one micro-batch of whole groups, and its metrics.

    One forward of the policy over the rollouts' whole dialogues (the sampled ids, images from the
    trajectories; :func:`batch_hidden_states`: one vision-tower pass over the distinct images and one
    padded language-model forward, or one forward per rollout with ``update_batching="rollout"``) gives
    the last hidden states; the LM-head loss runs through :mod:`kernels.grpo_loss`
    (``loss_impl``: eager builds the full logits; chunked and triton never hold tokens x vocab logits).
    Every sampled ``[SEG]``'s hidden state is projected and decoded on its keyframe's stored SAM2
    features (not gated by the object score); the calibration bonus m (:mod:`kernels.seg_calibration`)
    is added to that token's log-prob in the policy-gradient term only (the KL uses the plain log-prob).
    The auxiliary mask loss adds ``aux_mask_weight * (BCE + Dice)`` of these masks (keyframes and the
    turn-0 spatial frames) against ground truth.

    Args:
        policy: the trained ``SegPolicy`` (train mode is the caller's choice).
        ref_policy: the frozen reference ``SegPolicy`` (no gradient), or None for no KL term. Not run when
            ``batch.ref_logps`` is set (:func:`reference_logps`, scored once per batch by the trainer).
        segmenter: the ``Sam2Segmenter`` whose prompt encoder and mask decoder are trained.
        batch: a :class:`training.rollout_batch.RolloutBatch` (``old_logps``, when set, are the behaviour
            policy's *calibrated* log-probs from :func:`behaviour_logps`, for the clipped ratio).
        config: :class:`GRPOLossConfig` (default: the intended recipe).
    Returns:
        loss: () fp32, differentiable. A non-finite loss is returned as is and flagged in
            ``metrics["loss_nonfinite"]`` (the trainer skips that step).
        metrics: floats: ``loss``, ``policy_loss`` (aggregated PG + KL), ``pg_loss``, ``kl_loss`` (beta x KL,
            aggregated), ``kl`` (token mean of the KL), ``clip_frac``, ``entropy`` (token mean; chunked and
            triton only), ``calibration_m`` (mean m), ``num_seg``, ``aux_mask_loss`` and its parts
            (``mask_vid_bce``, ``mask_vid_dice``, ``mask_kf_bce``, ``mask_kf_dice``), ``num_loss_tokens``,
            ``loss_nonfinite`` (0 or 1).
    """
    loss, metrics, _ = _grpo_loss(policy, ref_policy, segmenter, batch, config, with_logps=False)
    return loss, metrics


def grpo_loss_and_logps(
    policy: Any,
    ref_policy: Any | None,
    segmenter: Any,
    batch: Any,
    config: GRPOLossConfig | None = None,
) -> tuple[torch.Tensor, dict[str, float], list[torch.Tensor]]:
    """:func:`compute_grpo_loss`, plus the policy's calibrated per-token log-probs of this very forward.

    On a fresh batch (no ``old_logps``) the policy IS the behaviour policy, so these are what
    :func:`behaviour_logps` would score in a separate no-grad forward (the same computation): the trainer
    keeps them from the first of ``num_iterations`` updates for the clipped ratio of the later ones, and
    that first update's loss is unchanged (ratio exp(lpc - sg(lpc)) = 1, as with stored behaviour log-probs).

    Returns:
        loss, metrics: as :func:`compute_grpo_loss`.
        logps: ``B`` tensors ``(L_i,) float32`` on the CPU, detached, in ``behaviour_logps``' layout (entry ``j``
            is log pi(input_ids[j]) + m at a kept [SEG], 0 where ``response_mask`` is 0).
    """
    return _grpo_loss(policy, ref_policy, segmenter, batch, config, with_logps=True)  # type: ignore[return-value]


def _grpo_loss(policy: Any, ref_policy: Any | None, segmenter: Any, batch: Any, config: GRPOLossConfig | None,
               *, with_logps: bool) -> tuple[torch.Tensor, dict[str, float], list[torch.Tensor] | None]:
    config = config if config is not None else GRPOLossConfig()
    if len(batch) == 0:
        raise ValueError("Invalid batch: no rollouts. Pass a RolloutBatch with at least one group.")
    temperature = _temperature(batch, config)
    hidden = batch_hidden_states(policy, batch.trajectories, batching=config.update_batching)
    rows = token_rows(batch, hidden)
    impl = config.resolved_impl(rows.hidden)
    need_decode = config.calibration or config.aux_mask_weight > 0
    decodes = (decode_batch_segs(policy, segmenter, batch, hidden, spatial=config.aux_mask_weight > 0,
                                 max_segs=config.max_segs) if need_decode else None)
    bonus, m_values = (_seg_bonus(batch, rows, decodes, config, impl) if config.calibration and decodes is not None
                       else (None, None))
    use_ref = config.beta > 0 and (batch.ref_logps is not None or ref_policy is not None)
    ref_logps = _ref_logprobs(ref_policy, batch, rows, impl, temperature, config) if use_ref else None
    old_logps = _old_rows(batch, rows)
    max_len = _max_len(rows, config)
    h, w = _cast_for_logprobs(rows.hidden, _lm_head_weight(policy), config, impl)
    kwargs = dict(
        seq_ids=rows.seq_ids, old_logps=old_logps, ref_logps=ref_logps, seg_bonus=bonus, beta=config.beta,
        kl_type=config.kl_type, clip_low=config.clip_low, clip_high=config.clip_high,
        loss_agg_mode=config.loss_agg_mode, temperature=temperature, max_len=max_len,
    )
    entropy = None
    if impl == "eager":
        rl_loss, logps = grpo_loss_ref(h, w, rows.target_ids, rows.loss_mask, rows.advantages, **kwargs)
    elif impl == "chunked":
        rl_loss, logps, entropy = chunked_linear_grpo_loss(h, w, rows.target_ids, rows.loss_mask, rows.advantages,
                                                           return_entropy=True, chunk_size=config.chunk_size, **kwargs)
    else:
        rl_loss, logps, entropy = triton_linear_grpo_loss(h, w, rows.target_ids, rows.loss_mask, rows.advantages,
                                                          return_entropy=True, **kwargs)
    loss = rl_loss
    aux_metrics: dict[str, float] = {}
    if config.aux_mask_weight > 0 and decodes is not None:
        aux, aux_metrics = _aux_mask_loss(batch, decodes)
        if aux is not None:
            loss = loss + config.aux_mask_weight * aux
            aux_metrics["aux_mask_loss"] = float(aux.detach())
    metrics = _metrics(rows, logps.detach(), entropy, old_logps, ref_logps, bonus, m_values, config, max_len)
    metrics.update(aux_metrics)
    metrics["policy_loss"] = float(rl_loss.detach())
    metrics["loss"] = float(loss.detach())
    metrics["loss_nonfinite"] = float(not bool(torch.isfinite(loss.detach())))
    per_token = None
    if with_logps:
        lpc = logps.detach().float() + (bonus.detach() if bonus is not None else 0.0)
        per_token = _per_token(batch, rows, lpc)
    return loss, metrics, per_token


def _metrics(rows: TokenRows, lp: torch.Tensor, entropy: torch.Tensor | None, old: torch.Tensor | None,
             ref: torch.Tensor | None, bonus: torch.Tensor | None, m_values: torch.Tensor | None,
             config: GRPOLossConfig, max_len: int) -> dict[str, float]:
    """Detached diagnostics; the aggregations reuse the kernels' own so they match the loss's terms."""
    mask = rows.loss_mask
    num = max(int(mask.sum()), 1)
    b = bonus.detach() if bonus is not None else None
    common = dict(seq_ids=rows.seq_ids, loss_agg_mode=config.loss_agg_mode, max_len=max_len)
    pg = grpo_loss_from_logps(lp, mask, rows.advantages, old_logps=old, seg_bonus=b, beta=0.0,
                              clip_low=config.clip_low, clip_high=config.clip_high, **common)
    out = {"pg_loss": float(pg), "num_loss_tokens": float(mask.sum())}
    zeros = torch.zeros_like(rows.advantages)
    if ref is not None:
        out["kl_loss"] = float(grpo_loss_from_logps(lp, mask, zeros, ref_logps=ref, beta=config.beta, kl_type=config.kl_type, **common))
        out["kl"] = float(grpo_loss_from_logps(lp, mask, zeros, ref_logps=ref, beta=1.0, kl_type=config.kl_type,
                                               seq_ids=rows.seq_ids, loss_agg_mode="token-mean"))
    if old is not None:
        lpc = lp + b if b is not None else lp
        ratio = torch.exp(lpc - old)
        adv = rows.advantages
        clipped = ((ratio < 1 - config.clip_low) & (adv < 0)) | ((ratio > 1 + config.clip_high) & (adv > 0))
        out["clip_frac"] = float((clipped & mask).sum()) / num
    else:
        out["clip_frac"] = 0.0
    if entropy is not None:
        out["entropy"] = float(entropy.detach()[mask].sum()) / num
    if m_values is not None:
        out["num_seg"] = float(m_values.numel())
        out["calibration_m"] = float(m_values.detach().mean()) if m_values.numel() else 0.0
    return out


def _plain_logprobs(policy: Any, batch: Any, config: GRPOLossConfig) -> tuple[list[torch.Tensor], TokenRows, str, torch.Tensor]:
    """``(hidden, rows, impl, lp)``: ``policy``'s log-probs of the sampled ids at the scored positions, without
    calibration, computed as :func:`compute_grpo_loss` computes them (the caller decides about gradients)."""
    hidden = batch_hidden_states(policy, batch.trajectories, batching=config.update_batching)
    rows = token_rows(batch, hidden)
    impl = config.resolved_impl(rows.hidden)
    h, w = _cast_for_logprobs(rows.hidden, _lm_head_weight(policy), config, impl)
    return hidden, rows, impl, _target_logprobs(impl, h, w, rows.target_ids, _temperature(batch, config), config.chunk_size)


def behaviour_logps(policy: Any, segmenter: Any, batch: Any, config: GRPOLossConfig | None = None) -> list[torch.Tensor]:
    """The behaviour policy's calibrated per-token log-probs, to store in ``batch.old_logps`` before the
    first of ``num_iterations > 1`` updates on one batch (the clipped ratio is ``exp(lpc - old)``).

    Scored exactly as :func:`compute_grpo_loss` scores the policy (same temperature, dtype, LM-head path
    and calibration), so the ratio is 1 at the first iteration.

    Returns:
        ``B`` tensors ``(L_i,) float32``: entry ``j`` is log pi(input_ids[j]) (+ m at a kept [SEG]), 0 where
        ``response_mask`` is 0.
    """
    config = config if config is not None else GRPOLossConfig()
    with torch.no_grad():
        hidden, rows, impl, lp = _plain_logprobs(policy, batch, config)
        if config.calibration:
            decodes = decode_batch_segs(policy, segmenter, batch, hidden, spatial=False, max_segs=config.max_segs)
            lp = lp + _seg_bonus(batch, rows, decodes, config, impl)[0]
        return _per_token(batch, rows, lp)


def reference_logps(ref_policy: Any, batch: Any, config: GRPOLossConfig | None = None) -> list[torch.Tensor]:
    """The frozen reference policy's per-token log-probs of a batch, to store in ``batch.ref_logps`` once: every
    one of ``num_iterations`` updates on the batch (and every micro-batch cut from it with ``select``) then
    reads them instead of running the reference forward again.

    Scored exactly as :func:`compute_grpo_loss` scores the reference itself (same temperature, dtype and
    LM-head path; no calibration: the KL is on the plain log-probs), under ``torch.no_grad``.

    Returns:
        ``B`` tensors ``(L_i,) float32`` on the CPU: entry ``j`` is log pi_ref(input_ids[j]), 0 where
        ``response_mask`` is 0.
    """
    config = config if config is not None else GRPOLossConfig()
    with torch.no_grad():
        _, rows, _, lp = _plain_logprobs(ref_policy, batch, config)
        return _per_token(batch, rows, lp)
