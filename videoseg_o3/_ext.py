"""Loads the compiled extension modules once.

``_C`` (C++, always built) holds the CPU ops; ``_C_cuda`` (built only when a CUDA compiler was
found at install time) holds their CUDA twins. A failed load degrades to the torch reference ops
with ONE loud warning, as sam2 does for its own extension, unless ``VIDEOSEG_REQUIRE_EXT=1``
(CI sets it) — then the import error is raised, so a broken build cannot pass silently.

Attributes:
    C: the ``_C`` module or None.
    C_CUDA: the ``_C_cuda`` module or None (None also when the CUDA runtime cannot load).
    HAS_C, HAS_CUDA_EXT: booleans.
    C_ERROR, CUDA_ERROR: why a module did not load (str) or None.
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType


def _load(name: str) -> tuple[ModuleType | None, str | None]:
    try:
        return importlib.import_module(f"videoseg_o3.{name}"), None
    except ImportError as exc:  # missing build or unloadable shared library
        return None, f"{type(exc).__name__}: {exc}"


C, C_ERROR = _load("_C")
C_CUDA, CUDA_ERROR = _load("_C_cuda")
HAS_C = C is not None
HAS_CUDA_EXT = C_CUDA is not None

if not HAS_C:
    if os.environ.get("VIDEOSEG_REQUIRE_EXT", "0") == "1":
        raise ImportError(
            "VIDEOSEG_REQUIRE_EXT=1 but the compiled extension videoseg_o3._C did not load "
            f"({C_ERROR}). Reinstall with `pip install -v .` and read the CMake log."
        )
    warnings.warn(
        "videoseg_o3._C (compiled frame preparation) is not available; falling back to the "
        f"slower torch reference ops. Reason: {C_ERROR}. Reinstall with `pip install -v .` to build it.",
        RuntimeWarning,
        stacklevel=2,
    )
