"""The Segment button's handler, called directly (no server): messages and resource handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from videoseg_o3.app import AppConfig, SegmentService

pytest.importorskip("gradio", reason="the handler is a Gradio generator; gradio is the optional `app` dependency")


def test_bad_request_yields_one_error_message_and_stops(tmp_path: Path) -> None:
    from videoseg_o3.app.ui import make_handler

    handler = make_handler(SegmentService(None, AppConfig(), tmp_path))
    ((status, cards, overlay, files),) = list(handler(None, "", ""))
    assert 'class="vso3-message error"' in status and "The query is empty." in status and "No video." in status
    assert (cards, overlay, files) == ("", None, None)


def test_leaving_before_the_work_starts_closes_the_video(clip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards against a leaked open file per abandoned request (the model never ran for it)."""
    import videoseg_o3.app.ui as ui

    opened = []
    original = ui.check_request

    def recording(*args, **kwargs):
        opened.append(original(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(ui, "check_request", recording)
    handler = ui.make_handler(SegmentService(None, AppConfig(), tmp_path))
    steps = handler(str(clip.path), clip.query, "")
    status, cards, _, _ = next(steps)
    assert "Segmenting 10 frames." in status and "Reasoning: turn 1…" in cards
    steps.close()
    (request,) = opened
    assert request.reader.closed
