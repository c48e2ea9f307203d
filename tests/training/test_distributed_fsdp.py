"""FSDP2 (``--distributed_strategy fsdp2``): strategy choice, what is sharded, gradients and checkpoints equal to
one process, mixed precision. The multi-process tests run ``tests.training.distributed_worker`` under torchrun
(gloo on the CPU; the ``gpu`` twin uses NCCL)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.tolerances import LOWP_ERROR_FACTOR, TOL

needs_torchrun = pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
WORKER = "tests.training.distributed_worker"
SFT_FLAGS = ["--synthetic_videos", "1", "--synthetic_frames", "6", "6", "--synthetic_size", "40", "48", "--lora_r", "4",
             "--lora_alpha", "8", "--lora_dropout", "0", "--no_progress", "--protocol_preset", "rl", "--learning_rate",
             "1e-3", "--save_steps", "1", "--save_total_limit", "0"]


def _launch(args: list[str], processes: int, *, killed: bool = False) -> None:
    """Run the worker in 1 plain process or under torchrun; ``killed``: it must stop with the worker's exit code 3
    (torchrun reports any failed rank as 1)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = ([sys.executable, "-m"] if processes == 1 else
           ["torchrun", "--standalone", "--nproc_per_node", str(processes), "-m"]) + [WORKER, *args]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)
    expected = (3 if processes == 1 else 1) if killed else 0
    assert result.returncode == expected, result.stderr[-3000:]


def _rows(run: Path) -> dict[int, dict]:
    return {row["step"]: row for row in map(json.loads, (run / "log.jsonl").read_text().splitlines())}


def test_strategy_resolution_and_bad_value() -> None:
    """Guards ``auto`` (fsdp2 only on CUDA with several processes) and the one-line config error."""
    from training.config import GRPOConfig, SFTConfig
    from training.distributed import resolve_strategy

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert resolve_strategy("auto", cuda, 2) == "fsdp2"
    assert resolve_strategy("auto", cuda, 1) == "replicate"
    assert resolve_strategy("auto", cpu, 2) == "replicate"
    assert resolve_strategy("fsdp2", cpu, 2) == "fsdp2"
    assert resolve_strategy("replicate", cuda, 8) == "replicate"
    message = r"Invalid distributed_strategy \(ddp\)\. Supported values are auto, replicate, fsdp2"
    with pytest.raises(ValueError, match=message):
        resolve_strategy("ddp", cpu, 2)
    for cls in (SFTConfig, GRPOConfig):
        with pytest.raises(ValueError, match=r"Invalid distributed_strategy \(fsdp\).*--distributed_strategy"):
            cls(distributed_strategy="fsdp")


@pytest.mark.slow
@needs_torchrun
def test_fsdp2_two_gloo_ranks_match_one_process_gradients(tmp_path) -> None:
    """Guards the FSDP2 wrapping, its gradient reduce-scatter (a mean), the replicated modules' all_reduce and the
    sharded-aware norm: 2 FSDP2 ranks x 1 example give the loss, the global gradient norm and every trainable
    gradient (gathered whole) of 1 plain process on the same 2 examples (no distributed code on that side).
    Also checks what is sharded: each decoder layer and vision block, the language model and the vision tower
    (LoRA adapters included); the token embedding / LM head, the projector and SAM2 stay whole."""
    from safetensors.torch import load_file

    one, two = tmp_path / "one", tmp_path / "two"
    _launch(["grads", str(one), "replicate"], 1)
    _launch(["grads", str(two), "fsdp2"], 2)
    ref, got = (json.loads((d / "result.json").read_text()) for d in (one, two))
    assert (ref["strategy"], got["strategy"]) == ("replicate", "fsdp2")
    atol, rtol = TOL["fsdp2_vs_single_process"]
    assert got["loss"] == pytest.approx(ref["loss"], abs=atol, rel=rtol)
    assert got["grad_norm"] == pytest.approx(ref["grad_norm"], abs=atol, rel=rtol)
    prefix = "policy.model.model."
    def units(stack: str) -> list[str]:  # e.g. policy.model.model.visual.blocks.0
        return sorted({".".join(n.split(".")[:6]) for n in ref["plain_params"] if n.startswith(prefix + stack)})

    layers, blocks = units("language_model.layers."), units("visual.blocks.")
    assert layers and blocks
    assert got["fsdp_modules"] == sorted(layers + blocks + [prefix + "language_model", prefix + "visual"])
    assert ref["fsdp_modules"] == [] and ref["sharded_params"] == []
    sharded = set(got["sharded_params"])
    assert any(".lora_A." in n for n in sharded) and prefix + "language_model.norm.weight" in sharded
    whole = ("policy.projector.", "segmenter.", prefix + "language_model.embed_tokens.", "policy.model.lm_head")
    assert not any(n.startswith(whole) for n in sharded)
    g_ref, g_got = (load_file(str(d / "grads.safetensors")) for d in (one, two))
    assert set(g_ref) <= set(g_got)
    for name in set(g_got) - set(g_ref):  # no gradient in one process = the zeros the replicated all_reduce adds
        assert not g_got[name].any(), name
    for name, grad in g_ref.items():
        torch.testing.assert_close(g_got[name], grad, atol=atol, rtol=rtol, msg=name)


@pytest.mark.slow
@needs_torchrun
def test_fsdp2_bf16_mixed_precision(tmp_path) -> None:
    """Guards the MixedPrecisionPolicy of a ``--bf16`` run: inside forward the decoder layer's weights are bf16
    (all-gathered in bf16), the gradients the optimizer sees are fp32, and the whole gradient's error vs the
    fp32 one-process gradient is within LOWP_ERROR_FACTOR x that of plain bf16 autocast (one process)."""
    from safetensors.torch import load_file

    fp32, autocast, fsdp = tmp_path / "fp32", tmp_path / "autocast", tmp_path / "fsdp"
    _launch(["grads", str(fp32), "replicate"], 1)
    _launch(["grads", str(autocast), "replicate", "bf16"], 1)
    _launch(["grads", str(fsdp), "fsdp2", "bf16"], 2)
    result = json.loads((fsdp / "result.json").read_text())
    assert result["forward_weight_dtypes"] == ["torch.bfloat16"]
    assert result["grad_dtypes"] == ["torch.float32"]
    assert json.loads((autocast / "result.json").read_text())["forward_weight_dtypes"] == ["torch.float32"]
    grads = {d.name: load_file(str(d / "grads.safetensors")) for d in (fp32, autocast, fsdp)}
    names = sorted(grads["fp32"])
    flat = {k: torch.cat([g[n].flatten() for n in names]) for k, g in grads.items()}
    ref_norm = flat["fp32"].norm()
    torch_err = float((flat["autocast"] - flat["fp32"]).norm() / ref_norm)
    fsdp_err = float((flat["fsdp"] - flat["fp32"]).norm() / ref_norm)
    assert 0 < fsdp_err <= LOWP_ERROR_FACTOR * torch_err, (fsdp_err, torch_err)


@pytest.mark.slow
@needs_torchrun
def test_fsdp2_exact_resume_and_resume_under_replicate(tmp_path) -> None:
    """Guards full-state-dict checkpoints under FSDP2 (weights and AdamW state gathered to rank 0, loaded back
    into shards): 2 FSDP2 ranks killed after step 2 and resumed give the losses of steps 3 and 4 (step 4's
    depends on the restored optimizer state) and the step-4 weights bit for bit equal to the uninterrupted
    run's; the step-2 checkpoint also resumes in ONE process without sharding (2 micro-batches instead of 2
    ranks: equal within the gloo-vs-one-process tolerance)."""
    from safetensors.torch import load_file

    full, cut, solo = tmp_path / "full", tmp_path / "cut", tmp_path / "solo"
    flags = [*SFT_FLAGS, "--max_steps", "4", "--gradient_accumulation_steps", "1", "--distributed_strategy", "fsdp2"]
    _launch(["train", "sft", "0", *flags, "--output_dir", str(full)], 2)
    _launch(["train", "sft", "2", *flags, "--output_dir", str(cut)], 2, killed=True)
    assert sorted(p.name for p in cut.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    _launch(["train", "sft", "0", *flags, "--output_dir", str(cut), "--resume"], 2)
    for step in (3, 4):
        assert _rows(cut)[step]["loss"] == _rows(full)[step]["loss"], step
        assert _rows(cut)[step]["grad_norm"] == _rows(full)[step]["grad_norm"], step
    w_full, w_cut = (load_file(str(d / "checkpoint-4" / "trainable.safetensors")) for d in (full, cut))
    assert set(w_full) == set(w_cut) and all(torch.equal(w_cut[n], w_full[n]) for n in w_full)
    shutil.copytree(full / "data", solo / "data")
    _launch(["train", "sft", "0", *SFT_FLAGS, "--max_steps", "4", "--gradient_accumulation_steps", "2",
             "--distributed_strategy", "replicate", "--output_dir", str(solo),
             "--resume_from_checkpoint", str(full / "checkpoint-2")], 1)
    atol, rtol = TOL["gloo_vs_single_process"]
    assert list(_rows(solo)) == [3, 4]
    for step in (3, 4):
        assert _rows(solo)[step]["loss"] == pytest.approx(_rows(full)[step]["loss"], abs=atol, rel=rtol), step


@pytest.mark.slow
@needs_torchrun
def test_grpo_fsdp2_matches_replicate(tmp_path) -> None:
    """Guards GRPO under FSDP2: rollouts run through the sharded layers' hooks inside inference mode (scripted
    turns with uneven advantages, so that the step has a policy gradient), and the update (policy loss on the
    sharded language model with the replicated LM-head weight read directly by the loss) gives the loss, gradient
    norm and updated weights of the replicated model."""
    from safetensors.torch import load_file

    flags = ["--synthetic_videos", "1", "--synthetic_frames", "6", "6", "--synthetic_size", "40", "48", "--max_steps",
             "1", "--learning_rate", "1e-3", "--no_progress"]
    for strategy in ("replicate", "fsdp2"):
        _launch(["train", "grpo-scripted", "0", *flags, "--distributed_strategy", strategy,
                 "--output_dir", str(tmp_path / strategy)], 2)
    ref, got = _rows(tmp_path / "replicate")[1], _rows(tmp_path / "fsdp2")[1]
    assert got["tokens/sampled"] == ref["tokens/sampled"] and got["reward/total"] == ref["reward/total"]
    assert ref["grad_norm"] > 0 and ref["pg_loss"] != 0
    atol, rtol = TOL["fsdp2_vs_single_process"]
    for key in ("loss", "pg_loss", "grad_norm"):
        assert got[key] == pytest.approx(ref[key], abs=atol, rel=rtol), key
    w_ref, w_got = (load_file(str(tmp_path / s / "checkpoint-1" / "trainable.safetensors"))
                    for s in ("replicate", "fsdp2"))
    assert set(w_ref) == set(w_got)
    for name in w_ref:
        torch.testing.assert_close(w_got[name], w_ref[name], atol=atol, rtol=rtol, msg=name)


@pytest.mark.gpu
@pytest.mark.slow
@needs_torchrun
def test_fsdp2_two_nccl_ranks_match_replicate_gpu(tmp_path) -> None:
    """GPU twin of the gloo tests: 2 NCCL ranks, bf16, ``auto`` (= fsdp2 on CUDA) vs ``replicate`` after one SFT
    step: same loss within bf16 tolerance and a final checkpoint that loads."""
    if torch.cuda.device_count() < 2:
        pytest.skip(f"needs 2 CUDA devices for 2 NCCL ranks; {torch.cuda.device_count()} visible")
    from videoseg_o3.checkpoint import load_checkpoint

    runs = {}
    for strategy in ("auto", "replicate"):
        out = tmp_path / strategy
        _launch(["train", "sft", "0", *SFT_FLAGS, "--max_steps", "1", "--device", "cuda", "--bf16",
                 "--distributed_strategy", strategy, "--output_dir", str(out)], 2)
        runs[strategy] = _rows(out)[1]
    atol, rtol = TOL["fsdp2_bf16_vs_replicate_gpu"]
    assert runs["auto"]["loss"] == pytest.approx(runs["replicate"]["loss"], abs=atol, rel=rtol)
    load_checkpoint(tmp_path / "auto" / "final")
