"""Exported graphs vs eager PyTorch: the SAM2 ``[SEG]`` decoder and one policy decode step.

In one run, on the same inputs: eager PyTorch (the wrapper modules ``export`` exports, which compute what
the library computes) and ONNX Runtime on the exported files; on a GPU also ``torch.compile`` (mode
``max-autotune``, CUDA graphs where they apply) and TensorRT engines when the ``tensorrt`` package is there.
Results are ratios against eager in the same run (goal: ONNX Runtime >= 1.3x eager on the CPU for the
decoder). The decode step is the language model on one token with a KV cache of ``--past`` tokens.

Deliberate simplifications: random weights (speed does not depend on them), median of ``--repeats`` timed
calls after warm-up, batch 1. Other processes slow every row alike; compare runs on the same machine.

    python bench/export.py                                      # tiny checkpoint built on the fly, CPU
    python bench/export.py --ckpt CKPT --past 2048 --json runs/export.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from export import onnx as onnx_module  # noqa: E402
from export import shapes  # noqa: E402
from videoseg_o3 import device as devices  # noqa: E402


def _time(fn: Callable[[], Any], repeats: int, sync: Callable[[], None]) -> float:
    for _ in range(3):
        fn()
    sync()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def _decoder_inputs(dims: dict[str, int], device: torch.device) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    out = {}
    for name, shape in shapes.expand("sam2_seg_decoder", dims, "inputs").items():
        out[name] = torch.randn([1 if isinstance(d, str) else d for d in shape], generator=gen).to(device)
    return out


def _decode_step_inputs(dims: dict[str, int], past: int, device: torch.device) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    out = {"input_ids": torch.tensor([[13]]), "position_ids": torch.full((3, 1, 1), past),
           "image_embeds": torch.zeros(0, dims["text_hidden"]),
           "deepstack_embeds": torch.zeros(dims["num_deepstack"], 0, dims["text_hidden"])}
    for i in range(dims["num_layers"]):
        for kind in ("key", "value"):
            out[f"past_{kind}_{i}"] = torch.randn(1, dims["kv_heads"], past, dims["head_dim"], generator=gen)
    return {k: v.to(device) for k, v in out.items()}


def bench_component(component: str, module: torch.nn.Module, inputs: dict[str, torch.Tensor], onnx_path: Path,
                    device: torch.device, repeats: int, trt_engine: Path | None,
                    threads: int | None = None) -> dict[str, float]:
    """Median seconds per call for each available path, and speed-ups over eager."""
    from videoseg_o3.runtime.manifest import OrtGraph

    names = list(shapes.expand(component, _dims_cache, "inputs"))
    args = tuple(inputs[n] for n in names)
    sync = (lambda: devices.synchronize(device))
    rows: dict[str, float] = {}
    with torch.inference_mode():
        rows["eager_s"] = _time(lambda: module(*args), repeats, sync)
        ort = OrtGraph(onnx_path, device, threads=threads)
        rows["onnxruntime_s"] = _time(lambda: ort(**inputs), repeats, sync)
        if device.type != "cpu":
            compiled = torch.compile(module, mode="max-autotune")
            rows["torch_compile_s"] = _time(lambda: compiled(*args), repeats, sync)
            if trt_engine is not None:
                from videoseg_o3.runtime.manifest import TrtGraph

                trt = TrtGraph(trt_engine, device)
                rows["tensorrt_s"] = _time(lambda: trt(**inputs), repeats, sync)
    for key in [k for k in rows if k != "eager_s"]:
        rows[key.replace("_s", "_speedup")] = rows["eager_s"] / rows[key]
    return rows


_dims_cache: dict[str, int] = {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", default=None, help="Checkpoint directory (default: a tiny one written to a temp dir).")
    parser.add_argument("--device", default="cpu", help="cpu or a CUDA device.")
    parser.add_argument("--past", type=int, default=512, help="KV-cache length of the decode step.")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None,
                        help="Intra-op threads for both torch and ONNX Runtime (default: each library's own default). "
                             "On a machine shared with other jobs, 1 gives the steadiest comparison.")
    parser.add_argument("--json", default=None, help="Also write the results here.")
    args = parser.parse_args(argv)
    from videoseg_o3.checkpoint import init_tiny_checkpoint, load_checkpoint
    from export.tensorrt_build import build_engine, tensorrt_status

    if args.threads:
        torch.set_num_threads(args.threads)
    device = devices.resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(args.ckpt) if args.ckpt else init_tiny_checkpoint(Path(tmp) / "tiny")
        policy, segmenter, _ = load_checkpoint(ckpt, device="cpu")
        policy, segmenter = policy.float().eval(), segmenter.eval()
        dims = shapes.checkpoint_dims(segmenter, policy)
        _dims_cache.update(dims)
        use_trt, trt_reason = tensorrt_status() if device.type != "cpu" else (False, "CPU run")
        results: dict[str, Any] = {"device": str(device), "platform": platform.platform(), "torch_threads": torch.get_num_threads(),
                                   "tensorrt": "used" if use_trt else f"not used: {trt_reason}", "past": args.past}
        for component, inputs in (("sam2_seg_decoder", _decoder_inputs(dims, torch.device("cpu"))),
                                  ("language_model", _decode_step_inputs(dims, args.past, torch.device("cpu")))):
            module = onnx_module.build_graph(component, segmenter, policy)
            path = Path(tmp) / f"{component}.onnx"
            example = onnx_module.example_inputs(component, dims, policy=policy, segmenter=segmenter)
            onnx_module.export_component(component, module, dims, path, example)
            engine = None
            if use_trt:
                engine = Path(tmp) / f"{component}.engine"
                build_engine(path, engine, component, dims, precision="fp16", timing_cache_path=Path(tmp) / "cache")
            module = module.to(device)
            inputs = {k: v.to(device) for k, v in inputs.items()}
            results[component] = bench_component(component, module, inputs, path, device, args.repeats, engine, args.threads)
    print(f"device {results['device']}, torch threads {results['torch_threads']}, TensorRT {results['tensorrt']}")
    print("| graph | eager ms | onnxruntime ms | onnxruntime / eager speed-up | torch.compile speed-up | TensorRT speed-up |")
    print("|---|---|---|---|---|---|")
    for component in ("sam2_seg_decoder", "language_model"):
        r = results[component]
        extra = [f"{r[k]:.2f}x" if k in r else "-" for k in ("torch_compile_speedup", "tensorrt_speedup")]
        print(f"| {component} | {r['eager_s'] * 1e3:.2f} | {r['onnxruntime_s'] * 1e3:.2f} | {r['onnxruntime_speedup']:.2f}x "
              f"| {extra[0]} | {extra[1]} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
