"""``videoseg-o3 info``: what this installation can do, as JSON."""

from __future__ import annotations

import argparse
import importlib.metadata
import json

NAME = "info"
HELP = "Print the installation's capabilities (extension, CUDA, decoders, versions) as JSON."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--indent", type=int, default=2, help="JSON indentation (0 for one line).")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect_info() -> dict:
    """The fields printed by ``info``: version, extension flags, CUDA, usable decoders, library versions."""
    from videoseg_o3 import __version__, _ext
    from videoseg_o3.device import cuda_available

    info = {
        "version": __version__,
        "extension": _ext.HAS_C,
        "extension_error": _ext.C_ERROR,
        "cuda_extension": _ext.HAS_CUDA_EXT,
        "cuda_extension_error": _ext.CUDA_ERROR,
        "cuda_available": cuda_available(),
    }
    try:
        from videoseg_o3.io import available_backends

        info["decoders"] = available_backends()
    except ImportError as exc:
        info["decoders"] = []
        info["decoders_error"] = str(exc)
    for dist in ("torch", "transformers", "sam2", "triton", "onnx", "onnxruntime", "tensorrt", "av", "torchcodec", "PyNvVideoCodec"):
        info[f"{dist.lower()}_version"] = _version(dist)
    return info


def run(args: argparse.Namespace) -> int:
    print(json.dumps(collect_info(), indent=args.indent or None))
    return 0
