"""Latency and throughput of multi-turn inference, against the reference protocol in the same run.

For each video it runs the whole pipeline (``VideoSegO3.segment``: the multi-turn episode, then SAM2
propagation) twice, on the same models and the same video:

- **reference protocol**: the dialogue is re-encoded every turn (``mode="reencode"``), every frame of the
  video is decoded up front, frame preparation is the plain-torch implementation, SAM2 runs in fp32, eager;
- **ours**: the KV cache is extended turn after turn (``mode="kv"``), only the frames the policy asks
  for are decoded (then the frames propagation needs), frame preparation is the compiled op (C++/CUDA),
  SAM2 under bf16 autocast on a GPU (fp32 on a CPU, where bf16 is slower without native support), for
  each available backend (eager, torch.compile of the decode step and SAM2's [SEG] decoder as
  ``--compile`` gives it, and the exported onnxruntime / tensorrt graphs: the
  checkpoint is exported first when it has no export, timed as a one-off cost apart from the per-video
  numbers; opt-in with ``--quick``).

Results are ratios of the two. Stages per video: video decode, frame prep, vision encoder, prefill and
decode (also per turn), SAM2 image encoding, [SEG] decode (SAM2's prompt encoder + mask decoder),
propagation (SAM2's memory and tracking), other. Also: turns per episode, prefill and generated tokens,
tokens/s, frames decoded and their GOP floor (the fewest decodes any exact decoder needs, from the
packet index), frames/s, latency p50/p90, peak memory.

Episodes: an untrained (random) model would end every episode at its first malformed turn, so by
default the turns are teacher-forced: the synthetic task's ground-truth reasoning traces (or, for user
videos without traces, a scripted select/select/answer), decoded token by token through the real KV
cache path with the LM head's choice steered to the script (``--forcing stepwise``; ``parallel`` runs
each turn in one forward as training does). ``--episodes free`` lets a trained checkpoint choose.

What it deliberately simplifies: random weights (latency does not depend on them); one process; wall
time with device synchronisation around each stage; a warm-up on a short clip before measuring.

    python bench/latency.py --quick --out runs/latency            # tiny models on the CPU, < 2 minutes
    python bench/latency.py --quick --backends eager,onnxruntime --out runs/latency   # + export, onnxruntime
    python bench/latency.py --out runs/latency                    # real-size models on a GPU (Qwen3-VL-2B, SAM2-L)
    python bench/latency.py --queries my_videos.json --ckpt CKPT --episodes free --out runs/mine
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ""):  # run as a script from the checkout: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from bench import latency_models as models
from bench import latency_report as report_lib
from bench.gop_floor import StreamLayout, gop_floor
from bench.latency_probe import PeakMemory, RecordingReader, ScriptedDecoding, StageTimer, frame_prep_impl
from videoseg_o3 import device as devices

REPO_ROOT = Path(__file__).resolve().parent.parent
TURNS_CHOICES = ("1", "2", "3", "mixed")


@dataclass
class Episode:
    """One benchmark item.

    Attributes:
        video_id: a name for the report.
        video: a video file or a folder of frames.
        query: the question.
        turns: the assistant turns to teacher-force (None: the policy chooses).
        turns_source: where the turns come from ("synthetic ground-truth trace", "scripted", "given", "free").
    """

    video_id: str
    video: Path
    query: str
    turns: list[str] | None
    turns_source: str


# ---------------------------------------------------------------------------------------------- inputs
def synthetic_episodes(out_dir: Path, count: int, num_frames: int, height: int, width: int, gop: int, bframes: int,
                       turns: str, seed: int, progress: bool) -> list[Episode]:
    """Render ``count`` videos of the synthetic task, scale them to ``height x width``, encode them as
    H.264 (keyframe every ``gop`` frames, ``bframes`` B-frames) and pair each with its first query and
    that query's ground-truth VTS-CoT trace (the same generator as ``videoseg-o3 synth``)."""
    from videoseg_o3.data.synthetic import SynthConfig, render_video, video_rng
    from videoseg_o3.data.vtscot import build_sft_record
    from videoseg_o3.io import write_video

    turn_weights = (1.0, 1.0, 1.0) if turns == "mixed" else tuple(float(int(turns) == n) for n in (1, 2, 3))
    cfg = SynthConfig(frames=(num_frames, num_frames), size=(96, 128), turn_weights=turn_weights)
    out_dir.mkdir(parents=True, exist_ok=True)
    episodes = []
    for index in _progress(range(count), progress, "rendering videos"):
        rng = video_rng(seed, "test", index)
        video = render_video(rng, cfg, f"synth_{index:03d}")
        if not video.queries:
            continue
        query = video.queries[0]
        record = build_sft_record(video, query, "0", [1], rng, turn_weights)
        frames = torch.from_numpy(video.frames).permute(0, 3, 1, 2).float()
        frames = torch.nn.functional.interpolate(frames, size=(height, width), mode="bilinear", align_corners=False)
        frames = frames.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        path = out_dir / f"{video.video_id}.mp4"
        write_video(path, frames, fps=30, gop=gop, bframes=bframes, crf=23)
        scripted = [c["value"] for c in record["conversations"] if c["from"] == "gpt"]
        episodes.append(Episode(video.video_id, path, query.text, scripted, "synthetic ground-truth trace"))
    return episodes


def synth_split_episodes(data_dir: Path, count: int) -> list[Episode]:
    """Episodes from a ``videoseg-o3 synth`` split folder: JPEG frames and its ``vts_cot.json`` traces."""
    trace_file = data_dir / "vts_cot.json"
    if not trace_file.is_file():
        raise ValueError(f"Invalid --data ({data_dir}): no vts_cot.json. Point it at a split written by "
                         "`videoseg-o3 synth --layout revos`.")
    episodes = []
    for record in json.loads(trace_file.read_text())[:count]:
        turns = [c["value"] for c in record["conversations"] if c["from"] == "gpt"]
        episodes.append(Episode(record["video_name"], data_dir / "JPEGImages" / record["video_name"], record["exp"],
                                turns, "synthetic ground-truth trace"))
    return episodes


def query_file_episodes(path: Path, count: int | None) -> list[Episode]:
    """Episodes from a JSON list of ``{"video": path, "query": text, "turns": [texts] (optional)}``;
    relative video paths are relative to the JSON file. Without turns, a scripted select/select/answer
    episode (scaled to the video's length) is teacher-forced."""
    try:
        items = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"Invalid --queries ({path}): {err}. Expected a JSON list of "
                         '{"video": ..., "query": ..., "turns": [...]} objects.') from err
    if not isinstance(items, list) or not items:
        raise ValueError(f"Invalid --queries ({path}): expected a non-empty JSON list of "
                         '{"video": ..., "query": ..., "turns": [...]} objects.')
    episodes = []
    for i, item in enumerate(items[:count] if count else items):
        if not isinstance(item, dict) or not isinstance(item.get("video"), str) or not isinstance(item.get("query"), str):
            raise ValueError(f"Invalid --queries item {i} ({item!r}): it needs string fields 'video' and 'query'.")
        video = Path(item["video"])
        video = video if video.is_absolute() else path.parent / video
        turns = item.get("turns")
        if turns is not None and (not isinstance(turns, list) or not all(isinstance(t, str) for t in turns)):
            raise ValueError(f"Invalid --queries item {i}: 'turns' must be a list of assistant-turn strings.")
        episodes.append(Episode(video.stem, video, item["query"], turns, "given" if turns else "scripted"))
    return episodes


def _scripted_turns(num_frames: int) -> list[str]:
    from videoseg_o3.agent.measure import scripted_turns

    return scripted_turns(num_frames)


def _progress(iterable: Any, enabled: bool, desc: str, total: int | None = None) -> Any:
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit="run", dynamic_ncols=True)


# ---------------------------------------------------------------------------------------------- one run
@dataclass
class RunSettings:
    """How one (protocol, backend) run is configured."""

    protocol_name: str      # "ours" or "reference"
    backend: str
    mode: str               # agent mode: "kv" or "reencode"
    decode_all_up_front: bool
    frame_prep: str         # VIDEOSEG_KERNEL_IMPL for the run: "auto" or "torch"
    sam2_bf16: bool


def run_video(pipeline: Any, episode: Episode, settings: RunSettings, *, forcing: str, free: bool,
              device: torch.device, decoder_backend: str, clip: int | None = None) -> dict[str, Any]:
    """Segment one video once under ``settings`` and return its measurements (see the module docstring).

    ``clip`` (warm-up only) segments the first ``clip`` frames, held in memory.
    """
    from videoseg_o3.io import open_video
    from videoseg_o3.io.array_reader import ArrayReader

    models.with_sam2_precision(pipeline.segmenter, settings.sam2_bf16)
    pipeline.mode = settings.mode
    timer = StageTimer(device)
    attached = timer.attach_segmenter(pipeline.segmenter)
    memory = PeakMemory(device)
    marks: dict[str, int] = {}
    source = reader = None
    try:
        with memory, frame_prep_impl(settings.frame_prep):
            start = time.perf_counter()
            source = open_video(episode.video, backend=decoder_backend)
            if clip is not None:
                whole, source = source, ArrayReader(source.get_frames(range(min(clip, source.num_frames))).cpu())
                whole.close()
            num_frames = int(source.num_frames)
            upfront_decoded = 0
            if settings.decode_all_up_front:
                # the reference protocol: decode the whole video into memory first (in order, in chunks)
                frames = torch.cat([source.get_frames(range(c, min(c + 32, num_frames)))
                                    for c in range(0, num_frames, 32)])
                devices.synchronize(device)
                upfront_decoded = source.num_decoded
                source.close()
                source = ArrayReader(frames)
            open_s = time.perf_counter() - start
            reader = RecordingReader(source, device)
            _mark_propagation(pipeline.segmenter, reader, marks)
            script = None if free else (episode.turns if episode.turns is not None else _scripted_turns(num_frames))
            result = _segment(pipeline, reader, episode.query, script, forcing)
            latency = time.perf_counter() - start
    finally:
        timer.detach()
        if "propagate" in vars(pipeline.segmenter):
            del pipeline.segmenter.propagate
        if source is not None:
            source.close()
    layout = (StreamLayout.from_file(episode.video) if episode.video.is_file() and clip is None
              else StreamLayout.intra_only(num_frames))
    requested = list(range(num_frames)) if settings.decode_all_up_front else sorted(reader.requested["episode"])
    trajectory = result.trajectory
    turns = trajectory.turns
    sam2 = {stage: float(timer.seconds.get(stage, 0.0)) for stage in
            ("sam2_frame_prep", "sam2_image_encoder", "sam2_seg_decode", "sam2_memory")}
    agent = trajectory.timings
    stages = {
        "video_decode": open_s + float(agent.get("video_decode", 0.0)) + reader.seconds["propagation"],
        "frame_prep": float(agent.get("preprocess", 0.0)) + sam2["sam2_frame_prep"],
        "vision_encoder": float(agent.get("vision_encoder", 0.0)),
        "prefill": float(agent.get("prefill", 0.0)),
        "decode": float(agent.get("decode", 0.0)),
        "sam2_image_encoder": sam2["sam2_image_encoder"],
        "sam2_seg_decode": sam2["sam2_seg_decode"],
    }
    # the rest of propagation: SAM2's memory attention/encoder, state handling, mask upsampling
    stages["propagation"] = max(0.0, float(result.timings.get("propagation", 0.0)) - reader.seconds["propagation"]
                                - sam2["sam2_frame_prep"] - sam2["sam2_image_encoder"] - sam2["sam2_seg_decode"])
    stages["other"] = max(0.0, latency - sum(stages.values()))
    followed = None
    if script is not None:
        followed = len(turns) == len(script) and all(t.text.strip() == s.strip() for t, s in zip(turns, script))
    return {
        "video": episode.video_id,
        "protocol": settings.protocol_name,
        "backend": settings.backend,
        "settings": dataclasses.asdict(settings),
        "num_frames": num_frames,
        "height": int(reader.height),
        "width": int(reader.width),
        "turns": len(turns),
        "stop_reason": trajectory.stop_reason,
        "script_followed": followed,
        "turns_source": "free" if free else (episode.turns_source if episode.turns is not None else "scripted"),
        "prefill_tokens": int(trajectory.prefill_tokens),
        "decode_tokens": int(trajectory.decode_tokens),
        "per_turn": [{
            "prefill_tokens": int(t.prefill_tokens), "decode_tokens": int(t.decode_tokens),
            "action": t.parse.action, "text": t.text.strip(), "frames_shown": [int(spec.index) for spec in t.frames],
            **{k: float(t.timings.get(k, 0.0)) for k in ("video_decode", "preprocess", "vision_encoder", "prefill", "decode")},
        } for t in turns],
        "stages": stages,
        "sam2_detail": {**sam2, "calls": dict(timer.calls), "stages_measured": attached},
        "latency_s": latency,
        "frames": {
            "episode_requested": len(requested),
            "episode_decoded": upfront_decoded + marks.get("episode_decoded", reader.num_decoded),
            "episode_gop_floor": gop_floor(layout, requested) if requested else 0,
            "total_decoded": upfront_decoded + reader.num_decoded,
        },
        "peak_memory_mib": memory.peak_mib,
        "peak_memory_increase_mib": memory.increase_mib,
        "peak_memory_kind": memory.kind,
        "error": result.error,
    }


def _mark_propagation(segmenter: Any, reader: RecordingReader, marks: dict[str, int]) -> None:
    """When propagation starts (the episode is over), note the frames decoded so far and switch the
    reader's phase, by shadowing ``segmenter.propagate`` on the instance (removed after the run)."""
    original = segmenter.propagate

    def propagate(*args: Any, **kwargs: Any) -> Any:
        marks["episode_decoded"] = reader.num_decoded
        reader.phase = "propagation"
        return original(*args, **kwargs)

    segmenter.propagate = propagate


def _segment(pipeline: Any, reader: RecordingReader, query: str, script: list[str] | None, forcing: str) -> Any:
    """``pipeline.segment`` with the script teacher-forced (``stepwise``: one decode step per token through
    :class:`ScriptedDecoding`; ``parallel``: the agent's ``forced_turns``), or free when ``script`` is None."""
    if script is None:
        return pipeline.segment(reader, query)
    if forcing == "parallel":
        return pipeline.segment(reader, query, forced_turns=script)
    steering = ScriptedDecoding(pipeline.policy, script)
    saved = pipeline.generation
    pipeline.generation = dataclasses.replace(saved, max_new_tokens=steering.longest_turn + 4, do_sample=False)
    try:
        with steering:
            return pipeline.segment(reader, query)
    finally:
        pipeline.generation = saved


# ---------------------------------------------------------------------------------------------- driver
def reference_settings() -> RunSettings:
    return RunSettings("reference", "eager", "reencode", decode_all_up_front=True, frame_prep="torch", sam2_bf16=False)


def ours_settings(backend: str, device: torch.device) -> RunSettings:
    on_gpu = device.type == devices.ACCELERATOR
    return RunSettings("ours", backend, "kv", decode_all_up_front=False, frame_prep="auto", sam2_bf16=on_gpu)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/latency"), help="Output folder (JSON, markdown, PNG).")
    parser.add_argument("--quick", action="store_true", help="Tiny models, 2 short videos: under 2 minutes on 2 CPU cores.")
    parser.add_argument("--size", default="auto", choices=("auto",) + models.MODEL_SIZES,
                        help="Model size: tiny (test configs) or real (Qwen3-VL-2B + SAM2-L, random weights); "
                             "auto = real on a GPU, tiny on a CPU.")
    parser.add_argument("--ckpt", type=Path, default=None, help="Measure this checkpoint instead of random weights.")
    parser.add_argument("--device", default="auto", help="auto, cpu, or a CUDA device.")
    parser.add_argument("--backends", default=None,
                        help="Comma-separated backends for ours (eager, compile, onnxruntime, tensorrt; default: all, "
                             "but with --quick eager and compile only: onnxruntime/tensorrt first export the "
                             "checkpoint, a one-off cost of about a minute on 2 CPU cores, so --quick runs them only "
                             "when named here). On a CPU compile is skipped unless --compile-on-cpu (compiling there "
                             "takes minutes).")
    parser.add_argument("--export-dir", type=Path, default=None,
                        help="Exported graphs for onnxruntime/tensorrt (default: CKPT/export). Exported first when "
                             "it holds no manifest.json; the export is timed as a one-off cost, not per video.")
    parser.add_argument("--skip-export-verify", action="store_true",
                        help="Export without the exporter's ONNX Runtime-vs-PyTorch checks (a shorter one-off cost).")
    parser.add_argument("--compile-on-cpu", action="store_true", help="Also run the compile backend on a CPU.")
    parser.add_argument("--compile-mode", default="reduce-overhead", choices=("default", "reduce-overhead", "max-autotune"),
                        help="Mode of the compile backend: the library's compile option (VideoSegO3.from_pretrained("
                             "compile=...), videoseg-o3 segment --compile) on the policy's decode step and SAM2's "
                             "[SEG] decoder; reduce-overhead (CUDA graphs) runs as default on a CPU.")
    parser.add_argument("--episodes", default="forced", choices=("forced", "free"),
                        help="forced: teacher-force recorded/scripted turns; free: the policy chooses (trained checkpoints).")
    parser.add_argument("--forcing", default="stepwise", choices=("stepwise", "parallel"),
                        help="stepwise: one decode step per scripted token (generation speed); parallel: one forward per turn.")
    parser.add_argument("--queries", type=Path, default=None,
                        help='User videos: a JSON list of {"video": path, "query": text, "turns": [...] (optional)}.')
    parser.add_argument("--data", type=Path, default=None,
                        help="A `videoseg-o3 synth` split folder (JPEG frames + vts_cot.json).")
    parser.add_argument("--videos", type=int, default=None, help="Videos to measure (default: 2 quick, 4 otherwise).")
    parser.add_argument("--frames", type=int, default=None,
                        help="Frames per synthetic video (default: 24 quick, 48 tiny, 100 real).")
    parser.add_argument("--height", type=int, default=None, help="Synthetic video height (default: 144 quick/tiny, 720 real).")
    parser.add_argument("--width", type=int, default=None, help="Synthetic video width (default: 256 quick/tiny, 1280 real).")
    parser.add_argument("--gop", type=int, default=12, help="Keyframe interval of the synthetic H.264 videos.")
    parser.add_argument("--bframes", type=int, default=2, help="B-frames of the synthetic H.264 videos.")
    parser.add_argument("--turns", default="3", choices=TURNS_CHOICES, help="Turns of the synthetic traces (mixed: 1-3).")
    parser.add_argument("--decoder", default="auto",
                        help="Video decoder backend for both protocols (auto, pyav, torchcodec, nvdec, ...).")
    parser.add_argument("--policy-dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                        help="Policy weights' dtype, the same for both protocols (auto: bf16 on a GPU, fp32 on a CPU).")
    parser.add_argument("--preset", default=None, choices=("eval", "rl"),
                        help="Protocol frame budgets (default: rl with --quick, the checkpoint's with --ckpt, else eval).")
    parser.add_argument("--repeats", type=int, default=1, help="Measured runs per video and protocol.")
    parser.add_argument("--warmup-frames", type=int, default=6, help="Frames of the warm-up clip (0: no warm-up).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
    args = parser.parse_args(argv)
    for name in ("videos", "frames", "height", "width", "repeats"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SystemExit(f"Invalid --{name} ({value}). Use an integer >= 1.")
    return args


def _defaults(args: argparse.Namespace, size: str) -> None:
    quick, real = args.quick, size == "real"
    args.videos = args.videos or (2 if quick else 4)
    args.frames = args.frames or (24 if quick else 100 if real else 48)
    args.height = args.height or (720 if real else 144)
    args.width = args.width or (1280 if real else 256)


def build_pipeline(args: argparse.Namespace, device: torch.device, size: str) -> tuple[Any, str]:
    """The pipeline both protocols share (same weights), and a description of where the weights come from."""
    from videoseg_o3.agent import GenerationConfig
    from videoseg_o3.pipeline import VideoSegO3
    from videoseg_o3.protocol import ProtocolConfig

    dtype = {"auto": torch.bfloat16 if device.type == devices.ACCELERATOR else torch.float32,
             "float32": torch.float32, "bfloat16": torch.bfloat16}[args.policy_dtype]
    preset = args.preset or ("rl" if args.quick else "eval")
    if args.ckpt is not None:
        protocol = ProtocolConfig.preset(args.preset) if args.preset else None
        return (VideoSegO3.from_pretrained(args.ckpt, device=device, dtype=dtype, protocol=protocol),
                f"checkpoint {args.ckpt}")
    policy, segmenter = models.build_models(size, device, dtype, seed=args.seed)
    return (VideoSegO3(policy, segmenter, ProtocolConfig.preset(preset), GenerationConfig(max_new_tokens=256)),
            f"random weights, {size} configs "
            f"({'Qwen3-VL-2B + SAM2 Hiera-L 1024 px' if size == 'real' else 'tiny Qwen3-VL + SAM2 Hiera-T 256 px'})")


def _episodes(args: argparse.Namespace) -> list[Episode]:
    if args.queries is not None:
        return query_file_episodes(args.queries, args.videos)
    if args.data is not None:
        return synth_split_episodes(args.data, args.videos)
    return synthetic_episodes(args.out / "videos", args.videos, args.frames, args.height, args.width, args.gop,
                              args.bframes, args.turns, args.seed, progress=not args.no_progress)


def _backend_plan(args: argparse.Namespace, device: torch.device) -> dict[str, str | None]:
    """backend -> None (run it) or the reason it is not run."""
    plan: dict[str, str | None] = {}
    requested = args.backends or ",".join(models.BACKENDS)
    for name in [b.strip() for b in requested.split(",") if b.strip()]:
        if name not in models.BACKENDS:
            raise SystemExit(f"Invalid --backends entry ({name}). Supported values are {', '.join(models.BACKENDS)}.")
        reason = models.backend_status(name, device)
        if reason is None and name == "compile" and device.type != devices.ACCELERATOR and not args.compile_on_cpu:
            reason = "skipped on the CPU (compiling takes minutes there); pass --compile-on-cpu"
        if reason is None and name in models.EXPORTED_BACKENDS and args.quick and args.backends is None:
            reason = (f"opt-in with --quick (exporting the checkpoint first is a one-off cost of about a minute); "
                      f"pass --backends eager,{name}")
        plan[name] = reason
    if "eager" not in plan:
        plan = {"eager": None, **plan}
    return plan


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = devices.resolve_device(args.device)
    size = args.size if args.size != "auto" else ("real" if device.type == devices.ACCELERATOR and not args.quick else "tiny")
    if size == "real" and device.type != devices.ACCELERATOR:
        warnings.warn("Real-size models on a CPU: expect minutes per video.", stacklevel=1)
    _defaults(args, size)
    progress = not args.no_progress
    args.out.mkdir(parents=True, exist_ok=True)
    wall, cpu = time.perf_counter(), time.process_time()
    torch.manual_seed(args.seed)

    episodes = _episodes(args)
    if not episodes:
        raise SystemExit("No episodes to measure (the synthetic generator drew no query; try another --seed).")
    pipeline, weights = build_pipeline(args, device, size)
    plan = _backend_plan(args, device)
    runnable = [name for name, reason in plan.items() if reason is None]
    pipelines, export_record = _graph_pipelines(args, device, pipeline, plan, runnable, progress)
    runnable = [name for name in runnable if plan[name] is None]

    free = args.episodes == "free"
    common = dict(forcing=args.forcing, free=free, device=device, decoder_backend=args.decoder)
    settings = [("reference", pipeline, reference_settings())]
    settings += [(name, pipelines[name], ours_settings(name, device)) for name in runnable]
    compiled = None
    if "compile" in runnable:
        # the library's own compile path (what --compile gives users), attached only while "compile" runs
        from videoseg_o3.runtime import compile_pipeline

        compiled = compile_pipeline(pipeline.policy, pipeline.segmenter, args.compile_mode)
        compiled.detach()
    runs: list[dict[str, Any]] = []
    failed: set[str] = set()

    def attempt(name: str, target: Any, run_settings: RunSettings, episode: Episode, clip: int | None) -> None:
        if compiled is not None and name == "compile":
            compiled.attach()
        elif compiled is not None:
            compiled.detach()
        try:
            record = run_video(target, episode, run_settings, clip=clip, **common)
        except Exception as err:  # noqa: BLE001 - a backend that fails is reported, not fatal
            if name in ("reference", "eager"):
                raise
            plan[name] = f"failed while running: {type(err).__name__}: {err}"
            failed.add(name)
            return
        if clip is None:
            runs.append(record)

    total = len(settings) * (len(episodes) * args.repeats + (1 if args.warmup_frames else 0))
    bar = _progress(None, progress, "latency", total=total) if progress else None
    try:
        if args.warmup_frames:  # lazy initialisation, thread pools, compilation: before anything is timed
            for name, target, run_settings in settings:
                # one forward per scripted turn is warm-up enough, except where decode steps must compile
                common["forcing"] = args.forcing if name == "compile" else "parallel"
                attempt(name, target, run_settings, episodes[0], args.warmup_frames)
                bar is not None and bar.update(1)
            common["forcing"] = args.forcing
        # protocols interleaved per video, so that a machine shared with other work slows them alike
        for episode in episodes:
            for _ in range(args.repeats):
                for name, target, run_settings in settings:
                    if name not in failed:
                        attempt(name, target, run_settings, episode, None)
                    bar is not None and bar.update(1)
    finally:
        if compiled is not None:
            compiled.detach()
        if bar is not None:
            bar.close()
    runs = [r for r in runs if r["protocol"] == "reference" or r["backend"] not in failed]

    report = build_report(args, device, size, weights, episodes, plan, runs, time.perf_counter() - wall)
    report["export"] = dataclasses.asdict(export_record) if export_record is not None else None
    # calls and graphs compiled per part: a decode step that recompiled per token would show here
    report["compile"] = compiled.stats() if compiled is not None else None
    # CPU seconds of this process beside the wall time: on a machine shared with other jobs, wall >> CPU / cores
    report["process_cpu_s"] = time.process_time() - cpu
    write_outputs(report, args.out)
    print(report_lib.markdown_table(report))
    print(f"wrote {args.out / 'latency.json'}, {args.out / 'latency.md'}, {args.out / 'latency.png'} "
          f"in {report['wall_s']:.1f} s ({report['process_cpu_s']:.1f} s of CPU time)")
    return 0


def _graph_pipelines(args: argparse.Namespace, device: torch.device, pipeline: Any, plan: dict[str, str | None],
                     runnable: list[str], progress: bool) -> tuple[dict[str, Any], models.ExportRecord | None]:
    """backend -> pipeline; the graph backends are exported first when the checkpoint has no export.

    Unsaved random weights are saved as a checkpoint under ``--out`` first (the exporter and the graph
    runtime read checkpoints). The export's wall time is returned in the record, apart from every
    per-video number. A backend that cannot be exported or loaded gets its reason in ``plan``.
    """
    pipelines: dict[str, Any] = {name: pipeline for name in runnable if name in ("eager", "compile")}
    graph = [name for name in runnable if name in models.EXPORTED_BACKENDS]
    if not graph:
        return pipelines, None
    ckpt_dir = args.ckpt or _save_checkpoint(pipeline, args.out / "ckpt")
    export_dir = args.export_dir or ckpt_dir / "export"
    if progress:
        print(f"exporting {ckpt_dir} to {export_dir} for {', '.join(graph)} (a one-off cost, timed apart)",
              file=sys.stderr)
    record = models.ensure_export(ckpt_dir, export_dir, pipeline.policy.family, engines="tensorrt" in graph,
                                  verify=not args.skip_export_verify)
    if progress:
        print("\n".join(record.log) or f"export: {record.status}", file=sys.stderr)
    for name in graph:
        if record.status == "failed":
            plan[name] = record.reason
            continue
        try:
            pipelines[name] = models.load_exported(name, ckpt_dir, export_dir, device, pipeline.protocol,
                                                   pipeline.generation)
        except Exception as err:  # noqa: BLE001 - any failure makes the backend unavailable, with its reason
            plan[name] = f"loading failed: {type(err).__name__}: {err}"
    return pipelines, record


def _save_checkpoint(pipeline: Any, path: Path) -> Path:
    from videoseg_o3.checkpoint import save_checkpoint

    return save_checkpoint(path, pipeline.policy, pipeline.segmenter, pipeline.protocol, pipeline.generation,
                           overwrite=True)


def build_report(args: argparse.Namespace, device: torch.device, size: str, weights: str, episodes: list[Episode],
                 plan: dict[str, str | None], runs: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """Everything the JSON holds: config, machine, per-video runs, summaries and ratios."""
    reference_runs = [r for r in runs if r["protocol"] == "reference"]
    summary: dict[str, Any] = {"reference": report_lib.summarize(reference_runs), "ours": {}}
    ratio_table: dict[str, Any] = {}
    for name, reason in plan.items():
        ours_runs = [r for r in runs if r["protocol"] == "ours" and r["backend"] == name]
        if reason is None and ours_runs:
            summary["ours"][name] = report_lib.summarize(ours_runs)
            ratio_table[name] = report_lib.ratios(summary["reference"], summary["ours"][name])
        else:
            summary["ours"][name] = {"status": f"unavailable: {reason}" if reason else "no runs"}
    sources = sorted({r["turns_source"] for r in runs})
    forcing = "free generation" if args.episodes == "free" else (
        f"teacher-forced ({args.forcing}: " + ("one decode step per scripted token, LM-head choice steered"
                                               if args.forcing == "stepwise" else "one forward per scripted turn") + ")")
    return {
        "config": {
            "model_size": size,
            "weights": weights,
            "device": str(device),
            "episodes": forcing,
            "turns_source": sources,
            "videos": [{"id": e.video_id, "path": str(e.video), "query": e.query} for e in episodes],
            "repeats": args.repeats,
            "protocol_preset": args.preset or ("rl" if args.quick else "eval" if args.ckpt is None else "checkpoint's"),
            "warmup_frames": args.warmup_frames,
            "decoder": args.decoder,
            "protocols": {
                "reference": dataclasses.asdict(reference_settings()),
                "ours": dataclasses.asdict(ours_settings("eager", device)),
            },
            "args": {k: str(v) for k, v in vars(args).items()},
        },
        "machine": report_lib.machine_info(device, REPO_ROOT),
        "backends": {name: ("measured" if reason is None else f"unavailable: {reason}") for name, reason in plan.items()},
        "summary": summary,
        "ratios": ratio_table,
        "runs": runs,
        "wall_s": wall_s,
    }


def write_outputs(report: dict[str, Any], out: Path) -> None:
    """latency.json (everything), latency.md (the tables), latency.png (stacked stages)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "latency.json").write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    cfg, machine = report["config"], report["machine"]
    header = (f"Model: {cfg['weights']}; protocol preset: {cfg['protocol_preset']}; "
              f"device: {machine['gpu'] or machine['cpu']} ({machine['cpu_cores']} cores, "
              f"{machine['torch_threads']} torch threads); episodes: {cfg['episodes']}, turns from "
              f"{', '.join(cfg['turns_source'])}; {len(cfg['videos'])} videos x {cfg['repeats']} runs; whole run "
              f"{report['wall_s']:.0f} s wall, {report.get('process_cpu_s', float('nan')):.0f} s CPU.\n\n")
    (out / "latency.md").write_text(header + report_lib.markdown_table(report))
    report_lib.plot_stages(report, out / "latency.png")


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
