"""The export directory (``manifest.json`` + graph files) and the graph runners that execute them.

A runner takes named tensors and returns the graph's outputs, in the manifest's order, as torch tensors:
:class:`OrtGraph` on ONNX Runtime (CPU, or CUDA when onnxruntime-gpu and a GPU are there) and
:class:`TrtGraph` on a deserialised TensorRT engine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

BACKENDS = ("torch", "onnxruntime", "tensorrt")
MANIFEST_FILE = "manifest.json"
DEFAULT_EXPORT_DIR = "export"  # CKPT/export when no export directory is given
GRAPH_BACKENDS = ("onnxruntime", "tensorrt")


def check_backend(backend: str) -> str:
    """Validate a backend name; returns it unchanged."""
    if backend not in BACKENDS:
        raise ValueError(f"Invalid backend ({backend}). Supported values are {', '.join(BACKENDS)}.")
    return backend


def read_manifest(export_dir: str | Path) -> dict[str, Any]:
    """``manifest.json`` of an export directory, with a one-line error saying how to make one."""
    path = Path(export_dir) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No {MANIFEST_FILE} in {export_dir}: export the checkpoint first with "
                                f"`python -m export.trt CKPT --out {export_dir}`.")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"Invalid {path}: not JSON ({err}).") from err
    if not isinstance(manifest, dict) or not isinstance(manifest.get("components"), dict):
        raise ValueError(f"Invalid {path}: expected an object with a 'components' entry.")
    return manifest


class OrtGraph:
    """One ONNX file on ONNX Runtime.

    Args:
        path: the ``.onnx`` file.
        device: where outputs are returned (inputs may be on any device; they go through NumPy).
        threads: intra-op threads (None: ONNX Runtime's default, one per core).
    """

    def __init__(self, path: str | Path, device: torch.device | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        self.device = device if device is not None else torch.device("cpu")
        providers = ["CPUExecutionProvider"]
        if self.device.type != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._input_types = {i.name: i.type for i in self.session.get_inputs()}

    def __call__(self, **inputs: torch.Tensor) -> list[torch.Tensor]:
        feed = {}
        for name in self.input_names:
            value = inputs[name]
            array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            if self._input_types[name] == "tensor(float)" and array.dtype != np.float32:
                array = array.astype(np.float32)
            feed[name] = array
        return [torch.from_numpy(out).to(self.device) for out in self.session.run(None, feed)]


class TrtGraph:
    """A serialised TensorRT engine (built by ``python -m export.trt``), run on the current CUDA stream.

    Uses the name-based I/O API of TensorRT 10: ``set_input_shape`` / ``set_tensor_address`` per tensor,
    output shapes read back from the context once the inputs are set, ``execute_async_v3``.
    """

    def __init__(self, path: str | Path, device: torch.device) -> None:
        import tensorrt as trt

        self._trt = trt
        self.device = device
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise ValueError(f"Invalid engine {path}: TensorRT could not deserialise it (built by another TensorRT "
                             "version or for another GPU?). Rebuild it with `python -m export.trt`.")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) != mode]

    def _torch_dtype(self, name: str) -> torch.dtype:
        trt = self._trt
        table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.bfloat16: torch.bfloat16,
                 trt.int32: torch.int32, trt.int64: torch.int64, trt.bool: torch.bool}
        return table[self.engine.get_tensor_dtype(name)]

    def __call__(self, **inputs: torch.Tensor) -> list[torch.Tensor]:
        keep = []
        for name in self.input_names:
            value = inputs[name].to(self.device, self._torch_dtype(name)).contiguous()
            keep.append(value)
            self.context.set_input_shape(name, tuple(value.shape))
            self.context.set_tensor_address(name, value.data_ptr())
        outputs = []
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            out = torch.empty(shape, dtype=self._torch_dtype(name), device=self.device)
            outputs.append(out)
            self.context.set_tensor_address(name, out.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed (see the TensorRT log above).")
        stream.synchronize()
        return outputs


def load_graphs(export_dir: str | Path, backend: str, device: torch.device,
                components: tuple[str, ...]) -> dict[str, Any]:
    """A runner per component, from the manifest's ``file`` (ONNX) or ``engine`` (TensorRT) entries."""
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    graphs: dict[str, Any] = {}
    for component in components:
        entry = manifest["components"].get(component)
        if entry is None:
            raise ValueError(f"Invalid export directory {export_dir}: it has no '{component}' graph; export it with "
                             f"`python -m export.trt CKPT --out {export_dir}` (all components are the default).")
        if backend == "tensorrt":
            engine = entry.get("engine")
            if not engine:
                raise ValueError(f"Invalid backend (tensorrt): {export_dir} has no TensorRT engine for {component} "
                                 f"({manifest.get('tensorrt', {}).get('status', 'not built')}). Use backend='onnxruntime'.")
            graphs[component] = TrtGraph(export_dir / engine, device)
        else:
            graphs[component] = OrtGraph(export_dir / entry["file"], device)
    return graphs


def load_backend(checkpoint: str | Path, backend: str, *, export_dir: str | Path | None = None,
                 device: torch.device | None = None) -> tuple[Any, Any, Any]:
    """``(policy, segmenter, protocol)`` running on the graphs of ``export_dir`` (default ``CKPT/export``).

    The segmenter is sam2's video predictor (loaded from the checkpoint, for its bookkeeping and small
    projections) with its four heavy modules replaced by graphs; the policy is a
    :class:`~videoseg_o3.runtime.policy_graphs.GraphPolicy` (tokenizer, processor, projector and config
    from the checkpoint, no language-model weights in PyTorch).
    """
    from videoseg_o3.checkpoint import POLICY_DIR, SEGMENTER_DIR, read_checkpoint_config
    from videoseg_o3.runtime.policy_graphs import GraphPolicy
    from videoseg_o3.runtime.sam2_graphs import attach_graphs
    from videoseg_o3.segmenter import Sam2Segmenter

    check_backend(backend)
    if backend not in GRAPH_BACKENDS:
        raise ValueError(f"Invalid backend ({backend}) for graph loading. Supported values are {', '.join(GRAPH_BACKENDS)}.")
    device = device if device is not None else torch.device("cpu")
    if backend == "tensorrt" and device.type == "cpu":
        raise ValueError("Invalid device (cpu) for backend tensorrt: TensorRT engines run on a CUDA device.")
    checkpoint = Path(checkpoint)
    config = read_checkpoint_config(checkpoint)
    export_dir = Path(export_dir) if export_dir is not None else checkpoint / DEFAULT_EXPORT_DIR
    graphs = load_graphs(export_dir, backend, device, (
        "sam2_image_encoder", "sam2_seg_decoder", "sam2_memory_encoder", "sam2_memory_attention",
        "vision_encoder", "language_model"))
    segmenter = Sam2Segmenter.from_pretrained(checkpoint / SEGMENTER_DIR, device=device)
    attach_graphs(segmenter, graphs)
    policy = GraphPolicy.from_pretrained(checkpoint / POLICY_DIR, graphs, device=device)
    return policy, segmenter, config.protocol
