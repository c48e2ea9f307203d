"""``torchrun --nproc_per_node 2 -m training.sft`` over gloo (either distributed_strategy) equals one process on the
same global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from tests.tolerances import TOL

ARGS = ["--synthetic_videos", "1", "--synthetic_frames", "6", "6", "--synthetic_size", "40", "48", "--max_steps", "1",
        "--lora_r", "4", "--lora_alpha", "8", "--lora_dropout", "0", "--no_progress", "--protocol_preset", "rl",
        "--learning_rate", "1e-3"]


def _run(cmd: list[str], out: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(cmd + ["--output_dir", out, *ARGS], env=env, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
@pytest.mark.parametrize("strategy", ["replicate", "fsdp2"])
def test_two_gloo_processes_match_one_process(tmp_path, strategy) -> None:
    """Guards the data split and the gradient averaging (replicate: all_reduce; fsdp2: sharded layers'
    reduce-scatter + the replicated rest): 2 ranks x 1 example give the same logged loss and the same updated
    weights (one AdamW step, so equal gradients up to summation order) as 1 rank x 2 accumulated; and the
    final checkpoint (fsdp2: gathered from the shards, LoRA merged) holds the same weights."""
    from safetensors.torch import load_file

    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    _run([sys.executable, "-m", "training.sft", "--gradient_accumulation_steps", "2"], one)
    _run(["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "training.sft", "--gradient_accumulation_steps", "1",
          "--distributed_strategy", strategy], two)
    rows = [json.loads((tmp_path / d / "log.jsonl").read_text().splitlines()[0]) for d in ("one", "two")]
    atol, rtol = TOL["gloo_vs_single_process"]
    assert rows[1]["loss"] == pytest.approx(rows[0]["loss"], abs=atol, rel=rtol)
    assert rows[1]["grad_norm"] == pytest.approx(rows[0]["grad_norm"], abs=atol, rel=rtol)
    w1 = load_file(str(tmp_path / "one" / "checkpoint-1" / "trainable.safetensors"))
    w2 = load_file(str(tmp_path / "two" / "checkpoint-1" / "trainable.safetensors"))
    assert set(w1) == set(w2)
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], atol=atol, rtol=rtol, msg=name)
    for part in ("policy/model.safetensors", "policy/projector.safetensors"):
        f1, f2 = (load_file(str(tmp_path / d / "final" / part)) for d in ("one", "two"))
        assert set(f1) == set(f2)
        for name in f1:
            torch.testing.assert_close(f2[name], f1[name], atol=atol, rtol=rtol, msg=f"{part}:{name}")
