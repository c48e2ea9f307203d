"""SFT / cold start on VTS-CoT conversations: ``python -m training.sft [--config PRESET.yaml] [--field value ...]``.

    python -m training.sft --output_dir runs/sft                       # synthetic data + tiny model, CPU, minutes
    python -m training.sft --config training/configs/coldstart_2b.yaml --init CKPT --data data/revos data/mevis
    torchrun --nproc_per_node 8 -m training.sft --config training/configs/coldstart_4b.yaml ...

Loss per example = LM cross-entropy over the assistant tokens (labels from :mod:`training.data`)
+ ``bce_weight`` BCE + ``dice_weight`` Dice of the ``[SEG]`` masks: the last-layer hidden state at each
supervised ``[SEG]`` goes through the projector and SAM2's single-frame decoder (frozen image encoder, no
memory) on its frames, against the ``mask_dict`` ground truth. LoRA (peft) on every Linear of the language
model, ``embed_tokens``/``lm_head`` fully trained, projector and SAM2 mask decoder trained (each switchable).
AdamW with linear warmup then cosine decay. The run writes resumable ``checkpoint-<step>`` directories,
``log.jsonl`` + TensorBoard events, and ``OUTPUT_DIR/final`` (LoRA merged), a checkpoint that
``videoseg-o3 segment --ckpt`` and ``python -m training.grpo --init`` load.

Deliberately simple: one example is one sequence (no packing, no length grouping), a micro-batch is a
loop over examples, and frames are decoded per example.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from training.config import SFTConfig
from training.data import IGNORE_INDEX, SftExample

__all__ = ["SftModel", "main", "train"]


class SftModel(nn.Module):
    """Policy + segmenter with the SFT trainable set applied; ``forward(example) -> (loss, parts)``."""

    def __init__(self, policy: Any, segmenter: Any, config: SFTConfig) -> None:
        super().__init__()
        from training.common import set_trainable

        self.policy = policy
        self.segmenter = segmenter
        self.config = config
        self._cache: OrderedDict[str, tuple[torch.Tensor, list[torch.Tensor]]] = OrderedDict()
        hf = policy.model
        set_trainable(self, False)
        self.peft = None
        if config.use_lora:
            from peft import LoraConfig, get_peft_model

            targets = [n for n, m in hf.named_modules() if isinstance(m, nn.Linear) and n.startswith("model.language_model.")]
            tied = bool(getattr(hf.config, "tie_word_embeddings", False))
            lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout, bias="none",
                              target_modules=targets,
                              modules_to_save=["embed_tokens", "lm_head"] if config.train_embeddings else None,
                              ensure_weight_tying=tied and config.train_embeddings)
            # peft injects the adapters into ``hf`` in place; the wrapper object is kept only to merge at the end.
            self.__dict__["peft"] = get_peft_model(hf, lora)
        else:
            set_trainable(hf.model.language_model, True)
            if config.train_embeddings:
                set_trainable(hf.lm_head, True)
            else:
                hf.model.language_model.embed_tokens.requires_grad_(False)
        set_trainable(hf.model.visual, config.train_vision_tower)
        set_trainable(policy.projector, config.train_projector)
        sam = segmenter.sam
        set_trainable(sam.sam_mask_decoder, config.train_mask_decoder)
        set_trainable(sam.sam_prompt_encoder, config.train_prompt_encoder)

    def features(self, example: SftExample) -> Any:
        """SAM2 image features of the example's mask frames; the encoder is frozen, so features are cached per
        frame (``sam_feature_cache`` frames, least recently used dropped) and each frame is encoded once."""
        from videoseg_o3.segmenter import FrameFeatures

        limit = self.config.sam_feature_cache
        if limit <= 0 or len(example.frame_keys) != len(example.mask_frames):
            return self.segmenter.encode_frames(example.sam_frames)
        missing = [i for i, key in enumerate(example.frame_keys) if key not in self._cache]
        if missing:
            fresh = self.segmenter.encode_frames(example.sam_frames[missing])
            for row, i in enumerate(missing):
                self._cache[example.frame_keys[i]] = (fresh.image_embed[row:row + 1],
                                                      [level[row:row + 1] for level in fresh.high_res])
        for key in example.frame_keys:
            self._cache.move_to_end(key)
        while len(self._cache) > limit:
            self._cache.popitem(last=False)
        rows = [self._cache[key] for key in example.frame_keys]
        high_res = [torch.cat([r[1][level] for r in rows]) for level in range(len(rows[0][1]))]
        size = (int(example.sam_frames.shape[1]), int(example.sam_frames.shape[2]))
        return FrameFeatures(torch.cat([r[0] for r in rows]), high_res, size)

    def merged_policy(self) -> Any:
        """The policy with LoRA merged into the base weights (the wrapper is gone afterwards)."""
        if self.peft is not None:
            self.policy.model = self.peft.merge_and_unload()
            self.__dict__["peft"] = None
        return self.policy

    def forward(self, example: SftExample) -> tuple[torch.Tensor, dict[str, float]]:
        from training.losses import sft_mask_loss

        policy, config = self.policy, self.config
        device = policy.device
        hf = policy.model if self.peft is None else self.peft.get_base_model()
        ids = example.input_ids.to(device)
        labels = example.labels.to(device)
        pixels = example.pixel_values.to(device=device, dtype=policy.dtype) if example.pixel_values.numel() else None
        grids = example.image_grid_thw.to(device) if pixels is not None else None
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=config.bf16):
            out = hf.model(input_ids=ids[None], pixel_values=pixels, image_grid_thw=grids,
                           mm_token_type_ids=example.mm_token_type_ids.to(device)[None])
            hidden = out.last_hidden_state[0]  # (L, H), after the final norm
            # Logits at the labelled positions only: a full (L, V) projection would cost V/H times the hidden states.
            scored = (labels[1:] != IGNORE_INDEX).nonzero().flatten()
            logits = hf.lm_head(hidden[scored]).float()
        lm_loss = F.cross_entropy(logits, labels[1:][scored])
        parts = {"lm_loss": float(lm_loss.detach()), "label_tokens": int(scored.numel())}
        loss = lm_loss
        if example.seg_pairs.numel():
            pairs = example.seg_pairs.to(device)
            seg = policy.projector(hidden[example.seg_positions.to(device)].to(policy.projector[0].weight.dtype))
            features = self.features(example)  # frozen encoder, no graph
            decoded = self.segmenter.decode_features(features, seg[pairs[:, 0]], frame_index=pairs[:, 1])
            mask_loss, mask_parts = sft_mask_loss(decoded.low_res_logits, example.gt_masks.to(device)[pairs[:, 1]],
                                                  bce_weight=config.bce_weight, dice_weight=config.dice_weight)
            loss = loss + mask_loss
            parts.update(mask_parts, mask_loss=float(mask_loss.detach()), num_masks=int(pairs.shape[0]))
        else:
            # Keep the projector and decoder in the graph at weight 0 (every rank must produce every gradient).
            zero = sum(p.sum() for p in policy.projector.parameters()) * 0.0
            loss = loss + zero
            parts.update(mask_bce=0.0, mask_dice=0.0, mask_loss=0.0, num_masks=0)
        return loss, parts


def total_steps(config: SFTConfig, num_examples: int, world_size: int) -> int:
    if config.max_steps > 0:
        return config.max_steps
    per_step = config.per_device_train_batch_size * config.gradient_accumulation_steps * world_size
    return max(1, math.ceil(config.num_train_epochs * num_examples / per_step))


def train(config: SFTConfig, *, on_step: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run SFT as ``config`` says; returns ``{"final": path, "steps": n, "last": metrics}``.

    ``on_step(step, metrics)`` is called after every optimizer step (and after its checkpoint is saved).
    """
    from training.common import (build_optimizer, end_step, example_index, finish_run, load_start_models,
                                 resume_and_track, seed_everything, start_run)
    from training.data import SftDataset
    from training.distributed import all_reduce_mean, average_gradients, clip_grad_norm, prepare_model
    from videoseg_o3.checkpoint import save_checkpoint

    device, info, out, folders = start_run(config)
    seed_everything(config.seed)
    policy, segmenter, generation = load_start_models(config, device)
    protocol = config.protocol()
    model = SftModel(policy, segmenter, config)
    model.train()
    prepare_model(model, config, info)  # distributed_strategy: fsdp2 shards the policy's layers here
    dataset = SftDataset(folders, policy.processor, policy.seg_token_id, protocol, file_name=config.sft_file,
                         seg_supervision=config.seg_supervision, max_length=config.max_length)
    steps = total_steps(config, len(dataset), info.world_size)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = build_optimizer(params, config, steps)
    step, samples_seen, logger, bar = resume_and_track(config, out, model, optimizer, scheduler, info, steps, "sft")
    per_step = config.per_device_train_batch_size * config.gradient_accumulation_steps
    last: dict[str, Any] = {}
    while step < steps:
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        tokens = 0
        for _ in range(per_step):
            index = example_index(samples_seen + info.rank, len(dataset), config.seed)
            samples_seen += info.world_size
            loss, parts = model(dataset[index])
            (loss / per_step).backward()
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + float(value)
            tokens += int(dataset_tokens(parts))
        average_gradients(params, info)
        grad_norm = float(clip_grad_norm(params, config.max_grad_norm if config.max_grad_norm > 0 else float("inf")))
        finite = math.isfinite(sums["loss"]) and math.isfinite(grad_norm)
        lr = scheduler.get_last_lr()[0]
        if finite:
            optimizer.step()
        else:
            optimizer.zero_grad(set_to_none=True)  # a non-finite loss or gradient skips the update, logged below
        scheduler.step()
        step += 1
        seconds = time.perf_counter() - t0
        metrics = {k: all_reduce_mean(v / per_step, info) for k, v in sums.items() if k not in ("label_tokens", "num_masks")}
        metrics.update(lr=lr, grad_norm=grad_norm, skipped=int(not finite), seconds=seconds,
                       tokens_per_s=all_reduce_mean(tokens, info) * info.world_size / max(seconds, 1e-9),
                       epoch=samples_seen / len(dataset))
        last = metrics
        end_step(config, out, step, steps, metrics, model, optimizer, scheduler, samples_seen, info, logger, bar,
                 {"loss": f"{metrics['loss']:.3f}", "lm": f"{metrics.get('lm_loss', 0.0):.3f}"}, on_step)

    def save_final(final: Path) -> None:
        merged = model.merged_policy()
        merged.eval()
        segmenter.eval()
        save_checkpoint(final, merged, segmenter, protocol, generation, overwrite=True)

    final = finish_run(config, out, step, model, optimizer, scheduler, samples_seen, info, logger, bar, save_final)
    return {"final": final, "steps": step, "last": last}


def dataset_tokens(parts: dict[str, Any]) -> int:
    return int(parts.get("label_tokens", 0))


def main(argv: Sequence[str] | None = None) -> int:
    from training.common import run_main

    return run_main(SFTConfig, train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
