"""Worker processes of the distributed tests, run with ``python -m`` or ``torchrun -m``.

    python -m tests.training.distributed_worker grads OUT STRATEGY [bf16]
        One SFT micro-step of the tiny model on a global batch of examples 0 and 1 (rank r takes the
        examples r, r + world, ...), then rank 0 writes OUT/grads.safetensors (every trainable gradient,
        gathered whole) and OUT/result.json (loss, gradient norm, which modules and parameters were
        sharded, the dtype the first decoder layer's weights had inside forward).
    python -m tests.training.distributed_worker train sft|grpo|grpo-scripted KILL_STEP FLAGS...
        ``training.<trainer>.train`` with FLAGS, every rank leaving with exit code 3 right after step
        KILL_STEP (0: never), as a killed job would; ``grpo-scripted``: GRPO on scripted well-formed turns.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


def grads(out: str, strategy: str, bf16: bool) -> None:
    from safetensors.torch import save_file
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    from training.common import load_start_models, seed_everything, start_run
    from training.config import SFTConfig
    from training.data import SftDataset
    from training.distributed import all_reduce_mean, average_gradients, clip_grad_norm, full_gradients, prepare_model
    from training.sft import SftModel

    config = SFTConfig(output_dir=out, synthetic_videos=1, synthetic_frames=[6, 6], synthetic_size=[40, 48], lora_r=4,
                       lora_alpha=8, lora_dropout=0.0, progress=False, protocol_preset="rl",
                       distributed_strategy=strategy, bf16=bf16)
    device, info, _, folders = start_run(config)
    seed_everything(config.seed)
    policy, segmenter, _ = load_start_models(config, device)
    model = SftModel(policy, segmenter, config)
    model.train()
    dataset = SftDataset(folders, policy.processor, policy.seg_token_id, config.protocol(), file_name=config.sft_file,
                         seg_supervision=config.seg_supervision, max_length=config.max_length)
    resolved = prepare_model(model, config, info)
    weight_dtypes: list[str] = []
    first = policy.model.model.language_model.layers[0].mlp.down_proj
    first.register_forward_pre_hook(lambda mod, args: weight_dtypes.append(str(mod.base_layer.weight.dtype)))
    params = [p for p in model.parameters() if p.requires_grad]
    mine = list(range(2))[info.rank::info.world_size]
    total = 0.0
    for index in mine:
        loss, _ = model(dataset[index])
        (loss / len(mine)).backward()
        total += float(loss.detach()) / len(mine)
    average_gradients(params, info)
    norm = float(clip_grad_norm(params, float("inf")))
    gathered = full_gradients(model)
    result = {
        "strategy": resolved,
        "loss": all_reduce_mean(total, info),
        "grad_norm": norm,
        "fsdp_modules": sorted(n for n, m in model.named_modules() if isinstance(m, FSDPModule)),
        "sharded_params": sorted(n for n, p in model.named_parameters() if isinstance(p, DTensor)),
        "plain_params": sorted(n for n, p in model.named_parameters() if not isinstance(p, DTensor)),
        "forward_weight_dtypes": sorted(set(weight_dtypes)),
        "grad_dtypes": sorted({str(p.grad.dtype) for p in params if p.grad is not None}),
    }
    if info.is_main:
        save_file(gathered, str(Path(out) / "grads.safetensors"))
        (Path(out) / "result.json").write_text(json.dumps(result))


def _script_rollouts() -> None:
    """Well-formed scripted turns and spread advantages (as tests/training/test_grpo.py does): a random tiny policy
    never writes the protocol, so its rollouts would give zero advantages and no policy gradient."""
    import training.rollout as rollout

    real_collect = rollout.collect_rollouts

    def scripted(policy, segmenter, prompts, **kwargs):
        kwargs["forced_turns"] = rollout.scripted_turns(prompts[0].num_frames, kwargs["group_size"])
        batch = real_collect(policy, segmenter, prompts, **kwargs)
        # not summing to zero: scripted rollouts of a group are alike, so symmetric advantages would cancel
        batch.advantages = torch.linspace(-0.5, 1.0, len(batch))
        return batch

    rollout.collect_rollouts = scripted


def train(trainer: str, kill_step: int, flags: list[str]) -> None:
    from training.config import GRPOConfig, SFTConfig, parse_config

    if trainer == "sft":
        from training.sft import train as run
        config = parse_config(SFTConfig, flags)
    else:
        from training.grpo import train as run
        config = parse_config(GRPOConfig, flags)
        if trainer == "grpo-scripted":
            _script_rollouts()

    def on_step(step: int, metrics: dict) -> None:
        if step == kill_step:
            sys.stdout.flush()
            raise SystemExit(3)

    run(config, on_step=on_step)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[0] == "grads":
        grads(args[1], args[2], len(args) > 3 and args[3] == "bf16")
    elif args[0] == "train":
        train(args[1], int(args[2]), args[3:])
    else:
        raise SystemExit(f"unknown mode {args[0]!r}")
