"""SegmentService: the order of updates, the files it writes, and one request at a time."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from videoseg_o3.app import AppConfig, Finished, ProgressUpdate, SegmentService, TurnsUpdate, check_request


@pytest.fixture(scope="module")
def pipeline(app_ckpt: Path):
    from videoseg_o3.pipeline import VideoSegO3

    return VideoSegO3.from_pretrained(app_ckpt, device="cpu")


def _read_zip_masks(path: Path) -> dict[str, np.ndarray]:
    from PIL import Image

    with zipfile.ZipFile(path) as archive:
        return {name: np.asarray(Image.open(io.BytesIO(archive.read(name)))) for name in sorted(archive.namelist())}


def test_replayed_turns_stream_then_propagate_then_write(pipeline, clip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards the page's story: turns appear one by one before propagation, progress counts every
    frame, and the downloads hold exactly what the pipeline returned (masks, turns, anchor)."""
    from videoseg_o3.pipeline import VideoSegO3

    returned = []
    original = VideoSegO3.segment

    def recording(self, *args, **kwargs):
        returned.append(original(self, *args, **kwargs))
        return returned[-1]

    # on the class: the service replays long scripted turns through a copy with a larger token budget
    monkeypatch.setattr(VideoSegO3, "segment", recording)
    service = SegmentService(pipeline, AppConfig(), tmp_path, checkpoint="tiny")
    request = check_request(clip.path, clip.query, "\n".join(clip.turns), service.config)
    updates = list(service.run(request))

    kinds = [type(u).__name__ for u in updates]
    n_turns = len(clip.turns)
    # one update per finished turn, all before propagation starts
    assert kinds[:n_turns] == ["TurnsUpdate"] * n_turns
    progress = [u for u in updates if isinstance(u, ProgressUpdate)]
    assert [(p.done, p.total) for p in progress] == [(i, clip.num_frames) for i in range(1, clip.num_frames + 1)]
    assert kinds[-1] == "Finished"
    streamed = [u for u in updates if isinstance(u, TurnsUpdate)]
    final = streamed[-1]
    for k, update in enumerate(streamed):
        assert len(update.turns) == k + 1 and update.turns == final.turns[: k + 1]

    (expected,) = returned
    done: Finished = updates[-1]
    record = json.loads(done.turns_json.read_text())
    assert record == done.record
    assert [t["action"] for t in record["turns"]] == ["select"] * (n_turns - 1) + ["answer"]
    assert record["turns"] == final.turns == expected.turns
    # the scripted texts were replayed verbatim (the generation budget was raised to fit them)
    assert [t["text"] for t in record["turns"]] == clip.turns
    assert record["anchor_frame"] == expected.anchor_frame and record["query"] == clip.query and record["scripted_turns"]
    masks = _read_zip_masks(done.masks_zip)
    assert list(masks) == [f"masks/{i:05d}.png" for i in range(clip.num_frames)]
    stacked = np.stack(list(masks.values()))
    assert set(np.unique(stacked)) <= {0, 255}
    assert np.array_equal(stacked == 255, expected.masks.numpy())
    assert record["foreground_frames"] == int((stacked == 255).reshape(clip.num_frames, -1).any(1).sum()) > 0
    # thumbnails exist for every keyframe the turns chose
    assert set(final.thumbnails) == {t["keyframe"] for t in record["turns"]}
    assert done.overlay.stat().st_size > 0 and done.overlay.parent.parent == tmp_path / "runs"


def test_random_model_gives_one_invalid_turn_and_empty_masks(pipeline, clip, tmp_path: Path) -> None:
    """Guards: a malformed model output is a result on the page (invalid turn + reason), not a crash."""
    service = SegmentService(pipeline, AppConfig(), tmp_path)
    updates = list(service.run(check_request(clip.path, clip.query, "", service.config)))
    done = updates[-1]
    assert isinstance(done, Finished)
    assert not any(isinstance(u, ProgressUpdate) for u in updates)  # no [SEG]: nothing to propagate
    (turn,) = done.record["turns"]
    assert turn["action"] == "invalid" and turn["error"]
    assert "[SEG]" in done.record["error"] and done.record["foreground_frames"] == 0


def test_requests_run_one_at_a_time(pipeline, clip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards the lock: two visitors' requests never run the model at the same time."""
    service = SegmentService(pipeline, AppConfig(), tmp_path)
    active, peak = 0, 0
    guard = threading.Lock()
    original = pipeline.segment

    def counting(*args, **kwargs):
        nonlocal active, peak
        with guard:
            active += 1
            peak = max(peak, active)
        try:
            return original(*args, **kwargs)
        finally:
            with guard:
                active -= 1

    monkeypatch.setattr(pipeline, "segment", counting)
    results: list[object] = []

    def visit() -> None:
        results.append(list(service.run(check_request(clip.path, clip.query, "", service.config)))[-1])

    threads = [threading.Thread(target=visit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(results) == 2 and all(isinstance(r, Finished) for r in results)
    assert peak == 1
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["0000", "0001"]


def test_model_failure_is_raised_to_the_page_and_the_reader_closed(pipeline, clip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service = SegmentService(pipeline, AppConfig(), tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(pipeline, "segment", broken)
    request = check_request(clip.path, clip.query, "", service.config)
    with pytest.raises(RuntimeError, match="out of memory"):
        list(service.run(request))
    assert request.reader.closed
    assert torch.is_grad_enabled()
