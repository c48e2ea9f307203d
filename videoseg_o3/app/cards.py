"""HTML of the web demo's result panel: one card per assistant turn, a summary and messages.

A card shows what the policy did in that turn: its action, the interval it chose drawn on a
timeline of the whole video (with the frames it had been shown and its keyframe), the keyframe
itself as a thumbnail, and its thinking text. Everything is built from the turn records of
``SegmentResult.turns`` (the same records ``turns.json`` holds), so the page and the download agree.
Pure functions of their inputs (no Gradio), so they are tested without a browser.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any, Iterable, Sequence

import numpy as np

TIMELINE_WIDTH = 1000  # SVG user units; the SVG scales to the card's width
TIMELINE_HEIGHT = 28
ACTION_COLORS = {"select": "#2563eb", "answer": "#16a34a", "invalid": "#dc2626"}

CSS = """
.vso3-cards {display: flex; flex-direction: column; gap: 12px;}
.vso3-card {border: 1px solid #d4d4d8; border-radius: 8px; padding: 12px; background: #fff; color: #18181b;}
.vso3-card-head {display: flex; gap: 10px; align-items: baseline; flex-wrap: wrap; margin-bottom: 6px;}
.vso3-action {color: #fff; border-radius: 4px; padding: 1px 8px; font-weight: 600;}
.vso3-body {display: flex; gap: 12px; align-items: flex-start; flex-wrap: wrap;}
.vso3-thumb {image-rendering: pixelated; border: 1px solid #a1a1aa; width: 240px; height: auto;}
.vso3-nothumb {width: 96px; height: 64px; border: 1px dashed #a1a1aa; display: flex; align-items: center;
               justify-content: center; font-size: 12px; color: #71717a;}
.vso3-think {white-space: pre-wrap; flex: 1 1 320px; margin: 0; font-size: 13px; line-height: 1.45;}
.vso3-error {color: #b91c1c; margin-top: 6px;}
.vso3-axis {display: flex; justify-content: space-between; font-size: 11px; color: #71717a;}
.vso3-message {border-radius: 8px; padding: 10px 12px; margin: 4px 0;}
.vso3-message.error {background: #fef2f2; border: 1px solid #fca5a5; color: #991b1b;}
.vso3-message.info {background: #eff6ff; border: 1px solid #93c5fd; color: #1e3a8a;}
.vso3-message.ok {background: #f0fdf4; border: 1px solid #86efac; color: #14532d;}
.vso3-message p {margin: 2px 0;}
"""


def thumbnail_data_uri(frame: Any, max_side: int) -> str:
    """A ``data:image/png`` URI of ``frame`` (``(H, W, 3) uint8``), shrunk so its longest side is at
    most ``max_side`` (never enlarged: the card shows small frames pixel for pixel)."""
    from PIL import Image

    array = frame.cpu().numpy() if hasattr(frame, "cpu") else np.asarray(frame)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"Invalid frame ({array.shape} {array.dtype}): expected uint8 of shape (H, W, 3).")
    image = Image.fromarray(array)
    scale = max_side / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _x(frame: float, num_frames: int) -> float:
    return round(frame * TIMELINE_WIDTH / num_frames, 3)


def timeline_svg(num_frames: int, interval: Sequence[int] | None, keyframe: int | None, frames_shown: Iterable[int]) -> str:
    """An SVG strip for a video of ``num_frames`` frames: frame ``i`` spans ``[i, i+1) * W / N``.

    The chosen ``interval`` ``[s, e]`` (inclusive) is a filled band, each frame the turn had been
    shown is a thin tick, and the ``keyframe`` a dark bar; each element carries ``data-*`` attributes
    with its frame numbers.
    """
    if num_frames < 1:
        raise ValueError(f"Invalid num_frames ({num_frames}). Expected >= 1.")
    unit = TIMELINE_WIDTH / num_frames
    parts = [
        f'<svg class="vso3-timeline" viewBox="0 0 {TIMELINE_WIDTH} {TIMELINE_HEIGHT}" preserveAspectRatio="none" '
        f'width="100%" height="{TIMELINE_HEIGHT}" role="img" aria-label="timeline of {num_frames} frames">',
        f'<rect class="tl-bg" x="0" y="0" width="{TIMELINE_WIDTH}" height="{TIMELINE_HEIGHT}" fill="#f4f4f5" stroke="#d4d4d8"/>',
    ]
    if interval is not None:
        start, end = int(interval[0]), int(interval[1])
        parts.append(
            f'<rect class="tl-interval" data-start="{start}" data-end="{end}" x="{_x(start, num_frames)}" y="4" '
            f'width="{round((end - start + 1) * unit, 3)}" height="{TIMELINE_HEIGHT - 8}" fill="#93c5fd">'
            f"<title>interval {start} to {end}</title></rect>"
        )
    for index in sorted({int(i) for i in frames_shown}):
        x = _x(index + 0.5, num_frames)
        parts.append(f'<line class="tl-shown" data-frame="{index}" x1="{x}" x2="{x}" y1="0" y2="6" stroke="#52525b" stroke-width="2"/>')
    if keyframe is not None:
        k = int(keyframe)
        parts.append(
            f'<rect class="tl-keyframe" data-frame="{k}" x="{_x(k, num_frames)}" y="0" width="{round(max(unit, 3.0), 3)}" '
            f'height="{TIMELINE_HEIGHT}" fill="#1e3a8a"><title>keyframe {k}</title></rect>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _thinking(text: str) -> tuple[str, bool]:
    """The turn's thinking (inside ``<think>…</think>``), or its raw text when it has no think block."""
    from videoseg_o3.protocol import parse_turn

    think = parse_turn(text).think
    if think is not None:
        return think.strip(), True
    raw = text.strip()
    return (raw if raw else f"(only whitespace: {len(text)} characters)"), False


def turn_card_html(turn: dict[str, Any], num_frames: int, thumbnail: str | None) -> str:
    """One card for a turn record (``index``, ``action``, ``text``, ``interval``, ``keyframe``,
    ``frames_shown``, ``error``); ``thumbnail`` is the keyframe's data URI, or None."""
    index, action = int(turn["index"]), str(turn["action"])
    interval, keyframe = turn.get("interval"), turn.get("keyframe")
    color = ACTION_COLORS.get(action, "#52525b")
    where = []
    if interval is not None:
        where.append(f'<span class="vso3-interval">frames {int(interval[0])} to {int(interval[1])}</span>')
    if keyframe is not None:
        where.append(f'<span class="vso3-keyframe">keyframe {int(keyframe)}</span>')
    if not where:
        where.append('<span class="vso3-interval">no interval</span>')
    shown = turn.get("frames_shown") or []
    thinking, has_think = _thinking(str(turn.get("text", "")))
    label = "Thinking" if has_think else "Raw output (no &lt;think&gt; block)"
    image = (
        f'<img class="vso3-thumb" src="{thumbnail}" alt="keyframe {int(keyframe)}"/>'
        if thumbnail is not None and keyframe is not None
        else '<div class="vso3-nothumb">no keyframe</div>'
    )
    error = turn.get("error")
    reason = ""
    if error:
        prefix = "Invalid turn" if action == "invalid" else "Format problem"
        reason = f'<div class="vso3-error">{prefix}: <span class="vso3-reason">{html.escape(str(error))}</span></div>'
    return (
        f'<div class="vso3-card" data-turn="{index}" data-action="{html.escape(action)}">'
        f'<div class="vso3-card-head"><strong>Turn {index + 1}</strong>'
        f'<span class="vso3-action" style="background:{color}">{html.escape(action)}</span>{" · ".join(where)}'
        f'<span class="vso3-shown">{len(set(shown))} frames seen</span></div>'
        f"{timeline_svg(num_frames, interval, keyframe, shown)}"
        f'<div class="vso3-axis"><span>0</span><span>frame</span><span>{num_frames - 1}</span></div>'
        f'<div class="vso3-body">{image}<div style="flex:1 1 320px"><div><em>{label}</em></div>'
        f'<pre class="vso3-think">{html.escape(thinking)}</pre></div></div>{reason}</div>'
    )


def cards_html(turns: Sequence[dict[str, Any]], num_frames: int, thumbnails: dict[int, str], *, pending: str | None = None) -> str:
    """Every turn's card in order, then a ``pending`` line (e.g. "reasoning: turn 2…") if given.

    ``thumbnails`` maps a keyframe index to its data URI (turns without one get a placeholder).
    """
    cards = [turn_card_html(t, num_frames, thumbnails.get(t.get("keyframe"))) for t in turns]
    if pending:
        cards.append(f'<div class="vso3-pending">{html.escape(pending)}</div>')
    return f'<div class="vso3-cards" data-turns="{len(turns)}">{"".join(cards)}</div>'


def message_html(kind: str, lines: Sequence[str]) -> str:
    """A message box (``kind``: ``error``, ``info`` or ``ok``), one paragraph per line."""
    if kind not in ("error", "info", "ok"):
        raise ValueError(f"Invalid message kind ({kind}). Supported values are error, info, ok.")
    body = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    return f'<div class="vso3-message {kind}" role="{"alert" if kind == "error" else "status"}">{body}</div>'


def summary_lines(record: dict[str, Any]) -> list[str]:
    """What the finished request reports: turns, anchor frame, foreground frames, time per stage, error."""
    timings = record.get("timings", {})
    lines = [
        f"{len(record['turns'])} turn(s); SAM2 conditioned on frame {record['anchor_frame']}; "
        f"{record['foreground_frames']}/{record['num_frames']} frames with foreground.",
        f"Reasoning {timings.get('episode', 0.0):.2f} s, propagation {timings.get('propagation', 0.0):.2f} s.",
    ]
    if record.get("error"):
        lines.append(f"No mask: {record['error']}.")
    return lines
