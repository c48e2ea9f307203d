"""Ops with interchangeable implementations (torch reference, C++, CUDA, Triton).

See :mod:`videoseg_o3.ops.dispatch` for the selection rule. Op modules register their tiers on import.
"""

from videoseg_o3.ops.dispatch import IMPL_NAMES, dispatch, register_impl, registered, requested_impl, select_impl

__all__ = ["IMPL_NAMES", "dispatch", "register_impl", "registered", "requested_impl", "select_impl"]
