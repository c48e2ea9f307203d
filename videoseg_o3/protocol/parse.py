"""Parse and write one assistant turn of the select/answer protocol (docs/architecture.md#the-turn-protocol).

A turn is text of this shape; the tag names and the JSON keys are a compatibility contract with the
released VideoSEG-O3 checkpoints::

    <think>Step 1: ... Step 2: ... Step 3: ... Action: ...</think>
    <select><VTG>{"start": s, "end": e, "keyframe": k}</VTG><RefSeg>[SEG]</RefSeg></select>   (continue)
    <answer><VTG>{"start": s, "end": e, "keyframe": k}</VTG><RefSeg>[SEG]</RefSeg></answer>   (stop)

:func:`parse_turn` is written for text a sampled policy produced, so it never raises and its work is
linear in the input length (every search is a literal ``str.find`` / non-backtracking scan; JSON is
only decoded from a bounded slice). It keeps two verdicts apart, because the episode loop and the
GRPO rewards need different things:

- *usable*: the ``action`` field: what the released evaluation would act on. It reads the ``<VTG>``
  JSON with strict ``json.loads`` (the released evaluation stops the episode when that fails), accepts
  ``<select>{...}</select>`` without ``<VTG>`` as the released evaluation and system prompt do, and
  converts indices with ``int()`` as it does (floats truncated, numeric strings read). Two options,
  taken from a :class:`~videoseg_o3.protocol.ProtocolConfig`: ``vtg_json="tolerant"`` also reads
  single-quoted or loosely written ``key: number`` payloads (the project's own prompt style uses it), and
  ``select_requires_vtg`` refuses a select without ``<VTG>`` (the released RL rollouts).
- *strict*: ``error is None``. Everything the released ``strict_format_cot`` reward checks, plus
  integer JSON values, exactly one action block and no text around the turn. The exact released
  per-turn check is kept as well (``reference_format_ok``) for the ``compat`` reward option.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from videoseg_o3.protocol.config import ProtocolConfig

__all__ = [
    "ACTIONS",
    "MAX_TURN_CHARS",
    "MAX_VTG_CHARS",
    "SEG_TOKEN",
    "TurnParse",
    "format_turn",
    "parse_turn",
]

SEG_TOKEN = "[SEG]"
ACTIONS = ("select", "answer")
VTG_KEYS = ("start", "end", "keyframe")

# A policy turn is at most ~1k tokens (a few thousand characters). Anything far longer is garbage;
# refusing it up front keeps the worst case of every caller (rewards, logging) bounded.
MAX_TURN_CHARS = 1_000_000
# The VTG payload is a three-key object (~50 characters). JSON is decoded only from slices up to this
# length, so a pathological payload (deep nesting, megabyte numbers) costs nothing.
MAX_VTG_CHARS = 4096
# Tokens a decoder may leave at the end of a turn; they are not text the policy "wrote".
_TRAILING_SPECIAL_TOKENS = ("<|im_end|>", "<|endoftext|>")

_THINK_OPEN_I = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE_I = re.compile(r"</think>", re.IGNORECASE)
_THINK_CLOSE = "</think>"
# \s* then an action tag, anchored with .match(): linear in the whitespace it skips.
_AFTER_THINK = re.compile(r"\s*<(answer|select)>")
_ACTION_OPEN = re.compile(r"<(answer|select)>")
# Loose "key: value" pairs for VTG payloads that are not JSON (single quotes, '=' , missing braces).
# No two adjacent unbounded quantifiers can share characters, so a match attempt is linear.
_LOOSE_PAIR = re.compile(
    r"""["']?\b(start|end|keyframe)\b["']?\s*[:=]\s*(?:["']\s*)?([+-]?\d{1,18}(?:\.\d{0,18})?)(?![\d.])"""
)
_INT_STRING = re.compile(r"\s*([+-]?\d{1,18})\s*")


@dataclass(frozen=True)
class TurnParse:
    """What one assistant turn says, in a form the episode loop and the rewards can use.

    Frame indices are the raw values the policy wrote (0-based frame numbers of the whole video,
    unclipped); use :meth:`clipped` for the indices the protocol acts on.
    """

    action: str
    """``"select"`` (look closer: fetch frames and continue), ``"answer"`` (stop) or ``"invalid"``
    (no usable action: no complete action block, or a select whose interval cannot be read)."""
    think: str | None
    """Text inside the first ``<think>…</think>`` (tags matched case-insensitively, as the released
    step-format reward does); ``None`` when there is none."""
    steps_present: tuple[bool, bool, bool]
    """Whether "step 1", "step 2", "step 3" occur in ``think`` (case-insensitive substrings, as the
    released step-format reward counts them)."""
    has_action: bool
    """Whether "action" occurs in ``think`` (case-insensitive)."""
    start: int | None
    end: int | None
    keyframe: int | None
    has_seg: bool
    """Whether the action block's ``<RefSeg>…</RefSeg>`` holds ``[SEG]`` (the first such pair in the
    whole turn when there is no action block)."""
    error: str | None
    """Why the turn is not strictly formatted (the first problem found); ``None`` when clean."""
    reference_format_ok: bool = False
    """The released ``strict_format_cot`` per-turn check, reproduced exactly: a ``<think>…</think>``
    followed (after whitespace) by ``<select>``/``<answer>`` whose body holds a ``<VTG>`` JSON object
    with the three keys and a ``<RefSeg>`` holding ``[SEG]``. It is looser than ``error is None``."""
    num_seg_tokens: int = 0
    """``[SEG]`` occurrences anywhere in the turn: one hidden state is read at each of them."""
    notes: tuple[str, ...] = ()
    """Deviations that were tolerated to recover the action (each also makes the turn non-strict)."""

    @property
    def strict_ok(self) -> bool:
        """True when the turn is exactly in the protocol's format (``error is None``)."""
        return self.error is None

    @property
    def step_fraction(self) -> float:
        """Fraction of {"step 1", "step 2", "step 3", "action"} present in ``think``, in [0, 1]."""
        return (sum(self.steps_present) + int(self.has_action)) / 4.0

    def clipped(self, num_frames: int) -> tuple[int, int, int] | None:
        """``(start, end, keyframe)`` each clipped into ``[0, num_frames - 1]``.

        Returns ``None`` when a value is missing or ``num_frames < 1``. Clipping can turn an interval
        that lies outside the video into a valid-looking one; :meth:`interval_is_empty` tells the two
        apart (the episode stops on an empty interval).
        """
        if self.start is None or self.end is None or self.keyframe is None or num_frames < 1:
            return None
        last = num_frames - 1
        return (_clip(self.start, 0, last), _clip(self.end, 0, last), _clip(self.keyframe, 0, last))

    def interval_is_empty(self, num_frames: int) -> bool:
        """True when ``[start, end]`` holds no frame of the video (or cannot be read).

        The released evaluation clips ``start`` up to 0 and ``end`` down to ``N - 1`` and stops when
        ``end < start``; that is the same as the written interval missing ``[0, N - 1]`` entirely.
        """
        if self.start is None or self.end is None or num_frames < 1:
            return True
        return max(0, self.start) > min(num_frames - 1, self.end)


def _clip(value: int, low: int, high: int) -> int:
    return low if value < low else high if value > high else value


# --------------------------------------------------------------------------------------------------
# Small linear-time scanners.


def _pair(text: str, open_tag: str, close_tag: str, start: int = 0, end: int | None = None) -> tuple[int, int, int] | None:
    """First ``open_tag`` in ``text[start:end]`` and the first ``close_tag`` after it.

    Returns (open position, content start, content end) or None. This is what the lazy regex
    ``open(.*?)close`` finds, without its quadratic worst case.
    """
    stop = len(text) if end is None else end
    i = text.find(open_tag, start, stop)
    if i < 0:
        return None
    j = text.find(close_tag, i + len(open_tag), stop)
    if j < 0:
        return None
    return i, i + len(open_tag), j


def _think_span(text: str) -> tuple[int, int, int] | None:
    """First case-insensitive ``<think>`` and the first ``</think>`` after it: (open, content start, content end)."""
    m = _THINK_OPEN_I.search(text)
    if m is None:
        return None
    c = _THINK_CLOSE_I.search(text, m.end())
    if c is None:
        return None
    return m.start(), m.end(), c.start()


def _structural_match(text: str) -> tuple[str, int, int, int, int] | None:
    """The match of the released format regex ``<think>.*?</think>\\s*<(answer|select)>(.*?)</\\1>``.

    Returns (tag, think open position, body start, body end, block end) of the match ``re.search``
    would return, found in linear time: the leftmost ``<think>`` is the match start whenever any
    match exists, the lazy ``.*?`` tries each later ``</think>`` in order, and a closing tag exists
    after a position iff the last occurrence of that closing tag lies after it.
    """
    i = text.find("<think>")
    if i < 0:
        return None
    last_close = {tag: text.rfind(f"</{tag}>") for tag in ACTIONS}
    j = text.find(_THINK_CLOSE, i + len("<think>"))
    while j >= 0:
        m = _AFTER_THINK.match(text, j + len(_THINK_CLOSE))
        if m is not None:
            tag = m.group(1)
            body_start = m.end()
            if last_close[tag] >= body_start:
                body_end = text.find(f"</{tag}>", body_start)
                return tag, i, body_start, body_end, body_end + len(tag) + 3
        j = text.find(_THINK_CLOSE, j + 1)
    return None


def _first_action_block(text: str, start: int) -> tuple[str, int, int, int, int] | None:
    """First complete ``<select>…</select>`` / ``<answer>…</answer>`` opening at or after ``start``.

    Returns (tag, open position, body start, body end, block end) or None.
    """
    last_close = {tag: text.rfind(f"</{tag}>") for tag in ACTIONS}
    for m in _ACTION_OPEN.finditer(text, start):
        tag = m.group(1)
        if last_close[tag] >= m.end():
            body_end = text.find(f"</{tag}>", m.end())
            return tag, m.start(), m.end(), body_end, body_end + len(tag) + 3
    return None


def _strip_trailing_special(text: str) -> str:
    out = text.rstrip()
    changed = True
    while changed:
        changed = False
        for tok in _TRAILING_SPECIAL_TOKENS:
            if out.endswith(tok):
                out = out[: -len(tok)].rstrip()
                changed = True
    return out


# --------------------------------------------------------------------------------------------------
# VTG payload decoding.


def _json_object(payload: str) -> dict[str, Any] | None:
    """``json.loads`` of a bounded payload; the object if it decodes to one, else None."""
    if len(payload) > MAX_VTG_CHARS:
        return None
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError, MemoryError):  # JSONDecodeError is a ValueError
        return None
    return value if isinstance(value, dict) else None


def _index_from_json_value(value: Any) -> tuple[int | None, str | None]:
    """A frame index from one decoded JSON value: (index or None, note when tolerated)."""
    if isinstance(value, bool):  # a JSON true/false is not a frame number (json ints are never bool)
        return None, None
    if isinstance(value, int):
        return value, None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None, None
        # The released evaluation applies int() to whatever json.loads returned: truncation.
        return int(value), "VTG frame indices written as numbers with a fraction or decimal point"
    if isinstance(value, str):
        m = _INT_STRING.fullmatch(value)
        if m is None:
            return None, None
        return int(m.group(1)), "VTG frame indices written as strings"
    return None, None


def _decode_vtg(payload: str, tolerant: bool) -> tuple[dict[str, int | None], bool, bool, list[str]]:
    """Decode a VTG payload.

    Returns (values by key, is a JSON object with the three keys, all three are JSON integers, notes).
    With ``tolerant``, falls back to loose ``key: number`` pairs when the payload is not a JSON object;
    otherwise such a payload yields no values (as ``json.loads`` failing does in the released code).
    """
    values: dict[str, int | None] = dict.fromkeys(VTG_KEYS)
    notes: list[str] = []
    obj = _json_object(payload)
    if obj is not None:
        keys_ok = all(k in obj for k in VTG_KEYS)
        ints_ok = keys_ok
        for key in VTG_KEYS:
            if key not in obj:
                continue
            raw = obj[key]
            idx, note = _index_from_json_value(raw)
            values[key] = idx
            if not (isinstance(raw, int) and not isinstance(raw, bool)):
                ints_ok = False
            if note and note not in notes:
                notes.append(note)
        return values, keys_ok, ints_ok, notes
    if tolerant and len(payload) <= MAX_VTG_CHARS:
        for m in _LOOSE_PAIR.finditer(payload):
            key, number = m.group(1), m.group(2)
            if values[key] is None:
                values[key] = int(float(number)) if "." in number else int(number)
        if any(v is not None for v in values.values()):
            notes.append("VTG payload is not a JSON object; values read from loose 'key: number' pairs")
    return values, False, False, notes


def _refseg_holds_seg(text: str, start: int = 0, end: int | None = None) -> bool:
    span = _pair(text, "<RefSeg>", "</RefSeg>", start, end)
    return span is not None and SEG_TOKEN in text[span[1] : span[2]]


# --------------------------------------------------------------------------------------------------


def _invalid(error: str) -> TurnParse:
    return TurnParse(
        action="invalid",
        think=None,
        steps_present=(False, False, False),
        has_action=False,
        start=None,
        end=None,
        keyframe=None,
        has_seg=False,
        error=error,
    )


def parse_turn(text: str, cfg: ProtocolConfig | None = None) -> TurnParse:
    """Parse one generated assistant turn. Never raises; linear time in ``len(text)``.

    Args:
        text: the decoded turn (a trailing ``<|im_end|>`` / ``<|endoftext|>`` is ignored).
        cfg: supplies ``vtg_json`` and ``select_requires_vtg`` (see the module docstring). None: tolerant
            JSON, and a select without ``<VTG>`` still counts (the most permissive reading, for scoring
            text of unknown origin).

    Returns:
        A :class:`TurnParse`. ``action`` says what the episode does next; ``error`` is ``None`` only
        for a strictly formatted turn.
    """
    if not isinstance(text, str):
        return _invalid(f"Invalid turn text of type {type(text).__name__}. Expected str.")
    if len(text) > MAX_TURN_CHARS:
        return _invalid(f"turn is {len(text)} characters long; at most {MAX_TURN_CHARS} are parsed")
    tolerant = cfg is None or cfg.vtg_json == "tolerant"
    requires_vtg = cfg is not None and cfg.select_requires_vtg
    try:
        return _parse(text, tolerant, requires_vtg)
    except Exception as exc:  # pragma: no cover - a parser bug must not end a training run
        return _invalid(f"internal parser error ({type(exc).__name__}): {exc}")


def _parse(text: str, tolerant: bool, requires_vtg: bool) -> TurnParse:
    errors: list[str] = []
    notes: list[str] = []

    think_span = _think_span(text)
    think = None if think_span is None else text[think_span[1] : think_span[2]]
    lowered = think.lower() if think is not None else ""
    steps_present = ("step 1" in lowered, "step 2" in lowered, "step 3" in lowered)
    has_action_word = "action" in lowered
    if think_span is None:
        errors.append("missing <think>…</think> block")

    # The block the released format check sees, or else the first complete action block
    # (after the think block when there is one, otherwise anywhere).
    structural = _structural_match(text)
    reference_format_ok = False
    if structural is not None:
        tag, think_open, body_start, body_end, block_end = structural
        block_open = body_start - len(tag) - 2
    else:
        think_open = None
        block = None
        if think_span is not None:
            block = _first_action_block(text, think_span[2] + len(_THINK_CLOSE))
        if block is None:
            block = _first_action_block(text, 0)
        if block is None:
            tag = None
            block_open = body_start = body_end = block_end = -1
        else:
            tag, block_open, body_start, body_end, block_end = block
            if think_span is None:
                pass  # "missing <think>" already recorded
            elif block_open < think_span[2]:
                errors.append(f"the <{tag}> block is not after </think>")
            elif text[think_span[2] + len(_THINK_CLOSE) : block_open].strip():
                errors.append(f"text between </think> and <{tag}> (only whitespace may come between)")
            else:
                errors.append("<think> and </think> must be lower case")

    if tag is None:
        errors.append("no complete <select>…</select> or <answer>…</answer> block")
        vtg_span = _pair(text, "<VTG>", "</VTG>")
        values: dict[str, int | None] = dict.fromkeys(VTG_KEYS)
        if vtg_span is not None:
            values, _, _, vtg_notes = _decode_vtg(text[vtg_span[1] : vtg_span[2]], tolerant)
            notes.extend(vtg_notes)
        return TurnParse(
            action="invalid",
            think=think,
            steps_present=steps_present,
            has_action=has_action_word,
            start=values["start"],
            end=values["end"],
            keyframe=values["keyframe"],
            has_seg=_refseg_holds_seg(text),
            error=errors[0],
            reference_format_ok=False,
            num_seg_tokens=text.count(SEG_TOKEN),
            notes=tuple(notes),
        )

    # Inside the action block.
    vtg_span = _pair(text, "<VTG>", "</VTG>", body_start, body_end)
    if vtg_span is not None:
        values, keys_ok, ints_ok, vtg_notes = _decode_vtg(text[vtg_span[1] : vtg_span[2]], tolerant)
        notes.extend(vtg_notes)
        if not keys_ok:
            errors.append('<VTG> does not hold a JSON object with the keys "start", "end" and "keyframe"')
        elif not ints_ok:
            errors.append("VTG frame indices must be JSON integers")
    else:
        # The released system prompt shows <select>{...}</select> without <VTG>, and the released
        # evaluation reads the select body as JSON in that case: accept it, but not as strict. The
        # released RL rollouts match <select>.*?<VTG>(.*?)</VTG> only (select_requires_vtg).
        if requires_vtg and tag == "select":
            values = dict.fromkeys(VTG_KEYS)
        else:
            values, _, _, vtg_notes = _decode_vtg(text[body_start:body_end].strip(), tolerant)
            if any(v is not None for v in values.values()):
                notes.append(f"no <VTG>…</VTG> in <{tag}>; values read from the block body")
            notes.extend(vtg_notes)
        errors.append(f"missing <VTG>…</VTG> in <{tag}>")

    has_seg = _refseg_holds_seg(text, body_start, body_end)
    if _pair(text, "<RefSeg>", "</RefSeg>", body_start, body_end) is None:
        errors.append(f"missing <RefSeg>…</RefSeg> in <{tag}>")
    elif not has_seg:
        errors.append("<RefSeg> does not hold [SEG]")

    if structural is not None and vtg_span is not None:
        payload_obj = _json_object(text[vtg_span[1] : vtg_span[2]])
        reference_format_ok = (
            payload_obj is not None and all(k in payload_obj for k in VTG_KEYS) and has_seg
        )

    # Beyond the released check: one action per turn, and nothing around the turn.
    if _first_action_block(text, block_end) is not None:
        errors.append("more than one action block in the turn")
    lead_end = think_open if think_open is not None else (think_span[0] if think_span is not None else block_open)
    if text[:lead_end].strip():
        errors.append("text before <think>")
    if _strip_trailing_special(text[block_end:]).strip():
        errors.append(f"text after </{tag}>")

    complete = all(values[k] is not None for k in VTG_KEYS)
    if tag == "select" and not complete:
        action = "invalid"
        errors.insert(0, "select without a readable start, end and keyframe")
    else:
        action = tag

    if notes and not errors:  # pragma: no cover - every tolerated deviation also records an error
        errors.append(notes[0])
    return TurnParse(
        action=action,
        think=think,
        steps_present=steps_present,
        has_action=has_action_word,
        start=values["start"],
        end=values["end"],
        keyframe=values["keyframe"],
        has_seg=has_seg,
        error=errors[0] if errors else None,
        reference_format_ok=reference_format_ok,
        num_seg_tokens=text.count(SEG_TOKEN),
        notes=tuple(notes),
    )


def format_turn(
    action: str,
    steps: tuple[str, str, str],
    action_text: str,
    start: int,
    end: int,
    keyframe: int,
) -> str:
    """Write one assistant turn in the protocol's exact format (the inverse of :func:`parse_turn`).

    Args:
        action: ``"select"`` or ``"answer"``.
        steps: the three reasoning steps (temporal dynamics, spatial details, expression analysis),
            written after "Step 1:", "Step 2:", "Step 3:".
        action_text: what the turn does next, written after "Action:" (e.g. "See new segment.").
        start, end, keyframe: 0-based frame indices of the whole video.

    Returns:
        ``<think>Step 1: … Step 2: … Step 3: … Action: …</think><action><VTG>{"start": s, "end": e,
        "keyframe": k}</VTG><RefSeg>[SEG]</RefSeg></action>``; ``parse_turn`` reads it back with
        ``error is None`` and the same action and indices.
    """
    if action not in ACTIONS:
        raise ValueError(f"Invalid action ({action!r}). Supported values are {', '.join(ACTIONS)}.")
    if not isinstance(steps, (tuple, list)) or len(steps) != 3:
        raise ValueError(f"Invalid steps ({steps!r}). Expected a tuple of three strings (temporal, spatial, expression).")
    texts = {"steps[0]": steps[0], "steps[1]": steps[1], "steps[2]": steps[2], "action_text": action_text}
    for name, value in texts.items():
        if not isinstance(value, str):
            raise ValueError(f"Invalid {name} of type {type(value).__name__}. Expected str.")
        if _THINK_CLOSE_I.search(value):
            raise ValueError(f"Invalid {name} ({value!r}): it contains </think>, which would end the think block early.")
    for name, value in (("start", start), ("end", end), ("keyframe", keyframe)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"Invalid {name} ({value!r}). Expected a non-negative int frame index.")
    think = f"Step 1: {steps[0]} Step 2: {steps[1]} Step 3: {steps[2]} Action: {action_text}"
    vtg = json.dumps({"start": int(start), "end": int(end), "keyframe": int(keyframe)})
    return f"<think>{think}</think><{action}><VTG>{vtg}</VTG><RefSeg>{SEG_TOKEN}</RefSeg></{action}>"
