"""The user-facing pipeline: a video and a question in, one mask per frame out.

``VideoSegO3.from_pretrained(CKPT).segment(video, query)`` runs the multi-turn episode of
docs/architecture.md#the-turn-protocol with the policy (coarse-to-fine: interval, then keyframe at high resolution), takes
the final ``[SEG]`` embedding and lets SAM2 propagate it from the anchor keyframe through the whole
video (docs/architecture.md#the-model). The same object serves the CLI (``videoseg-o3 segment``), the model's
benchmark evaluation (``videoseg-o3 eval --ckpt``) and the latency benchmark.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from videoseg_o3.device import resolve_device


@dataclass
class SegmentResult:
    """What :meth:`VideoSegO3.segment` returns.

    Attributes:
        masks: ``(T, H, W) bool`` at the video's own size, one mask per frame.
        anchor_frame: the frame where the ``[SEG]`` embedding conditioned SAM2.
        turns: one dict per assistant turn: ``text``, ``action`` (select/answer/invalid),
            ``interval`` ([s, e] clipped, or None), ``keyframe``, ``frames_shown`` (indices of the
            frames in the observation that preceded the turn), ``error`` (parse error or None).
        timings: seconds per stage (``episode``, ``propagation`` and the agent's own stages).
        error: why no mask could be produced (e.g. the policy never emitted ``[SEG]``), else None.
            The masks are then all empty rather than an exception: a malformed model output is a
            result to inspect, not a crash.
        trajectory: the agent's full record (token ids, response mask, parses) for training and debugging.
    """

    masks: torch.Tensor
    anchor_frame: int
    turns: list[dict[str, Any]]
    timings: dict[str, float]
    error: str | None = None
    trajectory: Any = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The JSON-serialisable record written next to the masks by the CLI."""
        return {
            "num_frames": int(self.masks.shape[0]),
            "height": int(self.masks.shape[1]),
            "width": int(self.masks.shape[2]),
            "anchor_frame": self.anchor_frame,
            "turns": self.turns,
            "timings": self.timings,
            "error": self.error,
            "foreground_frames": int(self.masks.flatten(1).any(1).sum()),
        }


def _turn_record(turn: Any, num_frames: int) -> dict[str, Any]:
    """The JSON view of one agent turn (what the user reads to see how the policy reasoned)."""
    parse = turn.parse
    clipped = parse.clipped(num_frames)
    return {
        "index": turn.index,
        "action": parse.action,
        "text": turn.text,
        "interval": None if clipped is None else [clipped[0], clipped[1]],
        "keyframe": turn.keyframe,
        "frames_shown": [int(spec.index) for spec in turn.frames],
        "shown_keyframe": turn.shown_keyframe,
        "num_seg_tokens": int(turn.seg_embeddings.shape[0]),
        "error": parse.error,
        "prefill_tokens": turn.prefill_tokens,
        "decode_tokens": turn.decode_tokens,
        "timings": {k: round(float(v), 6) for k, v in turn.timings.items()},
    }


class VideoSegO3:
    """Policy + segmenter + protocol: ``segment(video, query)`` gives a mask per frame.

    Args:
        policy: a :class:`videoseg_o3.policy.SegPolicy`.
        segmenter: a :class:`videoseg_o3.segmenter.Sam2Segmenter` on the same device.
        protocol: a :class:`videoseg_o3.protocol.ProtocolConfig` (frame budgets, prompt style, max turns).
        generation: a :class:`videoseg_o3.agent.GenerationConfig` (greedy by default, as evaluation is).
        mode: ``"kv"`` reuses the KV cache across turns; ``"reencode"`` re-runs the dialogue each turn
            (the reference implementation's behaviour, kept for comparison and benchmarks).
    """

    def __init__(self, policy: Any, segmenter: Any, protocol: Any, generation: Any = None, *, mode: str = "kv") -> None:
        from videoseg_o3.agent import GenerationConfig
        from videoseg_o3.agent.context import check_mode

        self.policy = policy
        self.segmenter = segmenter
        self.protocol = protocol
        self.generation = generation if generation is not None else GenerationConfig()
        self.mode = check_mode(mode)
        # the torch.compile runtime when from_pretrained(..., compile=...) attached one (stats(), detach())
        self.compiled: Any = None

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        protocol: Any = None,
        generation: Any = None,
        mode: str = "kv",
        backend: str = "torch",
        export_dir: str | Path | None = None,
        compile: Any = "off",
    ) -> "VideoSegO3":
        """Load a checkpoint directory (``videoseg-o3 init-tiny``, training output, or a released
        VideoSEG-O3 Hugging Face directory). ``protocol``/``generation`` override the saved ones.

        ``backend``: ``"torch"`` (eager PyTorch), ``"onnxruntime"`` or ``"tensorrt"`` (the graphs that
        ``python -m export.trt CKPT --out DIR`` wrote to ``export_dir``, default ``CKPT/export``; see
        :mod:`videoseg_o3.runtime`). Same API and results on every backend.

        ``compile``: ``"off"`` (default), ``"default"``, ``"reduce-overhead"`` or ``"max-autotune"``, or a
        :class:`videoseg_o3.runtime.CompileConfig`: ``torch.compile`` of the policy's one-token decode step
        and of SAM2's ``[SEG]`` mask decoder (CUDA graphs in ``reduce-overhead``/``max-autotune`` on a GPU;
        ``reduce-overhead`` runs as ``default`` on a CPU, with a warning). Backend ``"torch"`` only. The first
        decode step and the first decoder call compile (seconds on a GPU, a minute or more on a CPU).

        Raises:
            FileNotFoundError: the directory or one of its parts is missing (the message names it).
            ValueError: an unknown backend or compile mode, compile with an exported backend, or an export
                directory without the graphs it needs.
        """
        from videoseg_o3.checkpoint import load_checkpoint, read_checkpoint_config
        from videoseg_o3.runtime import check_backend, check_compile, compile_pipeline, load_backend

        check_backend(backend)
        compile_config = check_compile(compile, backend)
        config = read_checkpoint_config(path)
        if backend == "torch":
            policy, segmenter, saved_protocol = load_checkpoint(path, device=resolve_device(device), dtype=dtype)
        else:
            policy, segmenter, saved_protocol = load_backend(path, backend, export_dir=export_dir,
                                                             device=resolve_device(device))
        pipeline = cls(
            policy,
            segmenter,
            protocol if protocol is not None else saved_protocol,
            generation if generation is not None else config.generation,
            mode=mode,
        )
        pipeline.compiled = compile_pipeline(policy, segmenter, compile_config)
        return pipeline

    @staticmethod
    def open(video: Any) -> Any:
        """A frame-exact reader for ``video`` (a path, a frame folder, a list of images, an array, or a reader)."""
        if hasattr(video, "get_frames") and hasattr(video, "num_frames"):
            return video
        from videoseg_o3.io import open_video

        return open_video(video)

    def segment(
        self,
        video: Any,
        query: str,
        *,
        progress: Callable[[int, int], None] | None = None,
        forced_turns: Any = None,
        on_turn: Callable[[dict[str, Any]], None] | None = None,
    ) -> SegmentResult:
        """Segment the object ``query`` describes in every frame of ``video``.

        Args:
            video: a video file, a folder of frames, a list of image paths, a uint8 ``(T, H, W, 3)``
                array/tensor, or an open ``videoseg_o3.io`` reader (reused: frames it already decoded are
                not decoded again).
            query: the question or referring expression (non-empty).
            progress: called as ``progress(frames_done, T)`` during SAM2 propagation.
            forced_turns: scripted assistant turns (texts, or a callable; see
                :func:`videoseg_o3.agent.run_episode`) — for demonstrations and tests of a given
                reasoning path; None lets the policy choose.
            on_turn: called with each turn's record (as in :attr:`SegmentResult.turns`) as soon as
                the turn is finished, before propagation starts: a live view of the reasoning.
        Returns:
            a :class:`SegmentResult`; masks ``(T, H, W) bool`` on the CPU at the video's size.
        Raises:
            ValueError: empty query; ``videoseg_o3.io.VideoDecodeError`` (a ValueError) for a bad video.
        """
        from videoseg_o3.agent import run_episode

        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"Invalid query ({query!r}): it must be a non-empty string.")
        reader = self.open(video)
        num_frames, height, width = int(reader.num_frames), int(reader.height), int(reader.width)
        reported = 0

        def report(turns: list[Any]) -> None:
            nonlocal reported
            for turn in turns[reported:]:
                on_turn(_turn_record(turn, num_frames))
            reported = len(turns)

        scripted = forced_turns
        if on_turn is not None:
            # The episode asks for a scripted turn before every turn, with the turns so far: the
            # one place where a finished turn is visible while the episode still runs.
            def scripted(turn_index: int, previous: list[Any]) -> str | None:
                report(previous)
                if callable(forced_turns):
                    return forced_turns(turn_index, previous)
                return forced_turns[turn_index] if forced_turns is not None and turn_index < len(forced_turns) else None

        t0 = time.perf_counter()
        with torch.no_grad():
            trajectory = run_episode(
                self.policy, reader, query, protocol=self.protocol, generation=self.generation, mode=self.mode,
                forced_turns=scripted,
            )
        if on_turn is not None:
            report(trajectory.turns)
        timings = {f"episode_{k}": float(v) for k, v in trajectory.timings.items()}
        timings["episode"] = time.perf_counter() - t0
        error = None
        embedding = trajectory.final_seg_embedding
        t1 = time.perf_counter()
        if embedding is None:
            # A policy that never emits [SEG] in any turn yields empty masks and says why (a final turn
            # without one falls back to an earlier turn's, as the released evaluation does).
            masks = torch.zeros(num_frames, height, width, dtype=torch.bool)
            error = f"no turn of the policy has a [SEG] token (episode stopped: {trajectory.stop_reason})"
        else:
            masks = self.segmenter.propagate(reader, embedding, trajectory.anchor_frame, progress=progress)
        timings["propagation"] = time.perf_counter() - t1
        return SegmentResult(
            masks=masks,
            anchor_frame=int(trajectory.anchor_frame),
            turns=[_turn_record(turn, num_frames) for turn in trajectory.turns],
            timings={k: round(v, 6) for k, v in timings.items()},
            error=error,
            trajectory=trajectory,
        )


class BenchmarkPredictor:
    """``predict(record) -> (T, H, W) bool`` for :func:`videoseg_o3.evaluation.evaluate`, running the pipeline.

    It also keeps what the released evaluation logs per sample: the number of turns (``round_stats``)
    and why each episode stopped, so a model's evaluation reports its turn distribution beside J&F.
    """

    def __init__(self, pipeline: VideoSegO3) -> None:
        self.pipeline = pipeline
        self.turn_counts: dict[int, int] = {}
        self.stop_reasons: dict[str, int] = {}
        self.no_seg: int = 0

    def __call__(self, record: Any) -> Any:
        result = self.pipeline.segment(record.open_video(), record.expression)
        turns = len(result.turns)
        self.turn_counts[turns] = self.turn_counts.get(turns, 0) + 1
        reason = result.trajectory.stop_reason if result.trajectory is not None else "unknown"
        self.stop_reasons[reason] = self.stop_reasons.get(reason, 0) + 1
        self.no_seg += int(result.error is not None)
        return result.masks.numpy()

    def stats(self) -> dict[str, Any]:
        """``{"turns": {n: count}, "stop_reasons": {...}, "episodes_without_seg": k}``."""
        return {
            "turns": {str(k): v for k, v in sorted(self.turn_counts.items())},
            "stop_reasons": dict(sorted(self.stop_reasons.items())),
            "episodes_without_seg": self.no_seg,
        }
