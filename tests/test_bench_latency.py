"""bench/latency.py --quick end to end on tiny models: what its JSON, markdown and PNG say, checked
against what they must say independently of the code that wrote them.

The end-to-end run (two short videos, both protocols, SAM2 propagation and token-by-token decoding, with
onnxruntime opted in: the tiny checkpoint is exported first) takes a minute or two on two idle cores, so its
tests are marked slow and share one run; the steering test below is not.
"""

from __future__ import annotations

import json
import math

import pytest

from bench import latency
from bench.latency_report import STAGE_LABELS, STAGES
from tests.tolerances import TOL

REL = TOL["bench_report_recomputed"][1]
STAGE_SUM_ABS = TOL["bench_stage_sum_s"][0]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("latency")
    argv = ["--quick", "--backends", "eager,compile,onnxruntime,tensorrt", "--out", str(out), "--videos", "2", "--frames", "8", "--height", "64", "--width", "96",
            "--turns", "2", "--warmup-frames", "2", "--gop", "4", "--no-progress"]
    assert latency.main(argv) == 0
    return out, json.loads((out / "latency.json").read_text())


@pytest.mark.slow
def test_outputs_exist_with_their_sections(quick_run):
    """Guards the output contract: the JSON's sections and machine info, the markdown table, a real PNG."""
    out, report = quick_run
    assert {"config", "machine", "backends", "summary", "ratios", "runs", "wall_s"} <= set(report)
    machine = report["machine"]
    assert machine["cpu"] and machine["cpu_cores"] >= 1 and machine["versions"]["torch"]
    assert len(machine["git"]["commit"] or "") == 40
    assert report["config"]["model_size"] == "tiny" and report["config"]["protocol_preset"] == "rl"
    assert "teacher-forced (stepwise" in report["config"]["episodes"]
    assert report["config"]["turns_source"] == ["synthetic ground-truth trace"]
    md = (out / "latency.md").read_text()
    assert "| stage (ms per video) | reference | ours: eager | speed-up |" in md
    for stage in STAGES:
        assert f"| {STAGE_LABELS[stage]} |" in md
    png = (out / "latency.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


@pytest.mark.slow
def test_backends_enumerated(quick_run):
    """Every backend appears: eager measured; compile skipped on a CPU with the reason; the exported
    engines measured or reported unavailable with a reason (never silently missing)."""
    _, report = quick_run
    backends = report["backends"]
    assert set(backends) == {"eager", "compile", "onnxruntime", "tensorrt"}
    assert backends["eager"] == "measured"
    assert backends["compile"].startswith("unavailable: skipped on the CPU")
    for name in ("onnxruntime", "tensorrt"):
        assert backends[name] == "measured" or backends[name].startswith("unavailable: ")
        if backends[name] != "measured":
            assert report["summary"]["ours"][name]["status"] == backends[name]
    assert {(r["protocol"], r["backend"]) for r in report["runs"]} >= {("reference", "eager"), ("ours", "eager")}


@pytest.mark.slow
def test_onnxruntime_exported_once_and_matches_eager(quick_run):
    """The graph backend: the checkpoint had no export, so the run exported it (timed once, apart from the
    per-video latencies), measured onnxruntime like eager, and its episodes are eager's: same turn texts
    (compared with the trace, decoded token by token), actions, frames shown and token counts per turn."""
    import importlib.util

    out, report = quick_run
    if importlib.util.find_spec("onnxruntime") is None:
        assert report["backends"]["onnxruntime"].startswith("unavailable: onnxruntime is not installed")
        return
    assert report["backends"]["onnxruntime"] == "measured"
    export = report["export"]
    assert export["status"] == "exported" and export["seconds"] > 0 and export["verified"] is True
    assert (out / "ckpt" / "export" / "manifest.json").is_file()
    assert len(export["components"]) == 6
    md = (out / "latency.md").read_text()
    assert "| ours: onnxruntime | speed-up |" in md and f"One-off export (not in the per-video numbers): {export['seconds']:.1f} s" in md
    ort = {r["video"]: r for r in report["runs"] if r["protocol"] == "ours" and r["backend"] == "onnxruntime"}
    eager = {r["video"]: r for r in report["runs"] if r["protocol"] == "ours" and r["backend"] == "eager"}
    assert set(ort) == set(eager) and len(ort) == 2
    keys = ("text", "action", "frames_shown", "prefill_tokens", "decode_tokens")
    for video, run in ort.items():
        assert run["error"] is None and run["script_followed"] is True
        assert [{k: t[k] for k in keys} for t in run["per_turn"]] == [{k: t[k] for k in keys} for t in eager[video]["per_turn"]]
        # each video's latency is its own stages only (the one-off export is in none of them)
        assert math.isclose(sum(run["stages"].values()), run["latency_s"], rel_tol=0, abs_tol=STAGE_SUM_ABS)
    ratio = report["ratios"]["onnxruntime"]
    assert ratio["prefill_token_ratio"] == report["ratios"]["eager"]["prefill_token_ratio"]


@pytest.mark.slow
def test_ratios_and_summaries_follow_from_the_runs(quick_run):
    """The summary is the mean of the per-video runs, each run's stages add up to its latency, and every
    ratio is the division of the two summaries it names (recomputed here from the raw runs)."""
    _, report = quick_run
    runs = report["runs"]
    for run in runs:
        assert math.isclose(sum(run["stages"].values()), run["latency_s"], rel_tol=0, abs_tol=STAGE_SUM_ABS)
        assert all(v >= 0 for v in run["stages"].values())

    def mean(rows, get):
        return sum(get(r) for r in rows) / len(rows)

    ref = [r for r in runs if r["protocol"] == "reference"]
    ours = [r for r in runs if r["protocol"] == "ours" and r["backend"] == "eager"]
    assert len(ref) == len(ours) == 2
    ratio = report["ratios"]["eager"]
    for stage in STAGES:
        ref_s, ours_s = mean(ref, lambda r: r["stages"][stage]), mean(ours, lambda r: r["stages"][stage])
        assert math.isclose(report["summary"]["reference"]["stages_s"][stage], ref_s, rel_tol=REL)
        assert math.isclose(ratio["stage_speedup"][stage], ref_s / ours_s, rel_tol=REL)
    ref_latency, ours_latency = mean(ref, lambda r: r["latency_s"]), mean(ours, lambda r: r["latency_s"])
    assert math.isclose(ratio["end_to_end_speedup"], ref_latency / ours_latency, rel_tol=REL)
    assert math.isclose(ratio["prefill_token_ratio"],
                        mean(ours, lambda r: r["prefill_tokens"]) / mean(ref, lambda r: r["prefill_tokens"]), rel_tol=REL)
    assert math.isclose(ratio["episode_decoded_ratio"], mean(ours, lambda r: r["frames"]["episode_decoded"])
                        / mean(ref, lambda r: r["frames"]["episode_decoded"]), rel_tol=REL)
    md = (quick_run[0] / "latency.md").read_text()
    assert f"{ratio['end_to_end_speedup']:.2f}x" in md and f"{ratio['prefill_token_ratio']:.2f}x" in md


@pytest.mark.slow
def test_reference_reencodes_the_whole_dialogue(quick_run):
    """The reference protocol's prefill of turn t is the entire dialogue so far: every prompt chunk and
    every generated token of the KV-reuse run up to that turn. KV reuse must therefore prefill fewer tokens."""
    _, report = quick_run
    runs = report["runs"]
    for video in {r["video"] for r in runs}:
        ref = next(r for r in runs if r["video"] == video and r["protocol"] == "reference")
        ours = next(r for r in runs if r["video"] == video and r["protocol"] == "ours")
        assert ref["turns"] == ours["turns"] == 2
        for t, turn in enumerate(ref["per_turn"]):
            whole = sum(x["prefill_tokens"] for x in ours["per_turn"][: t + 1]) + sum(
                x["decode_tokens"] for x in ours["per_turn"][:t])
            assert turn["prefill_tokens"] == whole
        assert ours["prefill_tokens"] < ref["prefill_tokens"]
    assert report["ratios"]["eager"]["prefill_token_ratio"] < 1


@pytest.mark.slow
def test_turns_are_the_ground_truth_trace_decoded_token_by_token(quick_run, tmp_path):
    """Stepwise teacher forcing: each turn's text is the trace's, and it cost one decode step per token
    of the trace (counted with the policy's tokenizer, independently of the steering hook)."""
    from tests.tiny_models import shared_tiny_policy

    _, report = quick_run
    tokenizer = shared_tiny_policy("qwen3_vl").tokenizer
    # the same deterministic synthetic draw as the run (seed 0, 2 videos, 8 frames, 2-turn traces)
    episodes = latency.synthetic_episodes(tmp_path, 2, 8, 64, 96, 4, 2, "2", 0, progress=False)
    traces = {e.video_id: e.turns for e in episodes}
    assert set(traces) == {r["video"] for r in report["runs"]}
    for run in report["runs"]:
        assert run["script_followed"] is True and run["error"] is None
        assert [t["action"] for t in run["per_turn"]] == ["select", "answer"]
        script = traces[run["video"]]
        for turn, text in zip(run["per_turn"], script):
            assert turn["text"] == text.strip()
            assert turn["decode_tokens"] == len(tokenizer.encode(text, add_special_tokens=False))


@pytest.mark.slow
def test_frame_counts(quick_run):
    """Frames: the reference decodes every frame up front; ours asks for exactly the frames its turns
    showed, and the GOP floor sits between that count and the whole video."""
    _, report = quick_run
    for run in report["runs"]:
        n, frames = run["num_frames"], run["frames"]
        if run["protocol"] == "reference":
            assert frames["episode_requested"] == n == frames["episode_gop_floor"]
            assert frames["episode_decoded"] >= n
        else:
            shown = {i for turn in run["per_turn"] for i in turn["frames_shown"]}
            assert frames["episode_requested"] == len(shown)
            assert len(shown) <= frames["episode_gop_floor"] <= n
        assert run["latency_s"] > 0 and run["peak_memory_mib"] > 0


def test_stepwise_forcing_matches_the_agents_teacher_forcing():
    """ScriptedDecoding (one decode step per scripted token, LM-head argmax steered) must give the same
    turns, token counts and [SEG] embeddings as the agent's own teacher forcing (one parallel forward
    per turn, the tested training path) — i.e. steering changes which token is chosen, nothing else."""
    import dataclasses

    import torch

    from bench.latency_probe import ScriptedDecoding
    from tests.tiny_models import shared_tiny_policy
    from tests.tolerances import tol
    from videoseg_o3.agent import GenerationConfig, run_episode
    from videoseg_o3.agent.measure import scripted_turns, synthetic_video
    from videoseg_o3.protocol import ProtocolConfig

    policy = shared_tiny_policy("qwen3_vl")
    video = synthetic_video(num_frames=12, height=48, width=64)
    script = scripted_turns(12)[1:]  # select, answer: two turns keep it short
    protocol = ProtocolConfig.preset("rl")
    parallel = run_episode(policy, video, "the red ball", protocol=protocol, forced_turns=script,
                           generation=GenerationConfig(max_new_tokens=512))
    steering = ScriptedDecoding(policy, script)
    with steering:
        stepwise = run_episode(policy, video, "the red ball", protocol=protocol,
                               generation=dataclasses.replace(GenerationConfig(), max_new_tokens=steering.longest_turn + 4))
    assert [t.text.strip() for t in stepwise.turns] == [t.text.strip() for t in parallel.turns] == [s.strip() for s in script]
    assert [t.decode_tokens for t in stepwise.turns] == [t.decode_tokens for t in parallel.turns]
    assert stepwise.prefill_tokens == parallel.prefill_tokens
    torch.testing.assert_close(stepwise.final_seg_embedding, parallel.final_seg_embedding, **tol("kv_reuse_logits"))
    # the hook is removed on exit: the policy's own choice is back
    assert not policy.model.lm_head._forward_hooks


def test_episode_sources(tmp_path):
    """The other inputs: a `videoseg-o3 synth` split (frames folder + its VTS-CoT turns, read from the
    written JSON) and a user query file (relative paths, optional turns, one-line errors)."""
    from videoseg_o3.data.synthetic import SynthConfig, generate_split

    split = tmp_path / "split"
    generate_split(split, 2, seed=1, split="test", cfg=SynthConfig(frames=(6, 6), size=(48, 48)))
    records = json.loads((split / "vts_cot.json").read_text())
    episodes = latency.synth_split_episodes(split, 10)
    assert len(episodes) == len(records) >= 2
    for episode, record in zip(episodes, records):
        assert episode.video.is_dir() and len(list(episode.video.iterdir())) == 6
        assert episode.query == record["exp"]
        assert episode.turns == [c["value"] for c in record["conversations"] if c["from"] == "gpt"]
    with pytest.raises(ValueError, match="no vts_cot.json"):
        latency.synth_split_episodes(tmp_path, 1)

    queries = tmp_path / "q.json"
    queries.write_text(json.dumps([{"video": "clips/a.mp4", "query": "the cat"},
                                   {"video": "/abs/b.mp4", "query": "the dog", "turns": ["t0"]}]))
    first, second = latency.query_file_episodes(queries, None)
    assert first.video == tmp_path / "clips" / "a.mp4" and first.turns is None and first.turns_source == "scripted"
    assert str(second.video) == "/abs/b.mp4" and second.turns == ["t0"] and second.turns_source == "given"
    queries.write_text(json.dumps([{"video": "a.mp4"}]))
    with pytest.raises(ValueError, match="needs string fields 'video' and 'query'"):
        latency.query_file_episodes(queries, None)


def test_ensure_export_reuses_or_refuses(tmp_path):
    """Before exporting: an export made from this checkpoint is reused (no cost), one made from another
    checkpoint is refused rather than silently measured, and a non-Qwen3-VL policy gets the reason."""
    from bench.latency_models import ensure_export

    ckpt, export_dir = tmp_path / "ckpt", tmp_path / "ckpt" / "export"
    export_dir.mkdir(parents=True)
    (export_dir / "manifest.json").write_text(json.dumps({
        "checkpoint": str(ckpt), "components": {"vision_encoder": {}, "language_model": {}},
        "verification_failed": [], "tensorrt": {"status": "not built"}}))
    reused = ensure_export(ckpt, export_dir, "qwen3_vl", engines=False)
    assert (reused.status, reused.seconds, reused.components) == ("existing", None, ["language_model", "vision_encoder"])
    other = ensure_export(tmp_path / "other", export_dir, "qwen3_vl", engines=False)
    assert other.status == "failed" and "was made from" in other.reason
    qwen25 = ensure_export(ckpt, tmp_path / "fresh", "qwen2_5_vl", engines=False)
    assert qwen25.status == "failed" and "Qwen3-VL policies only" in qwen25.reason
    assert not (tmp_path / "fresh").exists()
