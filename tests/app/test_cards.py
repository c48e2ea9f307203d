"""The turn cards' HTML: timeline geometry, keyframe thumbnails, escaping, invalid turns."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest

from videoseg_o3.app.cards import cards_html, message_html, thumbnail_data_uri, timeline_svg, turn_card_html

TURN = {
    "index": 0,
    "action": "select",
    "text": '<think>Step 1: a <b>bold</b> & "quoted" claim. Action: look.</think><select><VTG>{"start": 2, "end": 5, "keyframe": 4}</VTG><RefSeg>[SEG]</RefSeg></select>',
    "interval": [2, 5],
    "keyframe": 4,
    "frames_shown": [0, 3, 6, 9, 3],
    "error": None,
}


def _decode_png_uri(uri: str) -> np.ndarray:
    from PIL import Image

    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def test_timeline_geometry_matches_hand_computed_positions() -> None:
    """Guards the frame -> x mapping: 10 frames on 1000 units, frame i spans [100 i, 100 (i + 1))."""
    svg = timeline_svg(10, [2, 5], 4, [0, 9])
    assert re.search(r'class="tl-interval" data-start="2" data-end="5" x="200.0" y="4" width="400.0"', svg)
    assert re.search(r'class="tl-keyframe" data-frame="4" x="400.0" y="0" width="100.0"', svg)
    assert 'data-frame="0" x1="50.0"' in svg and 'data-frame="9" x1="950.0"' in svg


def test_timeline_without_interval_has_no_band() -> None:
    svg = timeline_svg(7, None, None, [])
    assert "tl-interval" not in svg and "tl-keyframe" not in svg
    with pytest.raises(ValueError, match="num_frames"):
        timeline_svg(0, None, None, [])


def test_thumbnail_is_the_frame_itself_when_small_and_shrunk_when_large() -> None:
    """Guards: the card's keyframe is the real frame (pixel for pixel when it fits) and big frames
    are shrunk to the configured side, keeping the aspect ratio."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    assert np.array_equal(_decode_png_uri(thumbnail_data_uri(small, 320)), small)
    large = rng.integers(0, 256, (400, 1000, 3), dtype=np.uint8)
    assert _decode_png_uri(thumbnail_data_uri(large, 200)).shape == (80, 200, 3)
    with pytest.raises(ValueError, match="Invalid frame"):
        thumbnail_data_uri(np.zeros((4, 4), np.uint8), 32)


def test_card_escapes_model_text_and_shows_interval_keyframe_thinking() -> None:
    """Guards against the model's text being interpreted as HTML on the page."""
    card = turn_card_html(TURN, 10, "data:image/png;base64,AAAA")
    assert 'data-turn="0" data-action="select"' in card
    assert "frames 2 to 5" in card and "keyframe 4" in card and "4 frames seen" in card
    assert "Step 1: a &lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot; claim. Action: look." in card
    assert "<b>bold</b>" not in card
    assert '<img class="vso3-thumb" src="data:image/png;base64,AAAA"' in card


def test_invalid_turn_card_shows_raw_output_and_the_reason() -> None:
    turn = {"index": 1, "action": "invalid", "text": "\n\n<oops>", "interval": None, "keyframe": None,
            "frames_shown": [], "error": "missing <think>…</think> block"}
    card = turn_card_html(turn, 5, None)
    assert 'data-action="invalid"' in card and "Turn 2" in card and "no interval" in card and "no keyframe" in card
    assert "Raw output" in card and "&lt;oops&gt;" in card
    assert 'Invalid turn: <span class="vso3-reason">missing &lt;think&gt;…&lt;/think&gt; block</span>' in card
    blank = turn_card_html({**turn, "text": "\n\n\n"}, 5, None)
    assert "(only whitespace: 3 characters)" in blank


def test_cards_in_order_with_pending_line_and_messages() -> None:
    second = {**TURN, "index": 1, "action": "answer", "keyframe": 2}
    html = cards_html([TURN, second], 10, {4: "data:image/png;base64,BBBB"}, pending="Reasoning: turn 3…")
    assert html.index('data-turn="0"') < html.index('data-turn="1"') < html.index("Reasoning: turn 3…")
    assert html.count("data:image/png;base64,BBBB") == 1  # keyframe 2 has no thumbnail: placeholder
    error = message_html("error", ["a <b>", "c"])
    assert 'role="alert"' in error and "<p>a &lt;b&gt;</p><p>c</p>" in error
    with pytest.raises(ValueError, match="Invalid message kind"):
        message_html("warning", [])
