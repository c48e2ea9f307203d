"""Shared helpers for the kernel tests: a verbose mismatch report, the low-precision rule, small GRPO problems.

No ``__init__.py`` here on purpose: a ``tests/kernels`` regular package could shadow the top-level
``kernels`` package; ``tests.kernels.kernel_cases`` imports as a namespace package instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pytest
import torch

from kernels._triton_support import INTERPRET
from tests.tolerances import LOWP_ERROR_FACTOR, TOL
from videoseg_o3.device import default_device

#: Where kernel tests put their tensors: the CPU under Triton's interpreter, else the accelerator.
KERNEL_DEVICE = torch.device("cpu") if INTERPRET else default_device()


def _report(name: str, actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float, context: str) -> str:
    a, e = actual.detach().double().reshape(-1), expected.detach().double().reshape(-1)
    diff = (a - e).abs()
    bad = diff > atol + rtol * e.abs()
    lines = [
        f"{name} mismatch ({context}): {int(bad.sum())}/{a.numel()} elements beyond atol={atol:g}, rtol={rtol:g}",
        f"  max abs err {diff.max().item():.3e}, max |expected| {e.abs().max().item():.3e}",
    ]
    for idx in torch.nonzero(bad).flatten()[:8].tolist():
        pos = tuple(torch.unravel_index(torch.tensor(idx), expected.shape)) if expected.dim() else ()
        lines.append(f"  at {tuple(int(p) for p in pos)}: actual {a[idx].item():+.8e} expected {e[idx].item():+.8e} diff {diff[idx].item():.3e}")
    return "\n".join(lines)


def assert_match(name: str, actual: torch.Tensor | None, expected: torch.Tensor | None, tol_key: str, context: str = "") -> None:
    """assert_close with the TOL entry ``tol_key`` and a Liger-style report of the worst elements."""
    if expected is None or actual is None:
        assert actual is None and expected is None, f"{name}: one side is None ({context}): actual={actual is None}, expected={expected is None}"
        return
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)} ({context})"
    atol, rtol = TOL[tol_key]
    a, e = actual.detach().double(), expected.detach().double()
    assert torch.isfinite(a).all() == torch.isfinite(e).all(), f"{name}: non-finite values differ ({context})"
    if not torch.allclose(a, e, atol=atol, rtol=rtol, equal_nan=True):
        pytest.fail(_report(name, actual, expected, atol, rtol, context))


def assert_lowp(name: str, fast: torch.Tensor, plain: torch.Tensor, ref32: torch.Tensor, context: str = "") -> None:
    """flash-attention's rule: the fast path's error vs fp32 is at most LOWP_ERROR_FACTOR x plain torch's (same dtype)."""
    fast_err = (fast.detach().double() - ref32.detach().double()).abs().max().item()
    plain_err = (plain.detach().double() - ref32.detach().double()).abs().max().item()
    floor = TOL["lowp_floor"][0]
    assert fast_err <= LOWP_ERROR_FACTOR * plain_err + floor, (
        f"{name} ({context}): low-precision error {fast_err:.3e} > {LOWP_ERROR_FACTOR} x plain torch's {plain_err:.3e} + {floor:g}"
    )


@dataclass
class GrpoProblem:
    """A small GRPO batch: tensors plus the keyword arguments of the loss."""

    hidden: torch.Tensor
    weight: torch.Tensor
    target_ids: torch.Tensor
    loss_mask: torch.Tensor
    advantages: torch.Tensor
    kwargs: dict = field(default_factory=dict)
    seg_bonus: torch.Tensor | None = None

    def to(self, device: torch.device) -> "GrpoProblem":
        """The same problem with every tensor on ``device``."""
        move = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
        return GrpoProblem(
            move(self.hidden), move(self.weight), move(self.target_ids), move(self.loss_mask), move(self.advantages),
            {k: move(v) for k, v in self.kwargs.items()}, move(self.seg_bonus),
        )

    def run(self, fn: Callable, dtype: torch.dtype | None = None, **extra) -> dict[str, torch.Tensor | None]:
        """Loss, logps and the gradients of hidden, weight and seg_bonus from ``fn`` (inputs cast to ``dtype``)."""
        dtype = dtype or self.hidden.dtype
        hidden = self.hidden.detach().to(dtype).clone().requires_grad_()
        weight = self.weight.detach().to(dtype).clone().requires_grad_()
        seg_bonus = self.seg_bonus.detach().clone().requires_grad_() if self.seg_bonus is not None else None
        loss, logps = fn(hidden, weight, self.target_ids, self.loss_mask, self.advantages, seg_bonus=seg_bonus, **self.kwargs, **extra)
        (loss + 0.1 * logps.sum()).backward()  # logps are differentiable too: exercise that path
        return {
            "loss": loss.detach(), "logps": logps.detach(), "grad_hidden": hidden.grad, "grad_weight": weight.grad,
            "grad_seg_bonus": seg_bonus.grad if seg_bonus is not None else None,
        }


def make_grpo_problem(
    n: int = 23,
    h: int = 40,
    v: int = 75,
    num_seqs: int = 3,
    *,
    logit_scale: float = 1.0,
    with_old: bool = True,
    with_ref: bool = True,
    with_seg: bool = True,
    mask_seq: int | None = None,
    zero_adv: bool = False,
    seed: int = 0,
    device: torch.device = KERNEL_DEVICE,
    **kwargs,
) -> GrpoProblem:
    """Random GRPO batch. ``mask_seq`` fully masks that sequence; masked targets hold -100 (as HF pads them)."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g)
    weight = torch.randn(v, h, generator=g) * (logit_scale / h**0.5)
    target_ids = torch.randint(0, v, (n,), generator=g)
    seq_ids = torch.sort(torch.randint(0, num_seqs, (n,), generator=g)).values
    loss_mask = torch.rand(n, generator=g) > 0.25
    if n:
        loss_mask[0] = True
    if mask_seq is not None:
        loss_mask &= seq_ids != mask_seq
    target_ids = torch.where(loss_mask, target_ids, torch.full_like(target_ids, -100))
    seq_adv = torch.zeros(num_seqs) if zero_adv else torch.randn(num_seqs, generator=g)
    advantages = seq_adv[seq_ids]
    with torch.no_grad():
        logits = (hidden @ weight.T).log_softmax(-1)
        lp = logits.gather(1, target_ids.clamp(min=0)[:, None])[:, 0]
    seg_bonus = None
    if with_seg:
        seg_bonus = torch.zeros(n)
        seg_positions = torch.arange(n) % 7 == 3
        seg_bonus[seg_positions] = -torch.rand(int(seg_positions.sum()), generator=g)
    args = {"seq_ids": seq_ids}
    if with_old:
        # Wide spread so that clipping is active on both sides for some tokens.
        calibrated = lp + (seg_bonus if seg_bonus is not None else 0)
        args["old_logps"] = calibrated + 0.6 * torch.randn(n, generator=g)
    if with_ref:
        args["ref_logps"] = lp + 0.3 * torch.randn(n, generator=g)
    args.update(kwargs)
    return GrpoProblem(hidden, weight, target_ids, loss_mask, advantages, args, seg_bonus).to(device)
