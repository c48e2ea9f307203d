"""Models and backends for bench/latency.py.

Latency does not depend on weight values, so the real-size configurations are built with random
weights in code (nothing is downloaded): the Qwen3-VL-2B-Instruct architecture (28 decoder layers of
width 2048, a 24-block vision tower of width 1024 with DeepStack taps at 5/11/17, the published
config's numbers) and SAM2 Hiera-L at 1024 px. ``--ckpt`` measures a real checkpoint instead.

Backends: ``eager`` (PyTorch as loaded), ``compile`` (the library's compile option,
:func:`videoseg_o3.runtime.compile_pipeline`: ``torch.compile`` of the policy's decode step and SAM2's ``[SEG]``
decoder), and the exported engines ``onnxruntime`` and ``tensorrt``,
which are loaded through ``VideoSegO3.from_pretrained(..., backend=name, export_dir=...)``. When the
checkpoint has no export yet, :func:`ensure_export` makes one with the export package's Python API
(``export.trt.export_all``, the function behind ``python -m export.trt``) and times it: a one-off cost,
reported apart from the per-video latency. The graph backends need a Qwen3-VL policy (the only family the
exporter supports); on any other, or when exporting or loading fails, the backend is reported as
unavailable with the reason.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import json
import time
from pathlib import Path
from typing import Any

import torch

from videoseg_o3 import device as devices

MODEL_SIZES = ("tiny", "real")
BACKENDS = ("eager", "compile", "onnxruntime", "tensorrt")
EXPORTED_BACKENDS = ("onnxruntime", "tensorrt")


def qwen3_vl_2b_config() -> Any:
    """The Qwen3-VL-2B-Instruct architecture as a transformers config (published config.json values)."""
    from transformers import Qwen3VLConfig

    text = dict(
        vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
        num_key_value_heads=8, head_dim=128, max_position_embeddings=262144, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [24, 20, 20],
                         "mrope_interleaved": True},
    )
    vision = dict(
        depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, patch_size=16, spatial_merge_size=2,
        temporal_patch_size=2, out_hidden_size=2048, num_position_embeddings=2304, deepstack_visual_indexes=[5, 11, 17],
    )
    return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True)


def build_models(size: str, device: torch.device, policy_dtype: torch.dtype, seed: int = 0) -> tuple[Any, Any]:
    """``(policy, segmenter)`` with random weights on ``device``.

    ``tiny``: the test configs (2-layer Qwen3-VL of width 64; SAM2 Hiera-T at 256 px).
    ``real``: Qwen3-VL-2B architecture; SAM2 Hiera-L at 1024 px (built directly on ``device``).
    """
    from videoseg_o3.policy import SegPolicy
    from videoseg_o3.policy.configs import model_class
    from videoseg_o3.policy.tokenizer import build_processor
    from videoseg_o3.segmenter import Sam2Segmenter, SegmenterConfig

    if size not in MODEL_SIZES:
        raise ValueError(f"Invalid model size ({size}). Supported values are {', '.join(MODEL_SIZES)}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if size == "tiny":
            policy = SegPolicy.tiny("qwen3_vl", seed=seed, dtype=policy_dtype)
            policy.model.to(device)
            policy.projector.to(device)
            seg_cfg = SegmenterConfig(model_config="sam2_hiera_t", image_size=256)
        else:
            with torch.device(device):
                model = model_class("qwen3_vl")(qwen3_vl_2b_config()).to(policy_dtype)
            policy = SegPolicy(model, build_processor("qwen3_vl"), "qwen3_vl")
            policy.eval()
            seg_cfg = SegmenterConfig(model_config="sam2_hiera_l", image_size=1024)
        segmenter = Sam2Segmenter.from_config(seg_cfg, device=device)
    return policy, segmenter


def backend_parameter_available() -> bool:
    """Whether this library's ``VideoSegO3.from_pretrained`` takes a ``backend`` argument."""
    from videoseg_o3.pipeline import VideoSegO3

    return "backend" in inspect.signature(VideoSegO3.from_pretrained).parameters


def backend_status(name: str, device: torch.device) -> str | None:
    """None when ``name`` can be tried here, else why not (the report says ``unavailable: <reason>``)."""
    if name not in BACKENDS:
        raise ValueError(f"Invalid backend ({name}). Supported values are {', '.join(BACKENDS)}.")
    if name == "eager":
        return None
    if name == "compile":
        return None if hasattr(torch, "compile") else f"torch {torch.__version__} has no torch.compile"
    if not backend_parameter_available():
        return "VideoSegO3.from_pretrained has no backend parameter in this version of the library"
    if name == "onnxruntime" and importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed"
    if name == "tensorrt":
        if importlib.util.find_spec("tensorrt") is None:
            return "TensorRT is not installed (`import tensorrt` fails)"
        if device.type != devices.ACCELERATOR:
            return "TensorRT needs a CUDA device"
    return None


@dataclasses.dataclass
class ExportRecord:
    """What :func:`ensure_export` did: ``status`` is ``"exported"`` (made now, ``seconds`` long),
    ``"existing"`` (a ``manifest.json`` was there already) or ``"failed"`` (``reason`` says why)."""

    status: str
    export_dir: str
    seconds: float | None = None
    components: list[str] = dataclasses.field(default_factory=list)
    verified: bool | None = None
    tensorrt: str | None = None
    reason: str | None = None
    log: list[str] = dataclasses.field(default_factory=list)


def ensure_export(ckpt: Path, export_dir: Path, policy_family: str, *, engines: bool,
                  verify: bool = True) -> ExportRecord:
    """Make sure ``export_dir`` holds the graphs of ``ckpt``: reuse an existing export, else export now.

    ``engines``: also build TensorRT engines (only where TensorRT and a GPU exist; the exporter says why
    not otherwise). ``verify``: run the exporter's ONNX Runtime checks against PyTorch (part of the
    one-off cost; a graph that fails them makes the export ``failed``).
    """
    from videoseg_o3.runtime import MANIFEST_FILE

    if (export_dir / MANIFEST_FILE).is_file():
        manifest = json.loads((export_dir / MANIFEST_FILE).read_text())
        made_from = manifest.get("checkpoint")
        if made_from is not None and Path(made_from).resolve() != Path(ckpt).resolve():
            return ExportRecord("failed", str(export_dir), reason=f"the export in {export_dir} was made from "
                                f"{made_from}, not {ckpt}; choose another --export-dir")
        return ExportRecord("existing", str(export_dir), components=sorted(manifest.get("components", {})),
                            verified=not manifest.get("verification_failed"),
                            tensorrt=manifest.get("tensorrt", {}).get("status"))
    if policy_family != "qwen3_vl":
        return ExportRecord("failed", str(export_dir), reason=f"the exporter supports Qwen3-VL policies only "
                                                              f"(this checkpoint's policy is {policy_family})")
    from export import shapes
    from export.trt import export_all

    lines: list[str] = []
    start = time.perf_counter()
    try:
        manifest = export_all(ckpt, export_dir, components=list(shapes.COMPONENTS), verify=verify,
                              build_engines=engines, log=lines.append)
    except (Exception, SystemExit) as err:  # noqa: BLE001 - the exporter's failures become the backend's reason
        return ExportRecord("failed", str(export_dir), seconds=time.perf_counter() - start, log=lines,
                            reason=f"export failed: {type(err).__name__}: {err}")
    seconds = time.perf_counter() - start
    failed = manifest["verification_failed"]
    return ExportRecord("failed" if failed else "exported", str(export_dir), seconds=seconds,
                        components=sorted(manifest["components"]), verified=not failed if verify else None,
                        tensorrt=manifest["tensorrt"]["status"], log=lines,
                        reason=f"graphs failed verification: {', '.join(failed)}" if failed else None)


def load_exported(name: str, ckpt: Path, export_dir: Path, device: torch.device, protocol: Any,
                  generation: Any) -> Any:
    """``VideoSegO3.from_pretrained(ckpt, backend=name, export_dir=...)``; exceptions propagate (the caller
    reports them)."""
    from videoseg_o3.pipeline import VideoSegO3

    return VideoSegO3.from_pretrained(ckpt, device=device, protocol=protocol, generation=generation, backend=name,
                                      export_dir=export_dir)


def with_sam2_precision(segmenter: Any, bf16: bool) -> None:
    """Switch SAM2's bf16 autocast on or off in place (the config field the segmenter reads per call);
    a segmenter without that config (an exported engine has its own precision) is left as it is."""
    config = getattr(segmenter, "config", None)
    if dataclasses.is_dataclass(config) and hasattr(config, "autocast_bf16"):
        segmenter.config = dataclasses.replace(config, autocast_bf16=bool(bf16))
