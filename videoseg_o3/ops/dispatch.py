"""A registry of op implementations and the rule that picks one.

Every op has up to five tiers with one signature: ``torch`` (the plain reference, ``<op>_ref``),
``c`` (the compiled C++ extension), ``cuda`` (its CUDA twin), ``triton`` (kernels/ registers these
when imported). ``VIDEOSEG_KERNEL_IMPL=auto|torch|c|cuda|triton`` chooses: ``auto`` takes the best
available for the inputs silently; an explicit request for an unavailable tier raises with the reason.

Why a registry rather than if/else: ``kernels/`` lives outside the installed package and must plug
its Triton implementations in without the library importing it (docs/architecture.md#dependency-direction).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

IMPL_NAMES = ("auto", "torch", "c", "cuda", "triton")
ENV_VAR = "VIDEOSEG_KERNEL_IMPL"


@dataclass(frozen=True)
class Impl:
    """One implementation of one op.

    Attributes:
        fn: the callable, same signature as the reference.
        priority: higher wins under ``auto``.
        supports: predicate on the call's (args, kwargs): can this tier take these inputs
            (e.g. the CUDA tier needs CUDA tensors)? ``auto`` skips tiers that say no.
        unavailable_reason: why this tier cannot run at all here, or None when it can.
    """

    fn: Callable[..., Any]
    priority: int
    supports: Callable[[tuple, dict], bool]
    unavailable_reason: str | None = None


_REGISTRY: dict[str, dict[str, Impl]] = {}


def _always(args: tuple, kwargs: dict) -> bool:
    return True


def register_impl(
    op: str,
    impl: str,
    fn: Callable[..., Any],
    *,
    priority: int,
    supports: Callable[[tuple, dict], bool] = _always,
    unavailable_reason: str | None = None,
) -> None:
    """Register ``fn`` as tier ``impl`` of ``op`` (re-registering replaces it)."""
    if impl not in IMPL_NAMES or impl == "auto":
        raise ValueError(f"Invalid impl ({impl}). Supported values are {', '.join(IMPL_NAMES[1:])}.")
    _REGISTRY.setdefault(op, {})[impl] = Impl(fn, priority, supports, unavailable_reason)


def registered(op: str) -> dict[str, Impl]:
    """All tiers registered for ``op`` (a copy)."""
    return dict(_REGISTRY.get(op, {}))


def requested_impl(impl: str | None = None) -> str:
    """The tier asked for: the argument, else ``$VIDEOSEG_KERNEL_IMPL``, else ``auto``."""
    name = (impl or os.environ.get(ENV_VAR) or "auto").strip().lower()
    if name not in IMPL_NAMES:
        raise ValueError(f"Invalid {ENV_VAR} ({name}). Supported values are {', '.join(IMPL_NAMES)}.")
    return name


def select_impl(op: str, args: tuple, kwargs: dict, impl: str | None = None) -> tuple[str, Callable[..., Any]]:
    """Pick the implementation of ``op`` for this call.

    Returns:
        (tier name, callable).
    Raises:
        KeyError: ``op`` has no registered implementation.
        RuntimeError: an explicitly requested tier is missing, unavailable or cannot take these inputs.
    """
    tiers = _REGISTRY.get(op)
    if not tiers:
        raise KeyError(f"No implementation registered for op {op!r}.")
    name = requested_impl(impl)
    if name != "auto":
        chosen = tiers.get(name)
        if chosen is None:
            raise RuntimeError(
                f"{ENV_VAR}={name} was requested for {op!r}, which has only: {', '.join(sorted(tiers))}"
                + (" (import the top-level `kernels` package to register Triton kernels)" if name == "triton" else "")
            )
        if chosen.unavailable_reason is not None:
            raise RuntimeError(f"{ENV_VAR}={name} was requested for {op!r} but it is unavailable: {chosen.unavailable_reason}")
        if not chosen.supports(args, kwargs):
            raise RuntimeError(f"{ENV_VAR}={name} was requested for {op!r} but it cannot take these inputs (device/dtype).")
        return name, chosen.fn
    candidates = sorted(
        ((t.priority, n, t) for n, t in tiers.items() if t.unavailable_reason is None and t.supports(args, kwargs)),
        key=lambda item: -item[0],
    )
    if not candidates:
        raise RuntimeError(f"No available implementation of {op!r} accepts these inputs.")
    _, chosen_name, chosen_impl = candidates[0]
    return chosen_name, chosen_impl.fn


def dispatch(op: str, *args: Any, impl: str | None = None, **kwargs: Any) -> Any:
    """Call the selected implementation of ``op``."""
    _, fn = select_impl(op, args, kwargs, impl)
    return fn(*args, **kwargs)
