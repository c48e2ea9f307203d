"""``python -m export.trt``: arguments, one-line errors, the manifest, and what it says about TensorRT.

Guards the command's contract: bad checkpoint / unwritable output are one-line errors, a missing TensorRT
is reported plainly with exit 0 (2 with --require-tensorrt), and the manifest names every file with its
I/O, shapes, dynamic axes, opset, precision, verification numbers, tool versions and commit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from export import shapes
from export.tensorrt_build import profile_shapes, tensorrt_status
from export.trt import main
from tests.tolerances import tol

pytestmark = pytest.mark.export
REPO_ROOT = Path(__file__).resolve().parents[2]


def test_spec_expands_per_layer_tensors_and_dynamic_axes() -> None:
    dims = {"num_layers": 2, "kv_heads": 2, "head_dim": 16, "text_hidden": 64, "num_deepstack": 2, "vocab": 10}
    inputs = shapes.expand("language_model", dims, "inputs")
    assert list(inputs)[:4] == ["input_ids", "position_ids", "image_embeds", "deepstack_embeds"]
    assert list(inputs)[4:] == ["past_key_0", "past_value_0", "past_key_1", "past_value_1"]
    assert inputs["position_ids"] == (3, 1, "seq") and inputs["past_key_1"] == (1, 2, "past", 16)
    axes = shapes.dynamic_axes("language_model", dims)
    assert axes["present_value_1"] == {2: "total"} and axes["input_ids"] == {1: "seq"}
    # TensorRT profiles: every dynamic axis gets min <= opt <= max, fixed axes are pinned
    low, opt, high = profile_shapes("language_model", dims)["past_key_0"]
    assert low[2] <= opt[2] <= high[2] and low[1] == opt[1] == high[1] == 2


def test_bad_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="Checkpoint directory not found"):
        main([str(tmp_path / "missing"), "--out", str(tmp_path / "out")])


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to a read-only directory")
def test_unwritable_output_is_a_one_line_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(SystemExit, match="not a writable directory"):
        main([str(tmp_path), "--out", str(locked / "out")])


def test_unwritable_output_file_path_is_a_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SystemExit, match="Invalid --out"):
        main([str(tmp_path), "--out", str(blocker / "out")])


@pytest.mark.slow
def test_command_writes_manifest_and_reports_tensorrt(object_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "onnx"
    command = [sys.executable, "-m", "export.trt", str(object_checkpoint), "--out", str(out), "--components", "sam2_memory_encoder"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    available, reason = tensorrt_status()
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[export] sam2_memory_encoder" in done.stdout and "ok" in done.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["components"]["sam2_memory_encoder"]
    assert (out / entry["file"]).is_file() and entry["input_names"] == ["pix_feat", "mask_for_mem"]
    assert entry["dynamic_axes"]["pix_feat"] == {"0": "batch"} and entry["opset"] == manifest["opset"]
    assert entry["verification"]["passed"]
    assert entry["verification"]["max_abs_diff"] <= manifest["verification_thresholds"]["max_abs_diff"]
    assert manifest["tool_versions"]["torch"] and "git_commit" in manifest
    if not available:
        assert "engines NOT built" in done.stdout and reason in done.stdout
        assert manifest["tensorrt"] == {"precision": "fp16", "status": "not built", "reason": reason}
        strict = subprocess.run(command + ["--require-tensorrt"], cwd=REPO_ROOT, env=env, capture_output=True,
                                text=True, timeout=600)
        assert strict.returncode == 2 and "--require-tensorrt" in strict.stderr


@pytest.mark.trt
def test_tensorrt_engine_matches_onnxruntime(exported) -> None:
    """Builds an fp32 engine for the memory encoder and runs it through the runtime's loader."""
    import torch

    from export.tensorrt_build import TIMING_CACHE_FILE, build_engine
    from videoseg_o3.runtime.manifest import OrtGraph, TrtGraph

    out, manifest = exported
    dims = manifest["dims"]
    built = build_engine(out / "sam2_memory_encoder.onnx", out / "memory_encoder_test.engine", "sam2_memory_encoder",
                         dims, precision="fp32", timing_cache_path=out / TIMING_CACHE_FILE)
    device = torch.device("cuda", 0)
    inputs = {"pix_feat": torch.randn(1, 256, dims["feat"], dims["feat"]),
              "mask_for_mem": torch.randn(1, 1, dims["image_size"], dims["image_size"])}
    expected = OrtGraph(out / "sam2_memory_encoder.onnx")(**inputs)
    got = TrtGraph(out / built["engine"], device)(**inputs)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g.cpu(), e, **tol("tensorrt_fp32"))
