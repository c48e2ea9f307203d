"""Running exported graphs: the ``onnxruntime`` and ``tensorrt`` backends of :class:`videoseg_o3.VideoSegO3`.

``python -m export.trt CKPT --out DIR`` writes ONNX files (and TensorRT engines where TensorRT and a GPU
exist) with a ``manifest.json``; :func:`load_backend` turns that directory into a policy and a segmenter
with the same interface as the PyTorch ones, so the agent and SAM2's propagation run unchanged:

- the policy's vision encoder and language model (KV cache in and out, 3-D M-RoPE positions computed by
  the agent on the whole dialogue) run as graphs; tokenisation, the chat template and M-RoPE position
  indexing stay in Python (:mod:`videoseg_o3.runtime.policy_graphs`);
- SAM2's image encoder, ``[SEG]`` prompt encoder + mask decoder, memory encoder and memory attention run
  as graphs inside sam2's own video predictor, which keeps the memory bookkeeping (which frames to attend,
  temporal encodings, object pointers) in Python (:mod:`videoseg_o3.runtime.sam2_graphs`).

The library never imports ``export``: the manifest is the contract between the two.

On the PyTorch backend, :func:`compile_pipeline` (``VideoSegO3.from_pretrained(..., compile=MODE)``) applies
``torch.compile`` to the policy's decode step and SAM2's ``[SEG]`` decoder (:mod:`videoseg_o3.runtime.compiled`).
"""

from videoseg_o3.runtime.compiled import COMPILE_MODES, CompileConfig, CompiledRuntime, check_compile, compile_pipeline
from videoseg_o3.runtime.manifest import BACKENDS, MANIFEST_FILE, check_backend, load_backend

__all__ = ["BACKENDS", "COMPILE_MODES", "MANIFEST_FILE", "CompileConfig", "CompiledRuntime", "check_backend",
           "check_compile", "compile_pipeline", "load_backend"]
