"""TensorRT engines from the exported ONNX files (TensorRT 10 Python API).

Per graph: a builder and an (explicit-batch, the only kind in TensorRT 10) network definition filled by
``OnnxParser.parse_from_file``; one optimisation profile giving (min, opt, max) for every dynamic axis of
every input (``export.shapes.PROFILE_RANGES``, fixed axes min = opt = max); precision flags (``FP16`` /
``BF16``: TensorRT picks per layer among fp32 and the flagged precision, so the ONNX files stay fp32);
a timing cache shared by all graphs of one export and saved next to them (later builds on the same GPU
and TensorRT skip the kernel timing); ``build_serialized_network`` and the engine bytes written to
``<component>.engine``. ``videoseg_o3.runtime.manifest.TrtGraph`` loads them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from export import shapes

PRECISIONS = ("fp32", "fp16", "bf16")
TIMING_CACHE_FILE = "tensorrt.timing_cache"
WORKSPACE_BYTES = 4 << 30


def tensorrt_status() -> tuple[bool, str]:
    """``(available, reason)``: TensorRT needs its Python package and a CUDA device."""
    import torch

    if importlib.util.find_spec("tensorrt") is None:
        return False, "the tensorrt Python package is not installed (pip install tensorrt on a machine with an NVIDIA GPU)"
    if not torch.cuda.is_available():
        return False, "no CUDA device is visible (TensorRT builds engines for the GPU it runs on)"
    return True, "available"


def profile_shapes(component: str, dims: dict[str, int]) -> dict[str, tuple[tuple[int, ...], ...]]:
    """``{input: (min, opt, max)}`` for every input of ``component``."""
    out: dict[str, tuple[tuple[int, ...], ...]] = {}
    for name, shape in shapes.expand(component, dims, "inputs").items():
        triple = []
        for which in range(3):
            triple.append(tuple(shapes.PROFILE_RANGES[d][which] if isinstance(d, str) else int(d) for d in shape))
        out[name] = tuple(triple)
    return out


def build_engine(onnx_path: Path, engine_path: Path, component: str, dims: dict[str, int], *, precision: str,
                 timing_cache_path: Path) -> dict[str, Any]:
    """Build and serialise one engine; returns what the manifest records about it.

    Raises:
        ValueError: an unknown precision. RuntimeError: the parser or the builder failed (TensorRT's
        messages included).
    """
    import tensorrt as trt

    if precision not in PRECISIONS:
        raise ValueError(f"Invalid precision ({precision}). Supported values are {', '.join(PRECISIONS)}.")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    profile = builder.create_optimization_profile()
    ranges = profile_shapes(component, dims)
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        low, opt, high = ranges[tensor.name]
        profile.set_shape(tensor.name, low, opt, high)
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache_path.read_bytes() if timing_cache_path.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {onnx_path} (see the TensorRT log above).")
    engine_path.write_bytes(bytes(serialized))
    timing_cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return {
        "engine": engine_path.name,
        "precision": precision,
        "profile": {name: [list(s) for s in triple] for name, triple in ranges.items()},
        "tensorrt_version": trt.__version__,
    }
