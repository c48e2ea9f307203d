"""Trainer configurations: dataclasses parsed by transformers' ``HfArgumentParser`` (the TRL convention).

Every field is a command-line flag of the same name (``--learning_rate 1e-5``) and a YAML key
(``--config training/configs/grpo_4b.yaml``); flags given on the command line win over the file. Field
names follow TRL / verl where one exists. The defaults are the *embedded run*: without ``--data`` the
trainers generate a small synthetic dataset into the output directory and train the tiny model on the CPU
in a few minutes; the presets in ``training/configs/`` hold the released recipe (reference values are in
each field's help).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, TypeVar

__all__ = ["GRPOConfig", "SFTConfig", "TrainConfig", "parse_config"]

LR_SCHEDULERS = ("cosine", "linear", "constant")
PROTOCOL_PRESETS = ("eval", "rl")
DISTRIBUTED_STRATEGIES = ("auto", "replicate", "fsdp2")  # training.distributed.STRATEGIES


@dataclass
class TrainConfig:
    """Fields shared by SFT and GRPO."""

    output_dir: str = field(default="runs/train", metadata={"help": "Where checkpoints, logs and OUTPUT_DIR/final go."})
    data: list[str] = field(
        default_factory=list,
        metadata={"help": "Data folders (JPEGImages/, mask_dict.json, vts_cot.json / rl_data.json), e.g. a ReVOS and a "
                  "MeViS folder. Empty: generate a synthetic dataset into OUTPUT_DIR/data."},
    )
    init: str | None = field(
        default=None,
        metadata={"help": "Checkpoint directory to start from (videoseg_o3 layout or a released VideoSEG-O3 directory). "
                  "Default: a tiny random model."},
    )
    seed: int = field(default=42, metadata={"help": "Seed of data order, dropout and sampling (reference 42)."})
    learning_rate: float = field(default=4e-5, metadata={"help": "Peak AdamW learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2."})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 disables)."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": f"One of {', '.join(LR_SCHEDULERS)}."})
    warmup_ratio: float = field(default=0.0, metadata={"help": "Fraction of steps of linear warmup."})
    warmup_start_factor: float = field(
        default=1e-5, metadata={"help": "LR factor at step 0 of the warmup (mmengine LinearLR start_factor; reference 1e-5)."}
    )
    num_train_epochs: float = field(default=1.0, metadata={"help": "Passes over the data (ignored when max_steps > 0)."})
    max_steps: int = field(default=-1, metadata={"help": "Optimizer steps to run; -1: from num_train_epochs."})
    per_device_train_batch_size: int = field(default=1, metadata={"help": "Examples (SFT) / rollouts (GRPO) per micro-batch."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    save_steps: int = field(default=0, metadata={"help": "Save a resumable checkpoint every N steps (0: only at the end)."})
    save_total_limit: int = field(default=2, metadata={"help": "Resumable checkpoints to keep (oldest deleted); 0 keeps all."})
    logging_steps: int = field(default=1, metadata={"help": "Write a log row every N steps."})
    resume: bool = field(default=False, metadata={"help": "Resume from the latest checkpoint-* in output_dir."})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "Resume from this checkpoint-* directory."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Allow a non-empty output_dir without --resume."})
    protocol_preset: str = field(
        default="rl", metadata={"help": "Frame budgets of the dialogue: 'rl' (10 + 5 frames, the RL rollouts) or 'eval' (20 + 8)."}
    )
    turn0_temporal_frames: int | None = field(
        default=None,
        metadata={"help": "Low-resolution frames of the first user turn instead of the preset's (10 or 20). Scale it with "
                  "the videos: short clips all shown at turn 0 leave a follow-up turn nothing new to show."},
    )
    turn0_spatial_frames: int | None = field(
        default=None, metadata={"help": "High-resolution frames of the first user turn instead of the preset's (5 or 8)."}
    )
    prompt_style: str = field(default="videoseg-o3", metadata={"help": "Prompt wording: 'videoseg-o3' (released) or 'default'."})
    bf16: bool = field(default=False, metadata={"help": "Train the policy in bfloat16 autocast (reference: on)."})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda[:i]."})
    distributed_strategy: str = field(
        default="auto",
        metadata={"help": "With several processes (torchrun): replicate (every rank holds the model, gradients "
                  "all-reduced as DDP does), fsdp2 (torch fully_shard of the decoder layers and vision blocks) or auto "
                  "(fsdp2 on CUDA with several processes, else replicate)."},
    )
    progress: bool = field(default=True, metadata={"help": "Show a tqdm progress bar."})
    report_to: list[str] = field(
        default_factory=lambda: ["jsonl", "tensorboard"],
        metadata={"help": "Loggers: jsonl (OUTPUT_DIR/log.jsonl), tensorboard (OUTPUT_DIR/tb)."},
    )
    synthetic_videos: int = field(default=4, metadata={"help": "Videos of the generated dataset (no --data)."})
    synthetic_frames: list[int] = field(default_factory=lambda: [6, 10], metadata={"help": "Min and max frames per synthetic video."})
    synthetic_size: list[int] = field(default_factory=lambda: [40, 64], metadata={"help": "Min and max synthetic frame side in pixels."})

    def __post_init__(self) -> None:
        _choice(self, "lr_scheduler_type", LR_SCHEDULERS)
        _choice(self, "protocol_preset", PROTOCOL_PRESETS)
        _choice(self, "prompt_style", ("videoseg-o3", "default"))
        _choice(self, "distributed_strategy", DISTRIBUTED_STRATEGIES)
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "logging_steps", "synthetic_videos"):
            _at_least(self, name, 1)
        for name in ("save_steps", "save_total_limit"):
            _at_least(self, name, 0)
        for name in ("turn0_temporal_frames", "turn0_spatial_frames"):
            if getattr(self, name) is not None:
                _at_least(self, name, 0)
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"Invalid warmup_ratio ({self.warmup_ratio}). Set --warmup_ratio to a value in [0, 1).")
        if self.learning_rate <= 0:
            raise ValueError(f"Invalid learning_rate ({self.learning_rate}). Set --learning_rate to a value > 0.")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"Invalid max_steps ({self.max_steps}). Set --max_steps to -1 (use epochs) or a value >= 1.")
        for name in ("synthetic_frames", "synthetic_size"):
            value = getattr(self, name)
            if len(value) != 2 or value[0] > value[1]:
                raise ValueError(f"Invalid {name} ({value}). Pass two numbers MIN MAX with MIN <= MAX, e.g. --{name} 6 10.")
        unknown = set(self.report_to) - {"jsonl", "tensorboard", "none"}
        if unknown:
            raise ValueError(f"Invalid report_to ({', '.join(sorted(unknown))}). Supported values are jsonl, tensorboard, none.")

    def protocol(self) -> Any:
        """The ``ProtocolConfig`` of the dialogues (preset, turn-0 frame counts when set, prompt style)."""
        from videoseg_o3.protocol import ProtocolConfig

        changes: dict[str, Any] = {"prompt_style": self.prompt_style}
        for name in ("turn0_temporal_frames", "turn0_spatial_frames"):
            if getattr(self, name) is not None:
                changes[name] = getattr(self, name)
        return dataclasses.replace(ProtocolConfig.preset(self.protocol_preset), **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class SFTConfig(TrainConfig):
    """SFT / cold start (``python -m training.sft``). Reference: lr 4e-5, wd 0.05, 5 % warmup then cosine, 1 epoch,
    batch 1 x accumulation 4 (cold start) / 8 (stage I) on 8 GPUs, LoRA r 128 / alpha 256 / dropout 0.05."""

    output_dir: str = field(default="runs/sft", metadata={"help": "Where checkpoints, logs and OUTPUT_DIR/final go."})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay (reference 0.05)."})
    warmup_ratio: float = field(default=0.05, metadata={"help": "Fraction of steps of linear warmup (reference 0.05)."})
    gradient_accumulation_steps: int = field(default=2, metadata={"help": "Micro-batches per optimizer step (reference 4)."})
    use_lora: bool = field(default=True, metadata={"help": "LoRA on every Linear of the language model (else full training)."})
    lora_r: int = field(default=128, metadata={"help": "LoRA rank (reference 128)."})
    lora_alpha: int = field(default=256, metadata={"help": "LoRA alpha (reference 256)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout (reference 0.05)."})
    train_embeddings: bool = field(default=True, metadata={"help": "Train embed_tokens and lm_head fully (reference: on)."})
    train_projector: bool = field(default=True, metadata={"help": "Train the [SEG] projector (reference: on)."})
    train_mask_decoder: bool = field(default=True, metadata={"help": "Train SAM2's mask decoder (reference: on)."})
    train_prompt_encoder: bool = field(default=False, metadata={"help": "Train SAM2's prompt encoder (reference: off in SFT)."})
    train_vision_tower: bool = field(default=False, metadata={"help": "Train the vision tower (reference: off in SFT)."})
    bce_weight: float = field(default=2.0, metadata={"help": "Weight of the mask BCE (reference 2.0)."})
    dice_weight: float = field(default=0.5, metadata={"help": "Weight of the mask Dice (reference 0.5)."})
    seg_supervision: str = field(
        default="every_turn",
        metadata={"help": "every_turn: each turn's [SEG] on the spatial frames and its keyframe; first_seg: only the "
                  "first [SEG] (the released recipe)."},
    )
    max_length: int = field(default=8192, metadata={"help": "Longest dialogue in tokens (longer examples are an error)."})
    sft_file: str = field(default="vts_cot.json", metadata={"help": "VTS-CoT file name inside each data folder."})
    sam_feature_cache: int = field(
        default=512,
        metadata={"help": "Frames whose frozen SAM2 image features are kept between examples (0: none). About 5.5 MB "
                  "per frame at 256 px, 88 MB at 1024 px."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        from training.data import SEG_SUPERVISION

        _choice(self, "seg_supervision", SEG_SUPERVISION)
        _at_least(self, "lora_r", 1)
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"Invalid lora_dropout ({self.lora_dropout}). Set --lora_dropout to a value in [0, 1).")


@dataclass
class GRPOConfig(TrainConfig):
    """Multi-turn GRPO (``python -m training.grpo``). Reference: lr 3e-6 constant-free linear decay, no warmup, wd 0,
    G = 4, 16 prompts / 64 rollouts per step, temperature 0.9, top_p 0.9, top_k 50, 3 turns of <= 512 tokens,
    beta 0.04 (k3), aux mask loss 0.2, 1000 steps."""

    output_dir: str = field(default="runs/grpo", metadata={"help": "Where checkpoints, logs and OUTPUT_DIR/final go."})
    learning_rate: float = field(default=3e-6, metadata={"help": "AdamW learning rate (reference 3e-6)."})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "Reference: linear decay to 0."})
    max_steps: int = field(default=3, metadata={"help": "Optimizer steps (reference 1000)."})
    per_device_train_batch_size: int = field(
        default=4, metadata={"help": "Rollouts per micro-batch, a multiple of num_generations (groups are never split)."}
    )
    num_generations: int = field(default=4, metadata={"help": "Rollouts per prompt, G (reference 4)."})
    max_completion_length: int = field(default=48, metadata={"help": "New tokens per assistant turn (reference 512)."})
    max_turns: int = field(default=3, metadata={"help": "Assistant turns per episode (reference 3)."})
    temperature: float = field(default=0.9, metadata={"help": "Sampling temperature (reference 0.9)."})
    top_p: float = field(default=0.9, metadata={"help": "Nucleus sampling (reference 0.9)."})
    top_k: int = field(default=50, metadata={"help": "Top-k sampling (reference 50)."})
    beta: float = field(default=0.04, metadata={"help": "KL coefficient to the frozen reference policy (reference 0.04)."})
    kl_type: str = field(default="k3", metadata={"help": "KL estimator: k1, k2 or k3 (reference k3)."})
    clip_low: float = field(default=0.2, metadata={"help": "PPO ratio clip below 1 (used when num_iterations > 1)."})
    clip_high: float = field(default=0.2, metadata={"help": "PPO ratio clip above 1 (DAPO: 0.28)."})
    loss_agg_mode: str = field(
        default="seq-mean-token-mean",
        metadata={"help": "token-mean, seq-mean-token-mean (reference) or seq-mean-token-sum-norm (Dr. GRPO)."},
    )
    num_iterations: int = field(default=1, metadata={"help": "Updates per rollout batch (> 1: clipped ratio on old log-probs)."})
    loss_impl: str = field(default="eager", metadata={"help": "Policy-loss path: eager, chunked or triton."})
    update_batching: str = field(default="group", metadata={"help": "Update forward: group (one padded forward per micro-batch) or rollout (one per rollout; memory fallback)."})
    reward_mode: str = field(default="intended", metadata={"help": "intended (dense forms) or compat (released step functions)."})
    reward_funcs: list[str] = field(default_factory=list, metadata={"help": "Reward names (default: the seven of the recipe)."})
    reward_weights: list[float] = field(default_factory=list, metadata={"help": "One weight per reward (default 1 each)."})
    use_calibration: bool = field(default=True, metadata={"help": "SEG-aware logit calibration at [SEG] (reference: on)."})
    seg_loss_weight: float = field(default=0.2, metadata={"help": "Weight of the forward-pass mask BCE + Dice (reference 0.2)."})
    logprob_mode: str = field(
        default="fp32", metadata={"help": "fp32 at the sampling temperature, or compat (bf16 at temperature 1, the reference)."}
    )
    train_vision_tower: bool = field(default=True, metadata={"help": "Train the vision tower (reference: on in RL)."})
    train_prompt_encoder: bool = field(default=True, metadata={"help": "Train SAM2's prompt encoder (reference: on in RL)."})
    train_mask_decoder: bool = field(default=True, metadata={"help": "Train SAM2's mask decoder (reference: on in RL)."})
    rl_file: str = field(default="rl_data.json", metadata={"help": "RL record file name inside each data folder."})

    def __post_init__(self) -> None:
        super().__post_init__()
        from kernels.grpo_loss import KL_TYPES, LOSS_AGG_MODES

        _choice(self, "kl_type", KL_TYPES)
        _choice(self, "loss_agg_mode", LOSS_AGG_MODES)
        _choice(self, "loss_impl", ("eager", "chunked", "triton"))
        _choice(self, "reward_mode", ("intended", "compat"))
        _choice(self, "logprob_mode", ("fp32", "compat"))
        for name in ("num_generations", "num_iterations", "max_completion_length", "max_turns"):
            _at_least(self, name, 1)
        if self.per_device_train_batch_size % self.num_generations:
            raise ValueError(
                f"Invalid per_device_train_batch_size ({self.per_device_train_batch_size}): it must be a multiple of "
                f"num_generations ({self.num_generations}) so that no group is split; set it to "
                f"{max(1, self.per_device_train_batch_size // self.num_generations) * self.num_generations}."
            )
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"Invalid sampling (temperature={self.temperature}, top_p={self.top_p}). Set --temperature > 0 "
                             "and --top_p in (0, 1].")
        if self.reward_weights and len(self.reward_weights) != len(self.reward_funcs):
            raise ValueError(f"Invalid reward_weights ({self.reward_weights}): give one weight per reward named in "
                             f"--reward_funcs ({len(self.reward_funcs)} named).")
        if self.reward_funcs:
            from videoseg_o3.rewards import DEFAULT_REWARD_WEIGHTS, registered_rewards

            known = set(registered_rewards())
            unknown = [name for name in self.reward_funcs if name not in known]
            if unknown:
                raise ValueError(f"Invalid reward_funcs ({', '.join(unknown)}). Supported values are "
                                 f"{', '.join(sorted(known))} (the recipe: {', '.join(DEFAULT_REWARD_WEIGHTS)}).")

    def protocol(self) -> Any:
        return dataclasses.replace(super().protocol(), max_turns=self.max_turns)


def _choice(config: Any, name: str, allowed: Sequence[str]) -> None:
    value = getattr(config, name)
    if value not in allowed:
        raise ValueError(f"Invalid {name} ({value}). Supported values are {', '.join(allowed)}; set --{name}.")


def _at_least(config: Any, name: str, low: int) -> None:
    value = getattr(config, name)
    if value < low:
        raise ValueError(f"Invalid {name} ({value}). Set --{name} to a value >= {low}.")


C = TypeVar("C", bound=TrainConfig)


def parse_config(cls: type[C], argv: Sequence[str] | None = None) -> C:
    """Parse ``argv`` (default ``sys.argv[1:]``) into ``cls``: ``--config FILE.yaml`` first, flags on top.

    Raises:
        ValueError: an unknown YAML key or flag, or an invalid value (the message names the field and the fix).
    """
    import argparse

    from transformers import HfArgumentParser

    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    parser = HfArgumentParser(cls)
    parser.add_argument("--config", default=None, help="A YAML file of field: value pairs (command-line flags win).")
    names = {f.name for f in dataclasses.fields(cls)}
    if known.config:
        import yaml

        path = Path(known.config)
        if not path.is_file():
            raise ValueError(f"Missing config file {path}. Pass an existing YAML file to --config.")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"Invalid YAML in {path}: {err}.") from err
        if not isinstance(values, dict):
            raise ValueError(f"Invalid config file {path}: expected a mapping of field: value.")
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"Invalid key(s) {', '.join(unknown)} in {path}. Supported keys are the {cls.__name__} fields "
                             f"(see --help).")
        parser.set_defaults(**values)
    flags = [a.split("=", 1)[0][2:] for a in rest if a.startswith("--")]
    unknown = sorted({f for f in flags if f not in names and f not in ("help",) and not f.startswith("no_")})
    if unknown:
        raise ValueError(f"Invalid flag(s) --{', --'.join(unknown)}. Supported flags are the {cls.__name__} fields (see --help).")
    (config, _extra) = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)[:2]
    return config
