"""videoseg_o3: reasoning video object segmentation with a multi-turn VLM policy and SAM2.

The package is the library: video I/O, benchmark data, the turn protocol, the policy, the
segmenter, the agent loop, rewards, metrics and the runtime. Heavy submodules load lazily so that
``import videoseg_o3`` stays cheap (the CLI's ``info`` must answer in well under a second).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Public names resolved on first access: name -> "module:attribute".
_LAZY = {
    "VideoSegO3": "videoseg_o3.pipeline:VideoSegO3",
    "open_video": "videoseg_o3.io:open_video",
    "VideoDecodeError": "videoseg_o3.io:VideoDecodeError",
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'videoseg_o3' has no attribute {name!r}")
    import importlib

    module_name, attr = target.split(":")
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value


__all__ = ["__version__", *_LAZY]
