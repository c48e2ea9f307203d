"""GRPO trainer: presets, an end-to-end run on scripted rollouts, skipped non-finite steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from training.config import GRPOConfig, SFTConfig, parse_config

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"


def test_presets_parse_to_the_released_recipe() -> None:
    """Guards the presets against the released settings (reference scripts and configs, read by hand)."""
    names = sorted(p.name for p in CONFIGS.glob("*.yaml"))
    assert names == ["coldstart_2b.yaml", "coldstart_4b.yaml", "grpo_2b.yaml", "grpo_4b.yaml", "sft_2b.yaml", "sft_4b.yaml"]
    for name in names:
        cls = GRPOConfig if name.startswith("grpo") else SFTConfig
        config = parse_config(cls, ["--config", str(CONFIGS / name)])
        if cls is GRPOConfig:
            assert (config.learning_rate, config.lr_scheduler_type, config.warmup_ratio) == (3e-6, "linear", 0.0)
            assert (config.num_generations, config.per_device_train_batch_size, config.max_completion_length) == (4, 4, 512)
            assert (config.temperature, config.top_p, config.top_k, config.max_turns) == (0.9, 0.9, 50, 3)
            assert (config.beta, config.kl_type, config.seg_loss_weight, config.max_steps) == (0.04, "k3", 0.2, 1000)
            assert config.loss_agg_mode == "seq-mean-token-mean" and config.protocol_preset == "rl"
        else:
            assert (config.learning_rate, config.weight_decay, config.warmup_ratio) == (4e-5, 0.05, 0.05)
            assert (config.lora_r, config.lora_alpha, config.lora_dropout) == (128, 256, 0.05)
            assert (config.bce_weight, config.dice_weight, config.lr_scheduler_type) == (2.0, 0.5, "cosine")
            assert config.gradient_accumulation_steps == (8 if name.startswith("sft") else 4)
            assert not config.train_prompt_encoder and not config.train_vision_tower


@pytest.mark.slow
def test_grpo_run_on_scripted_rollouts(tmp_path, monkeypatch) -> None:
    """End to end on the tiny model with well-formed scripted turns (a random policy never writes the protocol):
    step 1 updates the trained parts and leaves SAM2's image encoder alone; a non-finite loss at step 2 skips
    the update (weights unchanged) and is logged; logs carry reward and loss keys; final/ loads; plots."""
    import training.losses as losses
    import training.rollout as rollout
    from training.grpo import train
    from training.plot import plot_run
    from videoseg_o3.checkpoint import load_checkpoint

    real_collect, real_loss = rollout.collect_rollouts, losses.compute_grpo_loss

    def scripted(policy, segmenter, prompts, **kwargs):
        kwargs["forced_turns"] = rollout.scripted_turns(prompts[0].num_frames, kwargs["group_size"])
        batch = real_collect(policy, segmenter, prompts, **kwargs)
        # A tiny synthetic video can give every scripted rollout the same reward (zero advantages, no policy
        # gradient); spread them so the update has a policy-gradient signal to apply.
        batch.advantages = torch.linspace(-1.0, 1.0, len(batch))
        return batch

    calls = {"n": 0}

    def loss_nan_at_step_2(*args, **kwargs):
        loss, metrics = real_loss(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 2 else loss), metrics

    monkeypatch.setattr(rollout, "collect_rollouts", scripted)
    monkeypatch.setattr(losses, "compute_grpo_loss", loss_nan_at_step_2)
    snapshots = []

    def snapshot(step: int, metrics: dict) -> None:
        snapshots.append(metrics)

    config = GRPOConfig(output_dir=str(tmp_path / "run"), synthetic_videos=1, synthetic_frames=[6, 6],
                        synthetic_size=[40, 48], max_steps=2, num_generations=4, max_completion_length=8,
                        learning_rate=1e-3, progress=False, save_steps=1)
    result = train(config, on_step=snapshot)
    assert [m["skipped"] for m in snapshots] == [0, 1]
    assert snapshots[0]["advantage/abs_max"] > 0 and snapshots[0]["grad_norm"] > 0
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {"reward/total", "reward/strict_format_cot", "loss", "kl", "clip_frac", "turns/mean", "time/rollout_s",
            "time/update_s", "tokens_per_s", "advantage/std"} <= set(rows[0])
    from safetensors.torch import load_file

    after_1 = load_file(str(run / "checkpoint-1" / "trainable.safetensors"))
    after_2 = load_file(str(run / "checkpoint-2" / "trainable.safetensors"))
    assert all(torch.equal(after_1[k], after_2[k]) for k in after_1)  # the skipped step changed nothing
    policy, segmenter, _ = load_checkpoint(result["final"])
    from training.common import load_start_models

    start, start_seg, _ = load_start_models(config, torch.device("cpu"))
    key = "model.language_model.layers.0.mlp.down_proj.weight"
    assert not torch.equal(dict(policy.model.named_parameters())[key], dict(start.model.named_parameters())[key])
    sam, sam0 = segmenter.sam.state_dict(), start_seg.sam.state_dict()
    assert all(torch.equal(sam[k], sam0[k]) for k in sam if k.startswith("image_encoder."))
    assert [p.name for p in plot_run(run)] == ["loss.png", "reward.png"]


class _Killed(Exception):
    pass


@pytest.mark.slow
def test_grpo_exact_resume(tmp_path, monkeypatch) -> None:
    """Guards GRPO resumption: rollout seeds and prompt order follow the step, so a run killed after step 1 and
    resumed gives step 2's rewards and loss bit for bit equal to the uninterrupted run's."""
    import training.rollout as rollout
    from training.grpo import train

    real_collect = rollout.collect_rollouts

    def scripted(policy, segmenter, prompts, **kwargs):
        kwargs["forced_turns"] = rollout.scripted_turns(prompts[0].num_frames, kwargs["group_size"])
        batch = real_collect(policy, segmenter, prompts, **kwargs)
        batch.advantages = torch.linspace(-1.0, 1.0, len(batch))
        return batch

    monkeypatch.setattr(rollout, "collect_rollouts", scripted)

    def config(out: str, **changes) -> GRPOConfig:
        return GRPOConfig(output_dir=out, synthetic_videos=1, synthetic_frames=[6, 6], synthetic_size=[40, 48],
                          max_steps=2, max_completion_length=8, learning_rate=1e-3, progress=False, save_steps=1,
                          **changes)

    full: dict[int, dict] = {}
    train(config(str(tmp_path / "a")), on_step=lambda step, m: full.__setitem__(step, m))

    def kill(step: int, metrics: dict) -> None:
        raise _Killed

    with pytest.raises(_Killed):
        train(config(str(tmp_path / "b")), on_step=kill)
    resumed: dict[int, dict] = {}
    train(config(str(tmp_path / "b"), resume=True), on_step=lambda step, m: resumed.__setitem__(step, m))
    assert list(resumed) == [2]
    for key in ("loss", "reward/total", "pg_loss", "kl", "grad_norm"):
        assert resumed[2][key] == full[2][key], key
