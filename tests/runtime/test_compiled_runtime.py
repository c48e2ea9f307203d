"""``VideoSegO3.from_pretrained(..., compile=MODE)``: torch.compile of the decode step and of SAM2's decoder.

What is guarded, and against what:
- the compiled decode step (cache plumbing, KV-bucket left padding, routing of decode calls) gives the hidden
  states and logits of transformers' own eager forward, token after token, on the same dialogue;
- the growing KV cache does not recompile per token: graphs compiled over a long decode stay bounded;
- the compiled ``[SEG]`` decoder gives sam2's eager decoder outputs;
- a whole multi-turn ``segment`` (scripted select turn, then greedy) chooses exactly the eager tokens and its
  masks overlap the eager ones (IoU >= the backend table's bound), with inductor code generation;
- bad modes and compile with an exported backend are one-line errors; ``reduce-overhead`` on a CPU warns.

Fast tests use torch.compile's ``eager`` backend (dynamo's graph capture, guards and recompiles, without
inductor's code generation, which takes minutes on 2 cores); the ``slow`` ones run inductor itself.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from tests.tolerances import MIN_BACKEND_MASK_IOU, tol
from videoseg_o3.protocol import format_turn

STEPS = ("The ball rolls in the middle.", "It is small and red.", "The query names it.")
# more tokens than the default KV bucket of the tests below spans several times, and than dynamo's
# default recompile limit (8): a per-token recompile could not hide under either
NUM_DECODE_TOKENS = 40


def _video(num_frames: int = 6) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (num_frames, 40, 56, 3), dtype=torch.uint8, generator=gen)


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


# ---------------------------------------------------------------------- errors and config
def test_bad_mode_is_a_one_line_error(object_checkpoint) -> None:
    from videoseg_o3.pipeline import VideoSegO3
    from videoseg_o3.runtime import CompileConfig

    with pytest.raises(ValueError, match=r"Invalid compile mode \(fast\)\. Supported values are off, default"):
        VideoSegO3.from_pretrained(object_checkpoint, device="cpu", compile="fast")
    with pytest.raises(ValueError, match="Invalid kv_bucket"):
        CompileConfig(mode="default", kv_bucket=0)
    with pytest.raises(ValueError, match="Invalid compile"):
        CompileConfig.coerce(3)


def test_compile_with_an_exported_backend_is_refused_before_loading(object_checkpoint, tmp_path) -> None:
    """The check comes first: no export directory exists, yet the error is about compile, not the files."""
    from videoseg_o3.pipeline import VideoSegO3

    with pytest.raises(ValueError, match=r"Invalid compile \(default\) with backend onnxruntime.*backend='torch'"):
        VideoSegO3.from_pretrained(object_checkpoint, device="cpu", backend="onnxruntime", export_dir=tmp_path,
                                   compile="default")


def test_segment_command_flag(object_checkpoint, tmp_path, capsys) -> None:
    """``--compile`` offers exactly the library's modes and refuses an exported backend in one line."""
    from videoseg_o3.cli import build_parser, main
    from videoseg_o3.runtime import COMPILE_MODES

    parser = build_parser()
    segment = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "segment")[1]
    action = next(a for a in segment._actions if a.dest == "compile")
    assert tuple(action.choices) == COMPILE_MODES and action.default == "off"
    frames = tmp_path / "frames"
    frames.mkdir()
    from PIL import Image

    Image.fromarray(_video(1)[0].numpy()).save(frames / "00000.png")
    code = main(["segment", str(frames), "the ball", "--ckpt", str(object_checkpoint), "--out", str(tmp_path / "o"),
                 "--device", "cpu", "--backend", "onnxruntime", "--compile", "default"])
    assert code == 2
    assert "error: Invalid --compile (default) with --backend onnxruntime" in capsys.readouterr().err


def test_reduce_overhead_on_cpu_warns_and_runs_default() -> None:
    from videoseg_o3.runtime import CompileConfig

    with pytest.warns(UserWarning, match="CUDA graphs, which need a CUDA device.*runs as 'default'"):
        resolved = CompileConfig(mode="reduce-overhead").resolve(torch.device("cpu"))
    assert resolved.mode == "default" and resolved.kv_bucket is None
    assert not resolved.uses_cuda_graphs(torch.device("cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert CompileConfig(mode="max-autotune").resolve(torch.device("cpu")).mode == "max-autotune"


# ---------------------------------------------------------------------- the decode step
def _decode(policy, tokens: list[int]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Prefill a fixed text prompt, then decode ``tokens`` one at a time; hidden states and logits per step."""
    from videoseg_o3.agent.context import Chunk, DialogueContext

    gen = torch.Generator().manual_seed(1)
    ctx = DialogueContext(policy, "kv")
    ctx.prefill(Chunk.text(torch.randint(0, 1000, (23,), generator=gen)))
    hidden, logits = [], []
    for token in tokens:
        out = ctx.decode(torch.tensor([token]))
        hidden.append(out.hidden[-1])
        logits.append(out.logits)
    assert ctx.cache.get_seq_length() == 23 + len(tokens)
    return hidden, logits


@pytest.mark.parametrize("kv_bucket", [None, 16], ids=["dynamic-length", "bucketed"])
def test_decode_step_matches_transformers_and_compiles_once(kv_bucket) -> None:
    """Forty decode steps through the compiled step equal transformers' eager forward (the same policy with
    the runtime detached); the growing cache (23 -> 63 tokens, crossing KV buckets of 16) compiles ONE graph:
    a length baked into the graph would recompile every token (or every bucket) and exceed the bound."""
    from videoseg_o3.policy import SegPolicy
    from videoseg_o3.runtime import CompileConfig, compile_pipeline
    from videoseg_o3.runtime.compiled import CompiledDecodeStep

    policy = SegPolicy.tiny(seed=0)
    tokens = torch.randint(0, 1000, (NUM_DECODE_TOKENS,), generator=torch.Generator().manual_seed(2)).tolist()
    config = CompileConfig(mode="default", backend="eager", seg_decoder=False, kv_bucket=kv_bucket)
    runtime = compile_pipeline(policy, None, config)
    try:
        got_hidden, got_logits = _decode(policy, tokens)
    finally:
        runtime.detach()
    expected_hidden, expected_logits = _decode(policy, tokens)
    torch.testing.assert_close(torch.stack(got_hidden), torch.stack(expected_hidden), **tol("compile_fp32"))
    torch.testing.assert_close(torch.stack(got_logits), torch.stack(expected_logits), **tol("compile_fp32"))
    stats = runtime.stats()["decode_step"]
    assert stats["calls"] == NUM_DECODE_TOKENS, "every one-token decode must take the compiled step"
    assert stats["eager_calls"] == 1, "the prefill (23 tokens) stays eager"
    assert stats["graphs"] == 1, f"the growing KV cache recompiled: {stats}"
    assert "forward" not in policy.model.model.__dict__, "detach() restores the eager forward"
    assert isinstance(runtime.decode_step, CompiledDecodeStep)


def test_batched_decoding_takes_the_compiled_step_with_its_mask() -> None:
    """Two rollouts decoded as one left-padded batch (``BatchedDecoder``: a 2-D attention mask, per-row
    positions) through the compiled step choose the eager run's tokens."""
    from videoseg_o3.agent import GenerationConfig, run_episodes
    from videoseg_o3.io import open_video
    from videoseg_o3.policy import SegPolicy
    from videoseg_o3.runtime import CompileConfig, compile_pipeline

    policy = SegPolicy.tiny(seed=0)
    generation = GenerationConfig(max_new_tokens=12, do_sample=True, temperature=1.0, seed=3)
    scripts = [[format_turn("select", STEPS, "See new segment.", 1, 4, 2)], None]

    def run() -> list[torch.Tensor]:
        out = run_episodes(policy, [open_video(_video())], ["the ball"], generation=generation, num_rollouts=2,
                           forced_turns_by_rollout=scripts)
        return [t.input_ids for t in out]

    runtime = compile_pipeline(policy, None, CompileConfig(mode="default", backend="eager", seg_decoder=False))
    try:
        got = run()
    finally:
        runtime.detach()
    expected = run()
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert runtime.stats()["decode_step"]["calls"] > 0


# ---------------------------------------------------------------------- the SAM2 decoder
def test_compiled_seg_decoder_matches_sam2_eager(object_checkpoint) -> None:
    """``decode_features`` with the compiled decoder equals sam2's eager decoder on the same features; one
    graph serves repeated calls."""
    from videoseg_o3.checkpoint import SEGMENTER_DIR
    from videoseg_o3.runtime import CompileConfig, compile_pipeline
    from videoseg_o3.segmenter import Sam2Segmenter

    segmenter = Sam2Segmenter.from_pretrained(object_checkpoint / SEGMENTER_DIR, device="cpu").eval()
    with torch.inference_mode():
        features = segmenter.encode_frames(_video(2))
    seg = torch.randn(2, 256, generator=torch.Generator().manual_seed(4))

    class _NoPolicy:
        device = torch.device("cpu")

    runtime = compile_pipeline(_NoPolicy(), segmenter, CompileConfig(mode="default", backend="eager", decode_step=False))
    try:
        with torch.inference_mode():
            got = [segmenter.decode_features(features, seg) for _ in range(3)]
    finally:
        runtime.detach()
    with torch.inference_mode():
        expected = segmenter.decode_features(features, seg)
    for out in got:
        torch.testing.assert_close(out.low_res_logits, expected.low_res_logits, **tol("compile_fp32"))
        torch.testing.assert_close(out.iou, expected.iou, **tol("compile_fp32"))
    assert runtime.stats()["seg_decoder"] == {"calls": 3, "graphs": 1}


# ---------------------------------------------------------------------- whole segment
TURNS = [format_turn("select", STEPS, "See new segment.", 1, 5, 3), None]


def _script(index, _previous):
    return TURNS[index] if index < len(TURNS) else None


def _compare_segments(eager, compiled) -> None:
    """Turn 0 scripted (a select, so the episode continues), turn 1 chosen by the policy: greedily, then
    sampled with a fixed seed (both pipelines draw from identically seeded generators).

    A random tiny policy's next-token distribution is almost flat and barely moves with the context, so the
    same tokens alone would let a wrong decode step pass (one that drops the new keys from the cache does);
    the hidden state of every step, read where the agent hands it to the LM head, is compared as well.
    """
    import dataclasses

    for generation in (eager.generation, dataclasses.replace(eager.generation, do_sample=True, seed=0)):
        eager.generation = compiled.generation = generation
        hidden: dict[str, list[torch.Tensor]] = {"eager": [], "compiled": []}
        hooks = [pipeline.policy.model.lm_head.register_forward_pre_hook(
                     lambda _m, args, key=key: hidden[key].append(args[0].detach().clone()))
                 for key, pipeline in (("eager", eager), ("compiled", compiled))]
        try:
            expected = eager.segment(_video(), "the ball", forced_turns=_script)
            got = compiled.segment(_video(), "the ball", forced_turns=_script)
        finally:
            for hook in hooks:
                hook.remove()
        label = "sampled" if generation.do_sample else "greedy"
        assert len(hidden["compiled"]) == len(hidden["eager"]) > expected.turns[1]["decode_tokens"]
        torch.testing.assert_close(torch.cat(hidden["compiled"]), torch.cat(hidden["eager"]), **tol("compile_fp32"))
        assert len(expected.turns) == 2 and expected.turns[1]["decode_tokens"] > 0
        assert torch.equal(got.trajectory.input_ids, expected.trajectory.input_ids), f"{label} tokens differ"
        assert [t["text"] for t in got.turns] == [t["text"] for t in expected.turns]
        assert expected.error is None and got.anchor_frame == expected.anchor_frame
        torch.testing.assert_close(got.trajectory.final_seg_embedding, expected.trajectory.final_seg_embedding,
                                   **tol("compile_fp32"))
        assert expected.masks.any(), "the comparison needs foreground (object-score head forced on)"
        assert _iou(got.masks, expected.masks) >= MIN_BACKEND_MASK_IOU
    stats = compiled.compiled.stats()
    # every decode step of both free turns took the compiled path, in one graph; the decoder: one graph per
    # multimask flag at most
    assert stats["decode_step"]["calls"] >= 2 * (expected.turns[1]["decode_tokens"] - 1)
    assert stats["decode_step"]["graphs"] == 1 and 1 <= stats["seg_decoder"]["graphs"] <= 2, stats


def _pipelines(checkpoint, compile_config, device: str = "cpu"):
    from videoseg_o3.agent import GenerationConfig
    from videoseg_o3.pipeline import VideoSegO3

    generation = GenerationConfig(max_new_tokens=96)  # a scripted turn is ~75 tokens; a free turn runs 96
    return (VideoSegO3.from_pretrained(checkpoint, device=device, generation=generation),
            VideoSegO3.from_pretrained(checkpoint, device=device, generation=generation, compile=compile_config))


@pytest.mark.slow
def test_segment_graph_capture_matches_eager(object_checkpoint) -> None:
    """The whole pipeline with dynamo's capture but no code generation: isolates routing and guards."""
    from videoseg_o3.runtime import CompileConfig

    _compare_segments(*_pipelines(object_checkpoint, CompileConfig(mode="default", backend="eager")))


@pytest.mark.slow
def test_segment_compiled_with_inductor_matches_eager(object_checkpoint) -> None:
    """``compile="default"``: inductor's generated code for both parts (minutes of compiling on 2 cores)."""
    _compare_segments(*_pipelines(object_checkpoint, "default"))


@pytest.mark.gpu
def test_reduce_overhead_uses_cuda_graphs_and_matches_eager(object_checkpoint) -> None:
    """On CUDA, ``reduce-overhead`` replays CUDA graphs (KV length bucketed so shapes repeat) and still chooses
    the eager tokens, greedy and sampled; one dynamo graph serves every decode step. CPU twins: the two
    whole-segment tests above."""
    eager, compiled = _pipelines(object_checkpoint, "reduce-overhead", device="cuda")
    stats = compiled.compiled.stats()
    assert stats["cuda_graphs"] and stats["kv_bucket"] == 256
    _compare_segments(eager, compiled)
