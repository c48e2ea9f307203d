"""SFT trainer: trainable set and LoRA merge, learning-rate schedule, final checkpoint, exact resume."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.tolerances import TOL
from training.common import lr_factor
from training.config import SFTConfig


def _tiny_config(tmp_path, **changes) -> SFTConfig:
    values = dict(output_dir=str(tmp_path / "run"), synthetic_videos=1, synthetic_frames=[6, 6], synthetic_size=[40, 48],
                  max_steps=3, gradient_accumulation_steps=1, lora_r=4, lora_alpha=8, progress=False, save_steps=1,
                  protocol_preset="rl")
    values.update(changes)
    return SFTConfig(**values)


def test_lr_schedule_matches_the_released_warmup_and_cosine() -> None:
    """Guards the schedule against mmengine's LinearLR(start_factor=1e-5) over 5 % then CosineAnnealing to 0,
    written out by hand for 40 steps (warmup 2 steps)."""
    total = 40
    factors = [lr_factor(s, total, "cosine", 0.05, 1e-5) for s in range(total)]
    assert factors[0] == pytest.approx(1e-5)
    assert factors[1] == pytest.approx(1e-5 + (1 - 1e-5) / 2)
    assert factors[2] == pytest.approx(1.0)
    assert factors[21] == pytest.approx(0.5 * (1 + math.cos(math.pi * 19 / 38)))
    assert [lr_factor(s, 4, "linear", 0.0, 1e-5) for s in range(4)] == [1.0, 0.75, 0.5, 0.25]  # transformers' linear
    assert lr_factor(3, 4, "constant", 0.0, 1e-5) == 1.0


def test_lora_trainable_set_and_merge(tmp_path) -> None:
    """Guards the trainable set (LoRA on LM Linears only; embeddings, projector, mask decoder trained; vision
    tower, SAM2 encoder and prompt encoder frozen) and that merging LoRA keeps the logits of the adapted model."""
    from training.common import load_start_models
    from training.sft import SftModel

    config = _tiny_config(tmp_path)
    policy, segmenter, _ = load_start_models(config, torch.device("cpu"))
    model = SftModel(policy, segmenter, config)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = {n for n in trainable if ".lora_" in n}
    assert lora and all(".language_model." in n for n in lora)
    assert any("embed_tokens.modules_to_save" in n for n in trainable)
    assert any(n.startswith("policy.projector.") for n in trainable)
    assert any(".sam_mask_decoder." in n for n in trainable)
    assert not any(".visual." in n or ".image_encoder." in n or ".sam_prompt_encoder." in n for n in trainable)
    with torch.no_grad():  # make the adapters non-zero (B starts at 0, which would make any merge look right)
        for name, param in model.named_parameters():
            if ".lora_B." in name:
                param.normal_(0, 0.05)
    model.eval()
    ids = policy.tokenizer("<|im_start|>user\nhello [SEG]<|im_end|>", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        adapted = policy.model(input_ids=ids).logits
        merged = model.merged_policy()
        plain = merged.model(input_ids=ids).logits
    assert not any("lora" in n for n, _ in merged.named_parameters())
    atol, rtol = TOL["lora_merge"]
    torch.testing.assert_close(plain, adapted, atol=atol, rtol=rtol)


def test_config_file_then_flags(tmp_path) -> None:
    from training.config import parse_config

    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1.0e-4\nlora_r: 16\ndata: [a, b]\n")
    config = parse_config(SFTConfig, ["--config", str(path), "--lora_r", "8"])
    assert (config.learning_rate, config.lora_r, config.data) == (1e-4, 8, ["a", "b"])
    path.write_text("learning_rat: 1.0\n")
    with pytest.raises(ValueError, match=r"Invalid key\(s\) learning_rat in .*c\.yaml"):
        parse_config(SFTConfig, ["--config", str(path)])
    with pytest.raises(ValueError, match="Invalid flag"):
        parse_config(SFTConfig, ["--lora_rank", "3"])
    with pytest.raises(ValueError, match=r"Invalid seg_supervision \(all\)"):
        parse_config(SFTConfig, ["--seg_supervision", "all"])


def test_turn0_frame_flags_override_the_preset_only_where_set() -> None:
    """Guards --turn0_temporal_frames / --turn0_spatial_frames: each replaces the preset's count (RL: 10 and 5) in the
    protocol the trainers save, an unset one keeps the preset's, and a negative count is refused by name."""
    from training.config import GRPOConfig, parse_config

    config = parse_config(GRPOConfig, ["--turn0_temporal_frames", "4", "--turn0_spatial_frames", "2", "--max_turns", "1"])
    protocol = config.protocol()
    assert (protocol.turn0_temporal_frames, protocol.turn0_spatial_frames, protocol.max_turns) == (4, 2, 1)
    assert protocol.keyframe_max_pixels == 256 * 28 * 28  # the rest is still the RL preset
    assert parse_config(SFTConfig, ["--turn0_spatial_frames", "0"]).protocol().turn0_temporal_frames == 10
    with pytest.raises(ValueError, match=r"Invalid turn0_temporal_frames \(-1\)"):
        parse_config(SFTConfig, ["--turn0_temporal_frames", "-1"])
    with pytest.raises(ValueError, match="both 0"):
        parse_config(SFTConfig, ["--turn0_temporal_frames", "0", "--turn0_spatial_frames", "0"]).protocol()


@pytest.mark.slow
def test_sft_run_writes_a_loadable_final_checkpoint(tmp_path) -> None:
    """The embedded run end to end (tiny model, synthetic data): logs, TensorBoard events, resumable checkpoints,
    and OUTPUT_DIR/final loadable by the library, with frozen parts untouched and trained parts moved."""
    from training.common import load_start_models
    from training.sft import train
    from videoseg_o3.checkpoint import load_checkpoint

    config = _tiny_config(tmp_path, max_steps=2, learning_rate=1e-3)
    result = train(config)
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert {"loss", "lm_loss", "mask_bce", "mask_dice", "lr", "grad_norm", "tokens_per_s"} <= set(rows[0])
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    policy, segmenter, _ = load_checkpoint(result["final"])
    start_policy, start_segmenter, _ = load_start_models(config, torch.device("cpu"))
    after = dict(policy.model.named_parameters())
    before = dict(start_policy.model.named_parameters())
    assert torch.equal(after["model.visual.patch_embed.proj.weight"], before["model.visual.patch_embed.proj.weight"])
    assert not torch.equal(after["model.language_model.layers.0.self_attn.q_proj.weight"],
                           before["model.language_model.layers.0.self_attn.q_proj.weight"])  # LoRA merged in
    sam_after, sam_before = segmenter.sam.state_dict(), start_segmenter.sam.state_dict()
    decoder = [k for k in sam_after if k.startswith("sam_mask_decoder.")]
    assert any(not torch.equal(sam_after[k], sam_before[k]) for k in decoder)
    frozen = [k for k in sam_after if k.startswith(("image_encoder.", "sam_prompt_encoder."))]
    assert all(torch.equal(sam_after[k], sam_before[k]) for k in frozen)


class _Killed(Exception):
    pass


@pytest.mark.slow
def test_exact_resume_after_a_kill(tmp_path) -> None:
    """Guards resumption (weights, optimizer, scheduler, RNG incl. LoRA dropout, data position): a run killed
    after step 2 and resumed gives step 3's loss bit for bit equal to the uninterrupted run's."""
    from training.sft import train

    full: dict[int, float] = {}
    train(_tiny_config(tmp_path / "a"), on_step=lambda step, m: full.__setitem__(step, m["loss"]))

    def kill(step: int, metrics: dict) -> None:
        if step == 2:
            raise _Killed

    with pytest.raises(_Killed):
        train(_tiny_config(tmp_path / "b"), on_step=kill)
    resumed: dict[int, float] = {}
    train(_tiny_config(tmp_path / "b", resume=True), on_step=lambda step, m: resumed.__setitem__(step, m["loss"]))
    assert list(resumed) == [3]
    assert resumed[3] == full[3]
    rows = [json.loads(line) for line in (tmp_path / "b" / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
