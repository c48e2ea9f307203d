"""The synthetic recipe: recorded synth arguments reproduce the data, query kinds, the ablation table, and the whole
pipeline end to end at smoke size (results.json structure and values, loadable checkpoints, plots)."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from videoseg_o3.data import load_benchmark
from training.synthetic_recipe import (QUERY_TYPES, STAGES, RecipeConfig, ablation_table, combine_ablations, generate_data,
                                       query_kinds)

TINY = dataclasses.replace(RecipeConfig.preset("smoke"), train_videos=1, val_videos=1, test_videos=2, queries_per_video=2)


def test_recorded_synth_command_reproduces_the_test_split(tmp_path) -> None:
    """Guards the promise of results.json: running ``videoseg-o3 synth`` with the recorded arguments renders the same
    test expressions and masks as the recipe did (fails if the recipe changes a knob the CLI does not expose, or
    records the wrong arguments)."""
    record = generate_data(tmp_path / "recipe", TINY)
    args = [a if a != str(tmp_path / "recipe") else str(tmp_path / "cli") for a in record["arguments"]["test"]]
    subprocess.run([sys.executable, "-m", "videoseg_o3", "synth", *args, "--no-progress"], check=True,
                   capture_output=True)
    for name in ("meta_expressions.json", "mask_dict.json"):
        assert (tmp_path / "cli" / "test" / name).read_text() == (tmp_path / "recipe" / "test" / name).read_text()
    assert record["command"].startswith("videoseg-o3 synth --out OUT --split test")


def _kind_from_text(text: str) -> str:
    """The query kind read off the expression with the documented grammar (videoseg_o3.data.synthetic)."""
    if re.search(r"nearest the|closest to the|(leftmost|rightmost|highest|lowest) object", text):
        return "spatial"
    if re.search(r"appears|stops|leaves", text):
        return "temporal"
    return "referring"


def test_query_kinds_match_the_expressions(tmp_path) -> None:
    """Guards the per-type split: every test expression gets the kind that its text (read with the documented query
    grammar) and its ReVOS type_id (referring <-> 0) say -- both independent of the re-drawing in ``query_kinds``."""
    cfg = dataclasses.replace(TINY, test_videos=6, queries_per_video=3)
    generate_data(tmp_path, cfg)
    kinds = query_kinds(tmp_path, cfg, "test")
    meta = json.loads((tmp_path / "test" / "meta_expressions.json").read_text())["videos"]
    seen = []
    for video_id, video in meta.items():
        for exp_id, exp in video["expressions"].items():
            kind = kinds[(video_id, exp_id)]
            assert kind == _kind_from_text(exp["exp"]), (exp["exp"], kind)
            assert (kind == "referring") == (int(exp["type_id"]) == 0)
            seen.append(kind)
    assert len(seen) == len(kinds) and set(seen) == set(QUERY_TYPES)


def test_ablation_table_mean_and_std_hand_worked() -> None:
    """Guards the table arithmetic: J&F 0.2 and 0.4 over two seeds -> 30.0 ± 14.1 (sample std, ddof 1), and the
    chosen-on-val mark goes on the named variant only."""
    def run(jf: float, temporal: float) -> dict:
        test = {"jf": jf, "by_type": {"temporal": {"jf": temporal, "count": 1}}, "turns_per_episode": 2.0, "well_formed": 1.0}
        return {"test": test, "val": {"jf": jf}}

    table = ablation_table({"a": [run(0.2, 0.1), run(0.4, 0.3)], "b": [run(0.5, 0.5)]}, chosen="b")
    rows = table.strip().splitlines()
    assert rows[2].startswith("| a | 2 | 30.0 ± 14.1 | 30.0 ± 14.1 | – | 20.0 ± 14.1 | – | 2.00 | 100.0 ± 0.0 |")
    assert rows[3].startswith("| b (chosen on val) | 1 | 50.0 ± 0.0 |")


def _ablation_run(jf: float, temporal: float, seed: int, val: float | None = None) -> dict:
    test = {"jf": jf, "by_type": {"temporal": {"jf": temporal, "count": 1}}, "turns_per_episode": 1.0, "well_formed": 1.0}
    return {"seed": seed, "test": test, "val": {"jf": jf if val is None else val}}


def _write_run(path: Path, runs: dict, config: dict | None = None, start: str = "/runs/q1/init") -> Path:
    path.mkdir(parents=True)
    record = {"config": config or {"grpo_steps": 40}, "start": start, "ablations": {"chosen_on_val": None, "runs": runs}}
    (path / "results.json").write_text(json.dumps(record))
    return path


def test_combine_ablations_merges_seeds_hand_worked(tmp_path) -> None:
    """Guards merging per-seed runs: seed 0 (J&F 0.2) and seed 1 (0.4) of one variant become one row 30.0 ± 14.1 over
    2 seeds; the chosen variant is the best on val even where test says otherwise."""
    a = _write_run(tmp_path / "s0", {"x": [_ablation_run(0.2, 0.1, 0)], "y": [_ablation_run(0.9, 0.9, 0, val=0.1)]})
    b = _write_run(tmp_path / "s1", {"x": [_ablation_run(0.4, 0.3, 1)], "y": [_ablation_run(0.9, 0.9, 1, val=0.1)]})
    record = combine_ablations([a, b], tmp_path / "all")
    rows = (tmp_path / "all" / "ablations.md").read_text().strip().splitlines()
    assert "seeds 0, 1" in rows[0]
    assert rows[-2].startswith("| x (chosen on val) | 2 | 30.0 ± 14.1 | 30.0 ± 14.1 | – | 20.0 ± 14.1 |")
    assert rows[-1].startswith("| y | 2 | 10.0 ± 0.0 | 90.0 ± 0.0 |")
    assert record["chosen_on_val"] == "x"
    assert json.loads((tmp_path / "all" / "ablations.json").read_text())["runs"]["x"][1]["seed"] == 1


def test_combine_ablations_rejects_runs_that_are_not_one_experiment(tmp_path) -> None:
    """Guards the merge's bad input: a different recipe config, another starting checkpoint, a seed counted twice,
    a run without ablations or without results each stop with an error naming the problem."""
    a = _write_run(tmp_path / "a", {"x": [_ablation_run(0.2, 0.1, 0)]})
    other = _write_run(tmp_path / "b", {"x": [_ablation_run(0.2, 0.1, 1)]}, config={"grpo_steps": 80})
    same_seed = _write_run(tmp_path / "c", {"x": [_ablation_run(0.3, 0.1, 0)]})
    other_init = _write_run(tmp_path / "e", {"x": [_ablation_run(0.3, 0.1, 1)]}, start="/runs/q9/init")
    with pytest.raises(ValueError, match="differs in config keys \\['grpo_steps'\\]"):
        combine_ablations([a, other], tmp_path / "out")
    with pytest.raises(ValueError, match="started from /runs/q9/init, .*a/results.json from /runs/q1/init"):
        combine_ablations([a, other_init], tmp_path / "out")
    with pytest.raises(ValueError, match="seed\\(s\\) \\[0, 0\\] more than once"):
        combine_ablations([a, same_seed], tmp_path / "out")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "results.json").write_text(json.dumps({"config": {"grpo_steps": 40}}))
    with pytest.raises(ValueError, match="no ablations"):
        combine_ablations([a, tmp_path / "d"], tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="results.json not found"):
        combine_ablations([a, tmp_path / "missing"], tmp_path / "out")


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0", "1"], "Invalid seeds \\(\\[0, 1\\]\\) with an SFT checkpoint"),
    ([], "SFT checkpoint .* not found"),
])
def test_recipe_rejects_bad_sft_checkpoint_use_before_any_work(tmp_path, capsys, argv, message) -> None:
    """Guards ``--sft``: one SFT checkpoint is one seed's, and a missing one is named; nothing is written."""
    from training.synthetic_recipe import main

    assert main(["--out", str(tmp_path / "run"), "--smoke", "--sft", str(tmp_path / "nope"), *argv]) == 2
    assert re.search(message, capsys.readouterr().out)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_smoke_recipe_end_to_end(tmp_path) -> None:
    """Guards the whole recipe at smoke size: results.json has every stage with J&F, J, F in [0, 1], reward terms,
    turns and well-formed share; the ablation table is written; the SFT and GRPO checkpoints load with
    ``VideoSegO3.from_pretrained``; the plots exist."""
    from training.synthetic_recipe import run_recipe
    from videoseg_o3.pipeline import VideoSegO3

    out = tmp_path / "run"
    run_recipe(out, RecipeConfig.preset("smoke"), seeds=[0], ablations=True, log=lambda *a: None)
    results = json.loads((out / "results.json").read_text())
    assert set(STAGES) <= set(results["stages"])
    for stage in STAGES:
        entry = results["stages"][stage]
        for key in ("jf", "J", "F", "well_formed"):
            assert 0.0 <= entry[key] <= 1.0, (stage, key, entry[key])
        assert entry["jf"] == pytest.approx((entry["J"] + entry["F"]) / 2)
        assert entry["turns_per_episode"] >= 1.0
        assert "total" in entry["rewards"] and "strict_format_cot" in entry["rewards"]
        assert 0.0 <= entry["val"]["jf"] <= 1.0
    assert results["synth"]["command"].startswith("videoseg-o3 synth ")
    assert results["stages_mean_std"]["grpo"]["jf"]["std"] == 0.0  # one seed
    table = (out / "ablations.md").read_text()
    for variant in ("turns2_calon", "turns1_calon", "turns2_caloff", "sft only"):
        assert f"| {variant}" in table
    assert results["ablations"]["chosen_on_val"] is not None
    loaded = {stage: VideoSegO3.from_pretrained(out / stage / "final", device="cpu") for stage in ("sft", "grpo")}
    assert loaded["grpo"].protocol.max_turns == 2  # the smoke preset's GRPO turns, saved with the checkpoint
    for stage in ("sft", "grpo"):  # the recipe's turn-0 budget (4 + 2 frames), not the RL preset's 10 + 5
        assert (loaded[stage].protocol.turn0_temporal_frames, loaded[stage].protocol.turn0_spatial_frames) == (4, 2)
    # SFT leaves the warmed-up mask decoder alone (sft_train_mask_decoder off) and trains the [SEG] projector
    init = VideoSegO3.from_pretrained(out / "init", device="cpu")
    before = init.segmenter.sam.sam_mask_decoder.state_dict()
    after = loaded["sft"].segmenter.sam.sam_mask_decoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(not torch.equal(a, b) for a, b in zip(init.policy.projector.state_dict().values(),
                                                       loaded["sft"].policy.projector.state_dict().values()))
    # scripted turns: the variants differ only where turn 0 misses the best frame (turn-0 frames by hand: 4 spread
    # evenly with both ends, plus the first and last)
    differing = 0
    with_others = 0  # expressions whose anchor (the best frame) shows another object: ReVOS foreground minus target
    for record in load_benchmark(out / "data" / "test", "revos"):
        target = record.load_masks()
        areas = target.sum(axis=(1, 2))
        best = int(np.argmax(areas))
        differing += best not in set(np.linspace(0, len(areas) - 1, 4).astype(int).tolist())
        with_others += bool((record.load_foreground()[best].astype(int) - target[best]).max() > 0)
    for stage in ("sft", "grpo"):
        scripted = results["stages"][stage]["scripted_turns"]
        assert scripted["expressions"] == len(load_benchmark(out / "data" / "test", "revos"))
        assert scripted["differing"] == differing
        assert 0.0 <= scripted["prompt_effect"] <= 1.0
        choice = scripted["seg_choice"]
        assert choice["expressions"] == with_others
        for key in ("target_iou", "other_iou"):
            assert (choice[key] is None) if with_others == 0 else (0.0 <= choice[key] <= 1.0)
        for name in ("one_turn_seen", "one_turn_blind", "look_closer"):
            assert 0.0 <= scripted["jf"][name] <= 1.0
            if differing:
                gap_all = (scripted["jf"][name] - scripted["jf"]["one_turn_seen"]) * scripted["expressions"]
                assert gap_all == pytest.approx((scripted["jf_differing"][name] - scripted["jf_differing"]["one_turn_seen"]) * differing)
    assert (out / "grpo_turns1_calon" / "final" / "videoseg_o3.json").is_file()
    for name in ("jf_per_stage.png", "reward_per_stage.png"):
        assert (out / "plots" / name).stat().st_size > 0
    # the held-out video the run ends on: an overlay a user can open, and J&F recomputed from the written masks
    shown = results["showcase"]
    assert shown["checkpoint"].endswith("grpo/final") and Path(shown["overlay"]).stat().st_size > 0
    turns = json.loads((out / "showcase" / "turns.json").read_text())
    record = next(r for r in load_benchmark(out / "data" / "test", "revos")
                  if (r.video_id, r.expression_id) == (turns["video_id"], turns["expression_id"]))
    written = np.stack([np.array(Image.open(p)) > 0 for p in sorted((out / "showcase" / "masks").iterdir())])
    gt = record.load_masks()
    j = float(np.mean([1.0 if not (w | g).any() else (w & g).sum() / (w | g).sum() for w, g in zip(written, gt)]))
    assert shown["J"] == pytest.approx(j)

    # a second seed run in parallel style: GRPO variants from the first run's SFT model, then one merged table
    second = tmp_path / "run_seed1"
    run_recipe(second, RecipeConfig.preset("smoke"), seeds=[1], ablations=True, init=str(out / "init"),
               sft=str(out / "sft" / "final"), log=lambda *a: None)
    seeded = json.loads((second / "results.json").read_text())
    assert seeded["stages"]["sft"]["checkpoint"] == str(out / "sft" / "final")
    assert not (second / "sft").exists() and (second / "grpo" / "final" / "videoseg_o3.json").is_file()
    assert seeded["showcase"]["checkpoint"] == str(second / "grpo" / "final")
    merged = combine_ablations([out, second], tmp_path / "merged")
    assert [r["seed"] for r in merged["runs"]["turns2_calon"]] == [0, 1]
    assert "| turns1_calon" in (tmp_path / "merged" / "ablations.md").read_text()


@pytest.mark.parametrize("flag", ["--max_turns", "--warmup_steps", "--sft_steps", "--grpo_steps", "--eval_limit"])
def test_cli_rejects_non_positive_sizes(tmp_path, flag) -> None:
    """Guards the CLI's bad-input rule: a size below 1 stops before any work with a one-line error naming the flag."""
    from training.synthetic_recipe import main

    with pytest.raises(SystemExit, match=f"Invalid {flag} \\(0\\)"):
        main(["--out", str(tmp_path / "run"), "--smoke", flag, "0"])
    assert not (tmp_path / "run").exists()


def test_scripted_plans_hand_worked() -> None:
    """Guards the scripted-turn variants: target in frames 1-3, largest at 2, smaller at 3; turn 0 shows 0, 3, 5.
    Seen: anchored on 3 (the best shown); blind: on 2 unseen; look closer: select 1-3 keyed on 2, then answer.
    When turn 0 shows frame 2, all three are the same one-turn plan."""
    from training.synthetic_recipe import scripted_plans

    mask = np.zeros((6, 4, 4), dtype=bool)
    mask[1, 0, 0] = mask[3, 0, :2] = True
    mask[2, :2, :2] = True
    assert scripted_plans(mask, [0, 3, 5], 3) == {"one_turn_seen": [(1, 3, 3)], "one_turn_blind": [(1, 3, 2)],
                                                  "look_closer": [(1, 3, 2), (1, 3, 2)]}
    assert set(map(tuple, scripted_plans(mask, [0, 2, 5], 3).values())) == {((1, 3, 2),)}


@pytest.mark.parametrize("value", [["0", "0"], ["-1", "2"]])
def test_cli_rejects_bad_turn0_frames(tmp_path, value) -> None:
    """Guards --turn0_frames: a negative count or no frame at all stops before any work with an error naming the flag."""
    from training.synthetic_recipe import main

    with pytest.raises(SystemExit, match="Invalid --turn0_frames"):
        main(["--out", str(tmp_path / "run"), "--smoke", "--turn0_frames", *value])
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag", ["--sft_learning_rate", "--grpo_learning_rate"])
@pytest.mark.parametrize("value", ["0", "-0.001", "nan"])
def test_cli_rejects_non_positive_learning_rates(tmp_path, flag, value) -> None:
    """Guards the learning-rate overrides: zero, negative or NaN stop before any work with an error naming the flag."""
    from training.synthetic_recipe import main

    with pytest.raises(SystemExit, match=f"Invalid {flag} \\("):
        main(["--out", str(tmp_path / "run"), "--smoke", flag, value])
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("train_sam", [False, True])
def test_recipe_grpo_freezes_sam_only_when_asked(monkeypatch, tmp_path, train_sam) -> None:
    """The recipe's GRPO trains SAM2's prompt encoder and mask decoder (``grpo_train_sam``, the released RL's
    trainable set) unless ``--grpo_freeze_sam`` keeps them as SFT left them."""
    import training.grpo
    from training.synthetic_recipe import main, run_grpo

    captured = []
    monkeypatch.setattr(training.grpo, "train", lambda config: captured.append(config) or {"final": str(tmp_path)})
    cfg = dataclasses.replace(RecipeConfig.preset("smoke"), grpo_train_sam=train_sam)
    run_grpo(tmp_path / "grpo", tmp_path / "init", tmp_path / "train", cfg, 0, max_turns=2, calibration=True)
    assert (captured[0].train_mask_decoder, captured[0].train_prompt_encoder) == (train_sam, train_sam)
    assert captured[0].train_vision_tower  # the rest of the released trainable set is unchanged
    # the preset trains them; the command-line switch freezes them
    import training.synthetic_recipe as recipe

    seen = []
    monkeypatch.setattr(recipe, "run_recipe", lambda out, cfg, **kw: seen.append(cfg) or {})
    assert main(["--out", str(tmp_path / "run"), "--smoke", *([] if train_sam else ["--grpo_freeze_sam"])]) == 0
    assert seen[0].grpo_train_sam is train_sam
