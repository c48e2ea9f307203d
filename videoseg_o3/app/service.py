"""The web demo's work, without the web: run one request and report its progress as it goes.

:class:`SegmentService` holds the one loaded model. :meth:`SegmentService.run` segments a checked
:class:`~videoseg_o3.app.inputs.Request` in a worker thread and yields updates in order: the turns so
far (each time a turn finishes), propagation progress, then the finished outputs (overlay video,
a zip of the mask PNGs, ``turns.json``). A lock serialises requests: the model, its KV cache and
the reader are not shared between two episodes, even if a visitor leaves mid-request and the page
starts the next one while the abandoned worker is still finishing.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import queue
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from videoseg_o3.app.cards import thumbnail_data_uri
from videoseg_o3.app.config import AppConfig
from videoseg_o3.app.inputs import Request

log = logging.getLogger(__name__)


@dataclass
class TurnsUpdate:
    """The turns finished so far (records as in ``SegmentResult.turns``, one more each update) and
    keyframe thumbnails (keyframe index -> PNG data URI)."""

    turns: list[dict[str, Any]]
    num_frames: int
    thumbnails: dict[int, str]


@dataclass
class ProgressUpdate:
    """SAM2 propagation: ``done`` of ``total`` frames."""

    done: int
    total: int


@dataclass
class Finished:
    """The request's outputs, all under one run folder.

    Attributes:
        record: what ``turns.json`` holds (query, turns, anchor frame, timings, error...).
        overlay: the video with the masks blended in (MP4, H.264).
        masks_zip: ``masks/<frame>.png`` (0/255, the video's size), one per frame.
        turns_json: the record as a file.
    """

    record: dict[str, Any]
    overlay: Path
    masks_zip: Path
    turns_json: Path


Update = TurnsUpdate | ProgressUpdate | Finished
_END = object()


class SegmentService:
    """One loaded :class:`videoseg_o3.pipeline.VideoSegO3` serving requests one at a time.

    Args:
        pipeline: the model (loaded once, at start).
        config: limits and display settings.
        workdir: where each request's outputs go (``runs/<n>/``); the app removes it at stop.
        checkpoint: the checkpoint's name, recorded in ``turns.json``.
    """

    def __init__(self, pipeline: Any, config: AppConfig, workdir: str | Path, *, checkpoint: str = "") -> None:
        self.pipeline = pipeline
        self.config = config
        self.workdir = Path(workdir)
        self.checkpoint = checkpoint
        self._lock = threading.Lock()
        self._run_ids = itertools.count()

    def run(self, request: Request) -> Iterator[Update]:
        """Segment ``request`` and yield :data:`Update` objects as they happen; closes its reader.

        Raises (from the generator): whatever the model raised; the worker has stopped by then.
        """
        events: queue.Queue = queue.Queue()
        worker = threading.Thread(target=self._work, args=(request, events.put), name="videoseg-o3-segment", daemon=True)
        worker.start()
        while True:
            event = events.get()
            if event is _END:
                break
            if isinstance(event, BaseException):
                worker.join()
                raise event
            yield event
        worker.join()

    def _pipeline_for(self, scripted: list[str] | None) -> Any:
        """The pipeline, with room for the longest scripted turn (a forced turn longer than
        ``max_new_tokens`` would be cut and then read as malformed)."""
        if not scripted:
            return self.pipeline
        from videoseg_o3.pipeline import VideoSegO3

        tok = self.pipeline.policy.tokenizer
        need = max(len(tok.encode(text, add_special_tokens=False)) for text in scripted) + 1
        if need <= self.pipeline.generation.max_new_tokens:
            return self.pipeline
        generation = dataclasses.replace(self.pipeline.generation, max_new_tokens=need)
        return VideoSegO3(self.pipeline.policy, self.pipeline.segmenter, self.pipeline.protocol, generation, mode=self.pipeline.mode)

    def _thumbnails(self, reader: Any, turns: list[dict[str, Any]], known: dict[int, str]) -> dict[int, str]:
        for turn in turns:
            k = turn.get("keyframe")
            if k is not None and k not in known:
                known[k] = thumbnail_data_uri(reader.get_frames([int(k)])[0], self.config.thumbnail_side)
        return dict(known)

    def _work(self, request: Request, emit: Any) -> None:
        reader = request.reader
        num_frames = int(reader.num_frames)
        thumbnails: dict[int, str] = {}
        scripted = request.scripted_turns
        try:
            with self._lock:
                pipeline = self._pipeline_for(scripted)
                finished: list[dict[str, Any]] = []

                def on_turn(record: dict[str, Any]) -> None:
                    finished.append(record)
                    emit(TurnsUpdate(list(finished), num_frames, self._thumbnails(reader, finished, thumbnails)))

                def progress(done: int, total: int) -> None:
                    emit(ProgressUpdate(int(done), int(total)))

                result = pipeline.segment(reader, request.query, progress=progress, forced_turns=scripted, on_turn=on_turn)
                emit(self._write(request, result))
        except BaseException as exc:  # reported on the page by the caller; logged here with its trace
            log.exception("segmentation failed")
            emit(exc)
        finally:
            reader.close()
            emit(_END)

    def _write(self, request: Request, result: Any) -> Finished:
        """Write the overlay, the mask zip and ``turns.json`` into a fresh run folder."""
        from videoseg_o3.output import frame_names, write_mask_folder, write_overlay_video

        out = self.workdir / "runs" / f"{next(self._run_ids):04d}"
        out.mkdir(parents=True, exist_ok=False)
        reader = request.reader
        masks_dir = out / "masks"
        write_mask_folder(masks_dir, result.masks, frame_names(reader))
        masks_zip = out / "masks.zip"
        with zipfile.ZipFile(masks_zip, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for png in sorted(masks_dir.glob("*.png")):
                archive.write(png, f"masks/{png.name}")
        overlay = out / "overlay.mp4"
        write_overlay_video(overlay, reader, result.masks)
        record = {
            "video": request.video_path.name,
            "query": request.query,
            "checkpoint": self.checkpoint,
            "scripted_turns": request.scripted_turns is not None,
            **result.to_json(),
            "overlay": overlay.name,
        }
        turns_json = out / "turns.json"
        turns_json.write_text(json.dumps(record, indent=2) + "\n")
        return Finished(record, overlay, masks_zip, turns_json)
