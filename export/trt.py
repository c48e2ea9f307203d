"""``python -m export.trt CKPT_DIR --out OUT_DIR``: ONNX graphs, their verification, TensorRT engines, a manifest.

For each component (SAM2 image encoder, ``[SEG]`` decoder, memory encoder, memory attention; the policy's
vision encoder and language model with KV cache): build the wrapper, export it to ``OUT_DIR/<component>.onnx``,
run it on ONNX Runtime against PyTorch on random and realistic inputs, and print one line with the
numbers. Then build TensorRT engines where TensorRT and a GPU exist, or say why not. ``manifest.json``
records every file, its I/O names, shapes and dynamic axes, the opset, the precision, the verification
numbers, the tool versions and the git commit; ``VideoSegO3.from_pretrained(CKPT, backend="onnxruntime",
export_dir=OUT_DIR)`` runs from it.

Exit status: 0 when every graph verified (TensorRT missing is reported, not an error), 1 when a graph
failed verification, 2 with ``--require-tensorrt`` when no engine could be built.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from export import shapes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m export.trt", description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", metavar="CKPT_DIR", help="Checkpoint directory (videoseg-o3 init-tiny or training output).")
    parser.add_argument("--out", required=True, help="Output directory for the ONNX files, engines and manifest.json.")
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp16",
                        help="TensorRT engine precision (the ONNX files are always fp32).")
    parser.add_argument("--components", nargs="+", choices=shapes.COMPONENTS, default=list(shapes.COMPONENTS),
                        help="Which graphs to export (default: all).")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: export.onnx.OPSET).")
    parser.add_argument("--require-tensorrt", dest="require_tensorrt", action="store_true",
                        help="Fail (exit 2) when TensorRT engines cannot be built.")
    parser.add_argument("--skip-verify", dest="verify", action="store_false", help="Do not run ONNX Runtime checks.")
    return parser.parse_args(argv)


def _check_output_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test-")
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise SystemExit(f"error: Invalid --out ({out}): not a writable directory ({err.strerror}). "
                         "Choose a directory you can write to.") from None


def _load(ckpt: Path, components: list[str]) -> tuple[Any, Any]:
    from videoseg_o3.checkpoint import load_checkpoint

    if not ckpt.is_dir():
        raise SystemExit(f"error: Checkpoint directory not found: {ckpt}. Create a tiny one with `videoseg-o3 init-tiny {ckpt}`.")
    try:
        policy, segmenter, _ = load_checkpoint(ckpt, device="cpu", dtype=None)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: Invalid checkpoint {ckpt}: {err}") from None
    return policy.float().eval() if any(c in shapes.POLICY_COMPONENTS for c in components) else None, segmenter.eval()


def tool_versions() -> dict[str, str | None]:
    """Versions of everything that shaped the graphs."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for package in ("torch", "onnx", "onnxruntime", "onnxscript", "transformers", "sam2", "tensorrt"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    versions["python"] = sys.version.split()[0]
    return versions


def git_commit() -> str | None:
    """The checkout's HEAD commit (None outside a git checkout)."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _write_json_atomic(path: Path, record: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def export_all(ckpt: Path, out: Path, *, components: list[str], precision: str = "fp16", opset: int | None = None,
               verify: bool = True, build_engines: bool = True, log=print) -> dict[str, Any]:
    """Export, verify and (where possible) build engines; writes and returns the manifest."""
    import torch

    from export import cases as case_module
    from export import onnx as onnx_module
    from export import tensorrt_build

    torch.manual_seed(0)
    opset = opset or onnx_module.OPSET
    policy, segmenter = _load(ckpt, components)
    dims = shapes.checkpoint_dims(segmenter, policy)
    modules = {c: onnx_module.build_graph(c, segmenter, policy) for c in components}
    realistic: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    if verify:
        all_graphs = {c: onnx_module.build_graph(c, segmenter, policy) for c in shapes.COMPONENTS
                      if c in shapes.SAM2_COMPONENTS or policy is not None}
        if any(c in shapes.SAM2_COMPONENTS for c in components):
            realistic.update(case_module.sam2_cases(segmenter, all_graphs))
        if policy is not None:
            realistic.update(case_module.policy_cases(policy, all_graphs, dims))
    entries: dict[str, Any] = {}
    failed = []
    for component in components:
        module = modules[component]
        example = onnx_module.example_inputs(component, dims, policy=policy, segmenter=segmenter)
        graph = onnx_module.export_component(component, module, dims, out / f"{component}.onnx", example, opset=opset)
        line = f"[export] {component:<22} {graph.file} ({graph.export_seconds:.1f} s)"
        if verify:
            cases = {"random": example, **realistic.get(component, {})}
            graph.verification = onnx_module.verify_component(component, module, out / graph.file, cases)
            v = graph.verification
            line += f"  max|diff| {v['max_abs_diff']:.2e}"
            if v["mask_iou"] is not None:
                line += f"  mask IoU {v['mask_iou']:.4f}"
            line += "  ok" if v["passed"] else "  FAILED"
            if not v["passed"]:
                failed.append(component)
        log(line)
        entries[component] = {**graph.__dict__, "precision": "fp32"}
    available, reason = tensorrt_build.tensorrt_status() if build_engines else (False, "skipped")
    trt_record: dict[str, Any] = {"precision": precision}
    if available:
        cache_path = out / tensorrt_build.TIMING_CACHE_FILE
        for component in components:
            t0 = time.perf_counter()
            built = tensorrt_build.build_engine(out / entries[component]["file"], out / f"{component}.engine", component,
                                                dims, precision=precision, timing_cache_path=cache_path)
            entries[component].update(built)
            log(f"[tensorrt] {component:<22} {built['engine']} ({precision}, {time.perf_counter() - t0:.1f} s)")
        trt_record.update(status="built", timing_cache=tensorrt_build.TIMING_CACHE_FILE)
    else:
        trt_record.update(status="not built", reason=reason)
        log(f"[tensorrt] engines NOT built: {reason}. The ONNX files run on ONNX Runtime (backend='onnxruntime').")
    manifest = {
        "format_version": 1,
        "checkpoint": str(ckpt),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "opset": opset,
        "dims": dims,
        "components": entries,
        "verification_thresholds": dict(onnx_module.VERIFY_THRESHOLDS),
        "verification_failed": failed,
        "tensorrt": trt_record,
        "tool_versions": tool_versions(),
        "git_commit": git_commit(),
    }
    _write_json_atomic(out / "manifest.json", manifest)
    log(f"[manifest] {out / 'manifest.json'}")
    return manifest


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    _check_output_dir(out)
    manifest = export_all(Path(args.ckpt), out, components=list(dict.fromkeys(args.components)),
                          precision=args.precision, opset=args.opset, verify=args.verify)
    if manifest["verification_failed"]:
        print(f"error: verification failed for {', '.join(manifest['verification_failed'])} (see manifest.json)",
              file=sys.stderr)
        return 1
    if args.require_tensorrt and manifest["tensorrt"]["status"] != "built":
        print(f"error: --require-tensorrt: {manifest['tensorrt']['reason']}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
