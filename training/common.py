"""What both trainers need: models to start from, data folders, the optimizer and schedule, the run directory."""

from __future__ import annotations

import functools
import math
import random
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

__all__ = [
    "TINY_SEGMENTER",
    "build_optimizer",
    "data_folders",
    "example_index",
    "load_start_models",
    "lr_factor",
    "prepare_output_dir",
    "seed_everything",
    "set_trainable",
]

TINY_SEGMENTER = {"model_config": "sam2_hiera_t", "image_size": 256}
"""The segmenter of the embedded tiny run (what ``videoseg-o3 init-tiny`` writes)."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prepare_output_dir(config: Any) -> Path:
    """Create ``output_dir``; a non-empty one needs ``--resume`` or ``--overwrite_output_dir``."""
    out = Path(config.output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"Invalid output_dir ({out}): it is a file. Pass a directory to --output_dir.")
    resuming = config.resume or config.resume_from_checkpoint
    if out.is_dir() and any(p.name != "data" for p in out.iterdir()) and not resuming and not config.overwrite_output_dir:
        raise ValueError(f"Invalid output_dir ({out}): it is not empty. Pass --resume to continue the run, "
                         "--overwrite_output_dir to start over, or another --output_dir.")
    out.mkdir(parents=True, exist_ok=True)
    return out


def data_folders(config: Any) -> list[Any]:
    """The run's data folders; without ``--data`` a synthetic split generated once into ``OUTPUT_DIR/data/train``."""
    from training.data import DataFolder

    if config.data:
        return [DataFolder(Path(d)) for d in config.data]
    from videoseg_o3.data.synthetic import SynthConfig, generate_split

    root = Path(config.output_dir) / "data" / "train"
    if not (root / "synth_info.json").is_file():
        cfg = SynthConfig(frames=tuple(config.synthetic_frames), size=tuple(config.synthetic_size), objects=(2, 3),
                          turn_weights=(1.0, 2.0, 1.0))
        generate_split(root, config.synthetic_videos, seed=config.seed, split="train", cfg=cfg,
                       protocol=config.protocol())
    return [DataFolder(root)]


def load_start_models(config: Any, device: torch.device) -> tuple[Any, Any, Any]:
    """``(policy, segmenter, generation)`` from ``--init``, or the tiny random models (fixed seed 0, so a resumed
    run rebuilds exactly the frozen weights it started from)."""
    from videoseg_o3.agent.generation import GenerationConfig

    if config.init:
        from videoseg_o3.checkpoint import load_checkpoint, read_checkpoint_config

        policy, segmenter, _ = load_checkpoint(config.init, device=device)
        return policy, segmenter, read_checkpoint_config(config.init).generation
    from videoseg_o3.policy import SegPolicy
    from videoseg_o3.segmenter import Sam2Segmenter, SegmenterConfig

    with torch.random.fork_rng(devices=[]):
        policy = SegPolicy.tiny("qwen3_vl", seed=0)
        torch.manual_seed(0)
        segmenter = Sam2Segmenter.from_config(SegmenterConfig(**TINY_SEGMENTER), device="cpu")
    return policy.to(device), segmenter.to(device), GenerationConfig(max_new_tokens=32)


@functools.lru_cache(maxsize=4)
def _permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def example_index(position: int, num_examples: int, seed: int) -> int:
    """Dataset index at global sample ``position``: a fresh permutation per epoch, seeded by (seed, epoch), so the
    data order is a pure function of the position (what a resumed run restores)."""
    epoch, offset = divmod(position, num_examples)
    return int(_permutation(num_examples, seed, epoch)[offset])


def set_trainable(module: torch.nn.Module, flag: bool) -> None:
    for param in module.parameters():
        param.requires_grad_(flag)


def lr_factor(step: int, total_steps: int, scheduler: str, warmup_ratio: float, warmup_start_factor: float) -> float:
    """Learning-rate multiplier at optimizer step ``step`` (0-based) of ``total_steps``.

    Warmup: linear from ``warmup_start_factor`` to 1 over ``round(warmup_ratio * total)`` steps (mmengine's
    LinearLR, the released SFT); then ``cosine`` to 0, ``linear`` to 0 (transformers' default, the released
    GRPO) or ``constant``.
    """
    warmup = int(round(warmup_ratio * total_steps))
    if step < warmup:
        return warmup_start_factor + (1.0 - warmup_start_factor) * step / warmup
    rest = max(1, total_steps - warmup)
    progress = min(1.0, (step - warmup) / rest)
    if scheduler == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if scheduler == "linear":
        return 1.0 - progress
    return 1.0


def build_optimizer(params: Iterable[torch.nn.Parameter], config: Any, total_steps: int) -> tuple[Any, Any]:
    """AdamW over ``params`` and a LambdaLR with :func:`lr_factor`."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("Nothing to train: every parameter is frozen. Enable LoRA or one of the --train_* switches.")
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, betas=(config.adam_beta1, config.adam_beta2),
                                  eps=config.adam_epsilon, weight_decay=config.weight_decay)
    args = (total_steps, config.lr_scheduler_type, config.warmup_ratio, config.warmup_start_factor)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, *args))
    return optimizer, scheduler


def start_run(config: Any) -> tuple[torch.device, Any, Path, list[Any]]:
    """What both trainers do first: pick the device, join the process group (one GPU per local rank),
    let rank 0 prepare the output directory and any generated data, then read the data folders on every
    rank. Returns ``(device, dist_info, output_dir, data_folders)``."""
    from training.distributed import barrier, init_distributed
    from videoseg_o3.device import resolve_device

    device = resolve_device(None if config.device == "auto" else config.device)
    # fsdp2 with one process still needs a (one-rank) process group for its device mesh
    info = init_distributed(device, single_process_group=config.distributed_strategy == "fsdp2")
    if device.type == "cuda" and info.enabled:
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)  # NCCL and FSDP2's device mesh use the current device
    folders: list[Any] = []
    if info.is_main:
        prepare_output_dir(config)
        folders = data_folders(config)
    barrier(info)  # rank 0 may have generated the data the others now read
    if not info.is_main:
        folders = data_folders(config)
    return device, info, Path(config.output_dir), folders


def resume_and_track(config: Any, out: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any, info: Any,
                     total_steps: int, desc: str) -> tuple[int, int, Any, Any]:
    """Restore the latest (or the named) checkpoint when resuming, then open the run's logger and progress
    bar at that step. Returns ``(step, samples_seen, logger, bar)``; ``bar`` is None off rank 0 or when
    progress is off."""
    from training import checkpointing
    from training.logging import RunLogger

    step, samples_seen = 0, 0
    resume_from = Path(config.resume_from_checkpoint) if config.resume_from_checkpoint else \
        (checkpointing.latest_checkpoint(out) if config.resume else None)
    if resume_from is not None:
        state = checkpointing.load_training_state(resume_from, model, optimizer, scheduler)
        step, samples_seen = int(state["step"]), int(state["samples_seen"])
    logger = RunLogger(out, config.report_to, resume_step=step if resume_from is not None else None, enabled=info.is_main)
    bar = None
    if config.progress and info.is_main:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=step, desc=desc, unit="step")
    return step, samples_seen, logger, bar


def end_step(config: Any, out: Path, step: int, total_steps: int, metrics: dict[str, Any], model: torch.nn.Module,
             optimizer: Any, scheduler: Any, samples_seen: int, info: Any, logger: Any, bar: Any,
             postfix: dict[str, str], on_step: Any) -> None:
    """Both trainers' bookkeeping after an optimizer step: log every ``logging_steps`` (and the last step),
    save a resumable checkpoint every ``save_steps`` (rank 0; the last one is saved by :func:`finish_run`),
    advance the progress bar, then call ``on_step(step, metrics)``."""
    from training import checkpointing

    if step % config.logging_steps == 0 or step == total_steps:
        logger.log(step, metrics)
    if config.save_steps and step % config.save_steps == 0 and step < total_steps:
        tensors = checkpointing.gather_training_state(model, optimizer)  # every rank: a collective under FSDP2
        if info.is_main:
            checkpointing.save_training_state(out, step, model, optimizer, scheduler, samples_seen=samples_seen,
                                              config=config.to_dict(), keep=config.save_total_limit, tensors=tensors)
    if bar is not None:
        bar.update(1)
        bar.set_postfix(**postfix)
    if on_step is not None:
        on_step(step, metrics)


def finish_run(config: Any, out: Path, step: int, model: torch.nn.Module, optimizer: Any, scheduler: Any,
               samples_seen: int, info: Any, logger: Any, bar: Any, save_final: Any) -> Path:
    """Close the run: the last resumable checkpoint and ``save_final(OUTPUT_DIR/final)`` (the project
    checkpoint) on rank 0, then the logger; every rank waits for rank 0. Returns the final directory."""
    from training import checkpointing
    from training.distributed import barrier, unshard_for_export

    if bar is not None:
        bar.close()
    final = out / "final"
    tensors = checkpointing.gather_training_state(model, optimizer)  # every rank: a collective under FSDP2
    unshard_for_export(model)  # FSDP2 units back to plain modules (a collective), so save_final sees whole tensors
    if info.is_main:
        checkpointing.save_training_state(out, step, model, optimizer, scheduler, samples_seen=samples_seen,
                                          config=config.to_dict(), keep=config.save_total_limit, tensors=tensors)
        save_final(final)
    logger.close()
    barrier(info)
    return final


def run_main(config_cls: type, train: Any, argv: Any) -> int:
    """``python -m training.<trainer>``: parse the config, train, print where the result is; a bad config,
    file or folder is one line on stderr and exit code 2."""
    import sys

    from training.config import parse_config

    try:
        config = parse_config(config_cls, argv)
        result = train(config)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {result['final']} after {result['steps']} steps")
    return 0
