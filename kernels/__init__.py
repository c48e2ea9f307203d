"""Triton kernels for training (run from the checkout; not part of the installed wheel).

Importing this package registers each kernel with :mod:`videoseg_o3.ops` so the library's
dispatcher can choose it (``VIDEOSEG_KERNEL_IMPL=triton``):

- ``"grpo_loss"``: the GRPO policy loss fused with the LM head (:mod:`kernels.grpo_loss`);
  torch tier :func:`~kernels.grpo_loss.grpo_loss_ref`, Triton tier
  :func:`~kernels.grpo_loss.triton_linear_grpo_loss`.
- ``"seg_calibration"``: the [SEG] mask log-likelihood (:mod:`kernels.seg_calibration`).

The references stay importable (and registered) when Triton is missing. Under
``TRITON_INTERPRET=1`` (the CPU interpreter, for tests) the Triton tiers rank below torch, so
``auto`` keeps the fast path and only an explicit ``triton`` request runs the interpreter.
"""

from __future__ import annotations

import importlib.metadata


def _refuse_hub_kernels_clash() -> None:
    """Fail with the cause when Hugging Face's ``kernels`` distribution is installed.

    Its import name is this package's: run from the checkout (the repository root first on ``sys.path``),
    ``import kernels`` finds this package, and transformers, which imports Hugging Face's ``kernels`` whenever
    that distribution is installed (a requirement from transformers 5.25 on), fails with a bare
    ``cannot import name ... from 'kernels'``. This says why and what to do instead.
    """
    try:
        version = importlib.metadata.version("kernels")
    except importlib.metadata.PackageNotFoundError:
        return
    raise ImportError(
        f"Hugging Face's `kernels` package ({version}) is installed, and its import name is the same as this "
        f"checkout's kernels/ package ({__file__}): run from the checkout, transformers imports this one instead and "
        "fails. Uninstall it (`pip uninstall kernels`) and keep transformers below 5.25, which does not require it "
        "(scripts/install.sh pins it)."
    )


_refuse_hub_kernels_clash()

from videoseg_o3.ops import register_impl  # noqa: E402  (after the check: a clash must fail with its cause)

from kernels import _triton_support, grpo_loss, seg_calibration  # noqa: E402

#: ``auto`` ranking of the Triton tiers: above torch on a GPU, below it under the CPU interpreter.
TRITON_PRIORITY = -10 if _triton_support.INTERPRET else 20


def register() -> None:
    """(Re-)register every kernel's tiers with the op dispatcher (done once on import)."""
    reason = _triton_support.unavailable_reason()
    register_impl("grpo_loss", "torch", grpo_loss.grpo_loss_ref, priority=0)
    register_impl(
        "grpo_loss", "triton", grpo_loss.triton_linear_grpo_loss,
        priority=TRITON_PRIORITY, supports=grpo_loss.triton_supports, unavailable_reason=reason,
    )
    register_impl("seg_calibration", "torch", seg_calibration.seg_calibration_ref, priority=0)
    register_impl(
        "seg_calibration", "triton", seg_calibration.seg_calibration_triton,
        priority=TRITON_PRIORITY, supports=seg_calibration.triton_supports, unavailable_reason=reason,
    )


register()

__all__ = ["grpo_loss", "register", "seg_calibration"]
