"""Exported graphs vs eager PyTorch: the SAM2 ``[SEG]`` decoder and one policy decode step.

In one run, on the same inputs: eager PyTorch (the wrapper modules ``export`` exports, which compute what
the library computes) and ONNX Runtime on the exported files; TensorRT engines on a GPU when the ``tensorrt``
package is there; and ``torch.compile`` as the library applies it (``VideoSegO3.from_pretrained(compile=MODE)``,
:func:`videoseg_o3.runtime.compile_pipeline`; ``--compile``, default ``reduce-overhead`` with CUDA graphs on a
GPU, off on a CPU where compiling takes minutes), timed against the library's own eager call of the same step
(SAM2's mask decoder as sam2 calls it; the language model on a ``DynamicCache``, then the LM head).
Results are ratios against eager in the same run (goal: ONNX Runtime >= 1.3x eager on the CPU for the
decoder). The decode step is the language model on one token with a KV cache of ``--past`` tokens.

Deliberate simplifications: random weights (speed does not depend on them), median of ``--repeats`` timed
calls after warm-up, batch 1. Other processes slow every row alike; compare runs on the same machine.

    python bench/export.py                                      # tiny checkpoint built on the fly, CPU
    python bench/export.py --ckpt CKPT --past 2048 --json runs/export.json
    python bench/export.py --compile default                    # also torch.compile on the CPU (minutes)
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
            if trt_engine is not None:
                from videoseg_o3.runtime.manifest import TrtGraph

                trt = TrtGraph(trt_engine, device)
                rows["tensorrt_s"] = _time(lambda: trt(**inputs), repeats, sync)
    for key in [k for k in rows if k != "eager_s"]:
        rows[key.replace("_s", "_speedup")] = rows["eager_s"] / rows[key]
    return rows


_dims_cache: dict[str, int] = {}


def bench_compiled(policy: Any, segmenter: Any, dims: dict[str, int], past: int, device: torch.device, repeats: int,
                   mode: str) -> dict[str, dict[str, Any]]:
    """The library's compile option vs the library's eager call, per component, on the same inputs.

    ``sam2_seg_decoder``: ``sam.sam_mask_decoder(...)`` with the padding-point + ``[SEG]`` prompt (the call of
    ``Sam2Segmenter.decode_features`` and of sam2's tracking step). ``language_model``: one token on a
    ``DynamicCache`` of ``past`` tokens, then the LM head (the call of the agent's ``DialogueContext.decode``).
    Returns per component ``library_eager_s``, ``torch_compile_s``, ``torch_compile_speedup`` and the runtime's
    ``compile`` statistics (graphs compiled: the decode step must not recompile per call).
    """
    from transformers import DynamicCache

    from videoseg_o3.runtime import compile_pipeline

    gen = torch.Generator().manual_seed(1)
    sam = segmenter.sam
    feat = dims["feat"]
    embed = torch.randn(1, 256, feat, feat, generator=gen).to(device)
    high_res = [torch.randn(1, 32, 4 * feat, 4 * feat, generator=gen).to(device),
                torch.randn(1, 64, 2 * feat, 2 * feat, generator=gen).to(device)]
    with torch.inference_mode():
        sparse, dense = sam.sam_prompt_encoder(points=(torch.zeros(1, 1, 2, device=device),
                                                       -torch.ones(1, 1, dtype=torch.int32, device=device)),
                                               boxes=None, masks=None)
        sparse = torch.cat([sparse, torch.randn(1, 1, 256, generator=gen).to(device)], dim=1)
        image_pe = sam.sam_prompt_encoder.get_dense_pe()

    def decoder() -> Any:
        return sam.sam_mask_decoder(image_embeddings=embed, image_pe=image_pe, sparse_prompt_embeddings=sparse,
                                    dense_prompt_embeddings=dense, multimask_output=True, repeat_image=False,
                                    high_res_features=high_res)

    model = policy.model
    past_kv = [(torch.randn(1, dims["kv_heads"], past, dims["head_dim"], generator=gen).to(device),
                torch.randn(1, dims["kv_heads"], past, dims["head_dim"], generator=gen).to(device))
               for _ in range(dims["num_layers"])]
    ids = torch.tensor([[13]], device=device)
    positions = torch.full((3, 1, 1), past, device=device)

    def decode_step() -> Any:
        # a fresh cache over the same past each call: update() appends, which would grow the timed step
        cache = DynamicCache(ddp_cache_data=past_kv, config=model.config)
        out = model.model(input_ids=ids, position_ids=positions, cache=cache, use_cache=True,
                          mm_token_type_ids=torch.zeros_like(ids, dtype=torch.int32))
        return model.lm_head(out.last_hidden_state[:, -1])

    sync = (lambda: devices.synchronize(device))
    runtime = compile_pipeline(policy, segmenter, mode)
    rows: dict[str, dict[str, Any]] = {}
    with torch.inference_mode():
        for component, fn in (("sam2_seg_decoder", decoder), ("language_model", decode_step)):
            runtime.detach()
            eager_s = _time(fn, repeats, sync)
            runtime.attach()
            compiled_s = _time(fn, repeats, sync)
            rows[component] = {"library_eager_s": eager_s, "torch_compile_s": compiled_s,
                               "torch_compile_speedup": eager_s / compiled_s}
    runtime.detach()
    stats = runtime.stats()
    rows["sam2_seg_decoder"]["compile"] = stats.get("seg_decoder")
    rows["language_model"]["compile"] = stats.get("decode_step")
    rows["mode"] = {"requested": mode, "resolved": stats["mode"], "kv_bucket": stats["kv_bucket"],
                    "cuda_graphs": stats.get("cuda_graphs", False)}
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", default=None, help="Checkpoint directory (default: a tiny one written to a temp dir).")
    parser.add_argument("--device", default="cpu", help="cpu or a CUDA device.")
    parser.add_argument("--past", type=int, default=512, help="KV-cache length of the decode step.")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None,
                        help="Intra-op threads for both torch and ONNX Runtime (default: each library's own default). "
                             "On a machine shared with other jobs, 1 gives the steadiest comparison.")
    parser.add_argument("--compile", default=None, choices=("off", "default", "reduce-overhead", "max-autotune"),
                        help="torch.compile mode of the library's compile option (default: reduce-overhead on a GPU, "
                             "off on a CPU, where compiling the decode step takes minutes).")
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
        compile_mode = args.compile or ("reduce-overhead" if device.type == devices.ACCELERATOR else "off")
        compiled: dict[str, Any] = {}
        if compile_mode != "off":
            # before the export wrappers: building the language-model graph switches the model to eager attention
            policy.to(device)
            segmenter.sam.to(device)
            compiled = bench_compiled(policy, segmenter, dims, args.past, device, args.repeats, compile_mode)
            policy.to("cpu")
            segmenter.sam.to("cpu")
        results["compile"] = compiled.pop("mode", {"requested": "off"})
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
            results[component].update(compiled.get(component, {}))
    print(f"device {results['device']}, torch threads {results['torch_threads']}, TensorRT {results['tensorrt']}, "
          f"torch.compile {results['compile']}")
    print("| graph | eager ms | onnxruntime ms | onnxruntime / eager speed-up | TensorRT speed-up "
          "| library eager ms | torch.compile ms | torch.compile speed-up | graphs compiled |")
    print("|---|---|---|---|---|---|---|---|---|")
    for component in ("sam2_seg_decoder", "language_model"):
        r = results[component]
        trt = f"{r['tensorrt_speedup']:.2f}x" if "tensorrt_speedup" in r else "-"
        comp = ([f"{r['library_eager_s'] * 1e3:.2f}", f"{r['torch_compile_s'] * 1e3:.2f}",
                 f"{r['torch_compile_speedup']:.2f}x", str((r.get("compile") or {}).get("graphs", "-"))]
                if "torch_compile_s" in r else ["-"] * 4)
        print(f"| {component} | {r['eager_s'] * 1e3:.2f} | {r['onnxruntime_s'] * 1e3:.2f} | {r['onnxruntime_speedup']:.2f}x "
              f"| {trt} | {' | '.join(comp)} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
