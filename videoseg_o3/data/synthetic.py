"""A procedural reasoning-VOS task: videos of moving shapes, exact masks, and queries that need temporal,
spatial or plain referring reasoning. It gives the whole pipeline real data to train and evaluate on offline.

Each video (``T`` frames, ``H x W`` pixels) holds a few objects, each a *shape* (circle, square, triangle,
diamond) x *colour* (red, green, blue, yellow, purple, orange) x *size* (small, large). Objects move in a
straight line and may *stop* (stand still from some frame to the end), *turn* (velocity rotated by 90
degrees), *bounce* off the frame edges, stand still all along, *appear* after the first frame and *leave*
before the last one. Objects are drawn in a fixed depth order, so they *occlude* each other; every object's
mask is its exact visible region. Frames are rendered with numpy and written as JPEG with PIL.

Query grammar (``<ref>`` is the shortest unique description of another object, e.g. "red circle",
"small square"; ``<noun>`` is "shape" or "object"; every query is checked to have exactly one answer,
with a margin of at least :attr:`SynthConfig.margin_frames` frames or :attr:`SynthConfig.margin_px`
pixels between the answer and the runner-up)::

    referring  (type_id 0)
      the <size>? <colour>? <shape|object>               shortest description that is unique in the video
      all the <colour> objects | all the <shape>s        several targets: the union mask
    temporal   (type_id 1)
      the <noun> that appears after the <ref> leaves     first object to appear after <ref>'s last frame
      the object that stops moving first                 earliest stop
      the object that is still moving when the <ref> stops
      the object that appears last                       latest first appearance
    spatial    (type_id 1)
      the object nearest the <top-left|top-right|bottom-left|bottom-right> corner when the <ref> stops
      the object closest to the <ref> when the <ref> first appears
      the <leftmost|rightmost|highest|lowest> object in the <first|last> frame

Difficulty knobs (fields of :class:`SynthConfig`): video length (``frames``), frame size (``size``), number of
objects (``objects``), object speed, the probabilities of appearing late / leaving early / stopping /
turning / staying static, the chance of steering an object across another (occlusions), background noise,
JPEG quality, the query mix (weights of referring / temporal / spatial / multi-target queries) and the
turns of the reasoning traces (``turn_plan``: 1, 2 or 3 at random by ``turn_weights``, or adaptive: a closer
look only when the first user turn does not show the target's keyframe).

Outputs per split (:func:`generate_split`): the ReVOS layout (``JPEGImages``, ``meta_expressions.json``
with ``type_id``, ``mask_dict.json``, ``mask_dict_foreground.json``) or any other layout of
:mod:`videoseg_o3.data.writers`; for mask_dict layouts also ``vts_cot.json`` (SFT conversations,
:mod:`videoseg_o3.data.vtscot`) and ``rl_data.json`` (RL records). Deterministic per (seed, split, index);
splits never share a video (ids carry the split name and the random streams differ).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from videoseg_o3.data.writers import WRITE_LAYOUTS, DatasetWriter, ExpressionSpec, VideoAnnotation

__all__ = [
    "COLOURS",
    "SHAPES",
    "SPLITS",
    "SynthConfig",
    "SynthObject",
    "SynthQuery",
    "SynthVideo",
    "generate_split",
    "render_video",
]

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 175, 60),
    "blue": (45, 90, 230),
    "yellow": (235, 210, 40),
    "purple": (150, 60, 195),
    "orange": (245, 135, 25),
}
SIZES = ("small", "large")
SPLITS = ("train", "val", "test")
QUERY_KINDS = ("referring", "multi", "temporal", "spatial")
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


def _range_pair(value: tuple[int, int], name: str, low: int) -> None:
    if len(value) != 2 or value[0] > value[1] or value[0] < low:
        raise ValueError(f"Invalid {name} ({value}). Expected (min, max) with {low} <= min <= max.")


@dataclass
class SynthConfig:
    """Difficulty knobs of the synthetic task (see the module docstring for what each one changes)."""

    frames: tuple[int, int] = field(default=(16, 48), metadata={"help": "Min and max frames per video."})
    size: tuple[int, int] = field(default=(64, 160), metadata={"help": "Min and max frame height/width in pixels (drawn independently)."})
    objects: tuple[int, int] = field(default=(2, 4), metadata={"help": "Min and max objects per video."})
    speed: tuple[float, float] = field(default=(0.015, 0.04), metadata={"help": "Object speed range, in frame sizes per frame."})
    p_appear: float = field(default=0.35, metadata={"help": "Chance an object appears after the first frame."})
    p_leave: float = field(default=0.35, metadata={"help": "Chance an object leaves before the last frame."})
    p_stop: float = field(default=0.4, metadata={"help": "Chance a moving object stops for good mid-video."})
    p_turn: float = field(default=0.3, metadata={"help": "Chance a moving object turns by 90 degrees once."})
    p_static: float = field(default=0.15, metadata={"help": "Chance an object never moves."})
    p_cross: float = field(default=0.3, metadata={"help": "Chance an object is steered across another (occlusion)."})
    noise_std: float = field(default=4.0, metadata={"help": "Std of the static background noise, in 8-bit levels."})
    jpeg_quality: int = field(default=90, metadata={"help": "JPEG quality of the written frames (1-100)."})
    queries_per_video: int = field(default=3, metadata={"help": "Expressions drawn per video (fewer if not enough are unambiguous)."})
    query_weights: dict[str, float] = field(
        default_factory=lambda: {"referring": 1.0, "multi": 0.3, "temporal": 1.0, "spatial": 1.0},
        metadata={"help": "Relative weights of the query kinds: referring, multi, temporal, spatial."},
    )
    turn_weights: tuple[float, float, float] = field(default=(1.0, 1.0, 1.0), metadata={"help": "Relative weights of 1-, 2- and 3-turn traces (turn_plan 'random')."})
    turn_plan: str = field(default="random", metadata={"help": "Turns of a VTS-CoT trace: 'random' (by turn_weights, whatever the query) or "
                                                              "'adaptive' (look closer only when turn 0 does not show the keyframe)."})
    margin_frames: int = field(default=2, metadata={"help": "Frames between the answer and the runner-up of a temporal query."})
    margin_px: float = field(default=3.0, metadata={"help": "Pixels between the answer and the runner-up of a spatial query."})
    think_style: str = field(default="full", metadata={"help": "Think text of the VTS-CoT traces: full sentences or terse notes."})

    def __post_init__(self) -> None:
        self.frames = tuple(self.frames)  # type: ignore[assignment]
        self.size = tuple(self.size)  # type: ignore[assignment]
        self.objects = tuple(self.objects)  # type: ignore[assignment]
        self.speed = tuple(self.speed)  # type: ignore[assignment]
        _range_pair(self.frames, "frames", 4)
        _range_pair(self.size, "size", 32)
        _range_pair(self.objects, "objects", 1)
        if self.objects[1] > 12:
            raise ValueError(f"Invalid objects ({self.objects}). At most 12 objects fit the shape x colour x size vocabulary with unique queries; lower the max.")
        if not 0 < self.speed[0] <= self.speed[1] < 0.5:
            raise ValueError(f"Invalid speed ({self.speed}). Expected 0 < min <= max < 0.5 (frame sizes per frame).")
        for name in ("p_appear", "p_leave", "p_stop", "p_turn", "p_static", "p_cross"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Invalid {name} ({value}). Expected a probability in [0, 1].")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"Invalid jpeg_quality ({self.jpeg_quality}). Supported values are 1..100.")
        if self.queries_per_video < 1:
            raise ValueError(f"Invalid queries_per_video ({self.queries_per_video}). Expected >= 1.")
        unknown = set(self.query_weights) - set(QUERY_KINDS)
        if unknown or not any(v > 0 for v in self.query_weights.values()) or any(v < 0 for v in self.query_weights.values()):
            raise ValueError(f"Invalid query_weights ({self.query_weights}). Keys are {', '.join(QUERY_KINDS)}; weights >= 0, at least one > 0.")
        from videoseg_o3.data.vtscot import THINK_STYLES

        if self.think_style not in THINK_STYLES:
            raise ValueError(f"Invalid think_style ({self.think_style!r}). Supported values are {', '.join(THINK_STYLES)}.")
        from videoseg_o3.data.vtscot import TURN_PLANS

        if self.turn_plan not in TURN_PLANS:
            raise ValueError(f"Invalid turn_plan ({self.turn_plan!r}). Supported values are {', '.join(TURN_PLANS)}.")
        if len(self.turn_weights) != 3 or any(w < 0 for w in self.turn_weights) or sum(self.turn_weights) <= 0:
            raise ValueError(f"Invalid turn_weights ({self.turn_weights}). Expected three weights >= 0 for 1, 2, 3 turns, not all 0.")


# ------------------------------------------------------------------------------------ scene model


@dataclass
class SynthObject:
    """One object and its ground-truth trajectory and events."""

    object_id: int
    shape: str
    colour: str
    size: str
    radius: float
    depth: int
    """Drawing order: higher is drawn later (in front)."""
    centres: np.ndarray = field(repr=False)
    """``(T, 2)`` float (y, x) centre per frame (may lie outside the frame)."""
    moving: np.ndarray = field(repr=False)
    """``(T,)`` bool: the centre moved since the previous frame."""
    present_from: int = 0
    present_to: int = 0
    """Declared presence window (inclusive); visibility additionally depends on occlusion and frame edges."""
    stop_frame: int | None = None
    """First frame of standing still for good after moving, if it stops."""
    turn_frame: int | None = None
    bounce_frames: list[int] = field(default_factory=list)
    visible: np.ndarray | None = field(default=None, repr=False)
    """``(T, H, W)`` bool exact visible mask (after occlusion)."""

    def description(self, attrs: tuple[str, ...] = ("size", "colour", "shape")) -> str:
        words = [getattr(self, a) for a in ("size", "colour") if a in attrs]
        words.append(self.shape if "shape" in attrs else "object")
        return " ".join(words)

    @property
    def visible_frames(self) -> np.ndarray:
        assert self.visible is not None
        return np.flatnonzero(self.visible.any(axis=(1, 2)))

    def centroid(self, frame: int) -> tuple[float, float] | None:
        """(y, x) centroid of the visible mask at ``frame``, None when not visible."""
        assert self.visible is not None
        ys, xs = np.nonzero(self.visible[frame])
        if ys.size == 0:
            return None
        return float(ys.mean()), float(xs.mean())


@dataclass
class SynthQuery:
    """A query with its answer and the facts that justify it (used for the reasoning traces)."""

    text: str
    targets: list[int]
    kind: str
    """referring, multi, temporal or spatial."""
    facts: list[str]
    """True statements about the video that lead to the answer."""

    @property
    def expression_type(self) -> str:
        return "referring" if self.kind in ("referring", "multi") else "reasoning"


@dataclass
class SynthVideo:
    video_id: str
    frames: np.ndarray
    """``(T, H, W, 3)`` uint8."""
    objects: list[SynthObject]
    queries: list[SynthQuery]

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def frame_names(self) -> list[str]:
        return [f"{i:05d}" for i in range(self.num_frames)]

    def object(self, object_id: int) -> SynthObject:
        return next(o for o in self.objects if o.object_id == object_id)

    def target_masks(self, query: SynthQuery) -> np.ndarray:
        """``(T, H, W)`` bool union of the query's targets."""
        out = np.zeros(self.frames.shape[:3], dtype=bool)
        for obj_id in query.targets:
            out |= self.object(obj_id).visible  # type: ignore[arg-type]
        return out

    def to_annotation(self) -> VideoAnnotation:
        return VideoAnnotation(
            video_id=self.video_id,
            frame_names=self.frame_names,
            frames=self.frames,
            object_masks={o.object_id: o.visible for o in self.objects},  # type: ignore[misc]
            expressions=[
                ExpressionSpec(str(i), q.text, list(q.targets), q.expression_type) for i, q in enumerate(self.queries)
            ],
        )


def _shape_masks(shape: str, radius: float, centres: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(T, H, W)`` bool raster of a shape at each centre, evaluated at pixel centres."""
    yy = np.arange(height, dtype=np.float32)[None, :, None] + 0.5
    xx = np.arange(width, dtype=np.float32)[None, None, :] + 0.5
    dy = yy - centres[:, 0, None, None].astype(np.float32)
    dx = xx - centres[:, 1, None, None].astype(np.float32)
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    if shape == "square":
        side = radius * 0.85
        return (np.abs(dx) <= side) & (np.abs(dy) <= side)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= radius * 1.2
    if shape == "triangle":  # apex up, base below the centre
        top, base = -radius, radius * 0.7
        return (dy >= top) & (dy <= base) & (np.abs(dx) <= (dy - top) * (radius / (base - top)) * 1.1)
    raise ValueError(f"Invalid shape ({shape}). Supported values are {', '.join(SHAPES)}.")


def _trajectory(rng: np.random.Generator, cfg: SynthConfig, num_frames: int, height: int, width: int, radius: float, static: bool):
    """Centres (T, 2), moving (T,), stop frame, turn frame and bounce frames of one object."""
    lo = np.array([radius, radius])
    hi = np.array([height - radius, width - radius])
    pos = rng.uniform(lo, hi)
    centres = np.empty((num_frames, 2))
    moving = np.zeros(num_frames, dtype=bool)
    stop = turn = None
    bounces: list[int] = []
    if static:
        centres[:] = pos
        return centres, moving, None, None, bounces
    angle = rng.uniform(0, 2 * math.pi)
    speed = rng.uniform(*cfg.speed) * min(height, width)
    vel = np.array([math.sin(angle), math.cos(angle)]) * speed
    if rng.random() < cfg.p_stop:
        stop = int(rng.integers(num_frames // 4 + 1, max(num_frames // 4 + 2, 3 * num_frames // 4)))
    if rng.random() < cfg.p_turn:
        turn = int(rng.integers(2, max(3, num_frames - 2)))
        if stop is not None and turn >= stop:
            turn = None
    centres[0] = pos
    for t in range(1, num_frames):
        if stop is not None and t >= stop:
            centres[t] = pos
            continue
        if turn is not None and t == turn:
            vel = np.array([vel[1], -vel[0]]) * (1 if rng.random() < 0.5 else -1)
        pos = pos + vel
        bounced = False
        for axis in (0, 1):
            if pos[axis] < lo[axis] or pos[axis] > hi[axis]:
                pos[axis] = 2 * (lo[axis] if pos[axis] < lo[axis] else hi[axis]) - pos[axis]
                pos[axis] = min(max(pos[axis], lo[axis]), hi[axis])
                vel[axis] = -vel[axis]
                bounced = True
        if bounced:
            bounces.append(t)
        centres[t] = pos
        moving[t] = True
    return centres, moving, stop, turn, bounces


def _steer_across(rng: np.random.Generator, mover: SynthObject, other: SynthObject, num_frames: int, cfg: SynthConfig, size: float) -> None:
    """Replace ``mover``'s path by a straight line through ``other``'s position at mid-video (an occlusion)."""
    t_cross = num_frames // 2
    target = other.centres[t_cross]
    angle = rng.uniform(0, 2 * math.pi)
    speed = rng.uniform(*cfg.speed) * size
    vel = np.array([math.sin(angle), math.cos(angle)]) * speed
    steps = np.arange(num_frames)[:, None] - t_cross
    mover.centres = target[None, :] + steps * vel[None, :]
    mover.moving = np.ones(num_frames, dtype=bool)
    mover.moving[0] = False
    mover.stop_frame = None
    mover.turn_frame = None
    mover.bounce_frames = []


def _pick_attributes(rng: np.random.Generator, count: int) -> list[tuple[str, str, str]]:
    combos = [(s, c, z) for s in SHAPES for c in COLOURS for z in SIZES]
    chosen: list[tuple[str, str, str]] = []
    # Reuse a shape or colour now and then so that the shortest unique description needs several words.
    while len(chosen) < count:
        if chosen and rng.random() < 0.4:
            base = chosen[int(rng.integers(len(chosen)))]
            keep = int(rng.integers(3))
            candidates = [c for c in combos if c[keep] == base[keep] and c not in chosen]
        else:
            candidates = [c for c in combos if c not in chosen]
        chosen.append(candidates[int(rng.integers(len(candidates)))])
    return chosen


def _render(objects: list[SynthObject], rng: np.random.Generator, cfg: SynthConfig, num_frames: int, height: int, width: int) -> np.ndarray:
    base = rng.integers(50, 110, size=3).astype(np.float32)
    ramp = np.linspace(-12.0, 12.0, width, dtype=np.float32)[None, :, None]
    background = base[None, None, :] + ramp + rng.normal(0.0, cfg.noise_std, size=(height, width, 3)).astype(np.float32)
    background = np.clip(background, 0, 255).astype(np.uint8)
    frames = np.broadcast_to(background, (num_frames, height, width, 3)).copy()
    raw = {}
    for obj in objects:
        mask = _shape_masks(obj.shape, obj.radius, obj.centres, height, width)
        outside = np.ones(num_frames, dtype=bool)
        outside[obj.present_from : obj.present_to + 1] = False
        mask[outside] = False
        raw[obj.object_id] = mask
    covered = np.zeros((num_frames, height, width), dtype=bool)
    for obj in sorted(objects, key=lambda o: -o.depth):  # front to back
        obj.visible = raw[obj.object_id] & ~covered
        covered |= raw[obj.object_id]
    for obj in sorted(objects, key=lambda o: o.depth):  # back to front
        frames[raw[obj.object_id]] = COLOURS[obj.colour]
    return frames


# -------------------------------------------------------------------------------------- queries


def _unique_description(obj: SynthObject, objects: list[SynthObject]) -> str | None:
    options = [("shape",), ("colour",), ("colour", "shape"), ("size", "shape"), ("size", "colour"), ("size", "colour", "shape")]
    for attrs in options:
        text = obj.description(attrs)
        if sum(o.description(attrs) == text for o in objects) == 1:
            return text
    return None


def _first(obj: SynthObject) -> int:
    return int(obj.visible_frames[0])


def _last(obj: SynthObject) -> int:
    return int(obj.visible_frames[-1])


def _unique_min(values: dict[int, float], margin: float) -> int | None:
    """Key of the smallest value if it beats the runner-up by ``margin``."""
    if not values:
        return None
    ordered = sorted(values.items(), key=lambda kv: kv[1])
    if len(ordered) > 1 and ordered[1][1] - ordered[0][1] < margin:
        return None
    return ordered[0][0]


def _q_referring(video: SynthVideo, rng: np.random.Generator, cfg: SynthConfig) -> SynthQuery | None:
    obj = video.objects[int(rng.integers(len(video.objects)))]
    desc = _unique_description(obj, video.objects)
    if desc is None:
        return None
    article = "an" if desc[0] in "aeiou" else "a"
    facts = [f"Only one object is {article} {desc}: the {obj.description()}."]
    return SynthQuery(f"the {desc}", [obj.object_id], "referring", facts)


def _q_multi(video: SynthVideo, rng: np.random.Generator, cfg: SynthConfig) -> SynthQuery | None:
    options = []
    for attr in ("colour", "shape"):
        groups: dict[str, list[SynthObject]] = {}
        for obj in video.objects:
            groups.setdefault(getattr(obj, attr), []).append(obj)
        for value, members in groups.items():
            if 2 <= len(members) < len(video.objects):
                options.append((attr, value, members))
    if not options:
        return None
    attr, value, members = options[int(rng.integers(len(options)))]
    text = f"all the {value} objects" if attr == "colour" else f"all the {value}s"
    names = ", ".join(f"the {m.description()}" for m in members)
    facts = [f"There are {len(members)} {value} {'objects' if attr == 'colour' else 'shapes'}: {names}."]
    return SynthQuery(text, [m.object_id for m in members], "multi", facts)


def _stop_visible(obj: SynthObject) -> bool:
    return obj.stop_frame is not None and bool(obj.visible[obj.stop_frame].any())  # type: ignore[index]


def _q_temporal(video: SynthVideo, rng: np.random.Generator, cfg: SynthConfig) -> SynthQuery | None:
    objects = video.objects
    last_frame = video.num_frames - 1
    builders: list[Callable[[], SynthQuery | None]] = []

    def after_leave() -> SynthQuery | None:
        refs = [o for o in objects if _last(o) < last_frame and _unique_description(o, objects)]
        if not refs:
            return None
        ref = refs[int(rng.integers(len(refs)))]
        cands = {o.object_id: _first(o) for o in objects if o is not ref and _first(o) > _last(ref)}
        target = _unique_min(cands, cfg.margin_frames)
        if target is None:
            return None
        obj = video.object(target)
        noun = "shape" if rng.random() < 0.5 else "object"
        facts = [
            f"The {ref.description()} is last visible at frame {_last(ref)}.",
            f"The {obj.description()} first appears at frame {_first(obj)}, the first object to appear after that.",
        ]
        return SynthQuery(f"the {noun} that appears after the {_unique_description(ref, objects)} leaves", [target], "temporal", facts)

    def stops_first() -> SynthQuery | None:
        cands = {o.object_id: o.stop_frame for o in objects if _stop_visible(o)}
        target = _unique_min(cands, cfg.margin_frames)  # type: ignore[arg-type]
        if target is None:
            return None
        obj = video.object(target)
        facts = [f"The {obj.description()} stops moving at frame {obj.stop_frame}, before any other object stops."]
        return SynthQuery("the object that stops moving first", [target], "temporal", facts)

    def moving_when_stops() -> SynthQuery | None:
        refs = [o for o in objects if _stop_visible(o) and _unique_description(o, objects)]
        if not refs:
            return None
        ref = refs[int(rng.integers(len(refs)))]
        f = ref.stop_frame
        movers = [o for o in objects if o is not ref and o.visible[f].any() and o.moving[f]]  # type: ignore[index]
        still = [o for o in objects if o is not ref and o.visible[f].any() and not o.moving[f]]  # type: ignore[index]
        if len(movers) != 1:
            return None
        obj = movers[0]
        facts = [f"The {ref.description()} stops at frame {f}.", f"At frame {f} the {obj.description()} is still moving"]
        facts[-1] += "; every other visible object stands still." if still else "."
        return SynthQuery(f"the object that is still moving when the {_unique_description(ref, objects)} stops", [obj.object_id], "temporal", facts)

    def appears_last() -> SynthQuery | None:
        cands = {o.object_id: -_first(o) for o in objects if _first(o) > 0}
        target = _unique_min(cands, cfg.margin_frames)
        if target is None or len(cands) < 1:
            return None
        obj = video.object(target)
        facts = [f"The {obj.description()} first appears at frame {_first(obj)}, after every other object has appeared."]
        return SynthQuery("the object that appears last", [target], "temporal", facts)

    builders = [after_leave, stops_first, moving_when_stops, appears_last]
    for index in rng.permutation(len(builders)):
        query = builders[int(index)]()
        if query is not None:
            return query
    return None


def _q_spatial(video: SynthVideo, rng: np.random.Generator, cfg: SynthConfig) -> SynthQuery | None:
    objects = video.objects
    height, width = video.frames.shape[1:3]

    def nearest_corner() -> SynthQuery | None:
        refs = [o for o in objects if _stop_visible(o) and _unique_description(o, objects)]
        if not refs:
            return None
        ref = refs[int(rng.integers(len(refs)))]
        f = int(ref.stop_frame)  # type: ignore[arg-type]
        corner = CORNERS[int(rng.integers(len(CORNERS)))]
        cy = 0.0 if corner.startswith("top") else float(height)
        cx = 0.0 if corner.endswith("left") else float(width)
        dists = {}
        for o in objects:
            c = o.centroid(f) if o is not ref else None
            if c is not None:
                dists[o.object_id] = math.hypot(c[0] - cy, c[1] - cx)
        target = _unique_min(dists, cfg.margin_px)
        if target is None:
            return None
        obj = video.object(target)
        facts = [
            f"The {ref.description()} stops at frame {f}.",
            f"At frame {f} the {obj.description()} is {dists[target]:.0f} px from the {corner} corner, closer than any other object.",
        ]
        return SynthQuery(f"the object nearest the {corner} corner when the {_unique_description(ref, objects)} stops", [target], "spatial", facts)

    def closest_to_ref() -> SynthQuery | None:
        refs = [o for o in objects if _unique_description(o, objects)]
        ref = refs[int(rng.integers(len(refs)))] if refs else None
        if ref is None:
            return None
        f = _first(ref)
        rc = ref.centroid(f)
        dists = {}
        for o in objects:
            c = o.centroid(f) if o is not ref else None
            if c is not None and rc is not None:
                dists[o.object_id] = math.hypot(c[0] - rc[0], c[1] - rc[1])
        target = _unique_min(dists, cfg.margin_px)
        if target is None:
            return None
        obj = video.object(target)
        desc = _unique_description(ref, objects)
        facts = [
            f"The {ref.description()} first appears at frame {f}.",
            f"At that frame the {obj.description()} is {dists[target]:.0f} px from it, closer than any other object.",
        ]
        return SynthQuery(f"the object closest to the {desc} when the {desc} first appears", [target], "spatial", facts)

    def extreme() -> SynthQuery | None:
        which = ("first", "last")[int(rng.integers(2))]
        f = 0 if which == "first" else video.num_frames - 1
        side = ("leftmost", "rightmost", "highest", "lowest")[int(rng.integers(4))]
        axis, sign = {"leftmost": (1, 1), "rightmost": (1, -1), "highest": (0, 1), "lowest": (0, -1)}[side]
        values = {}
        for o in objects:
            c = o.centroid(f)
            if c is not None:
                values[o.object_id] = sign * c[axis]
        if len(values) < 2:
            return None
        target = _unique_min(values, cfg.margin_px)
        if target is None:
            return None
        obj = video.object(target)
        facts = [f"In frame {f} the {obj.description()} is the {side} of the {len(values)} visible objects."]
        return SynthQuery(f"the {side} object in the {which} frame", [target], "spatial", facts)

    builders = [nearest_corner, closest_to_ref, extreme]
    for index in rng.permutation(len(builders)):
        query = builders[int(index)]()
        if query is not None:
            return query
    return None


_QUERY_BUILDERS = {"referring": _q_referring, "multi": _q_multi, "temporal": _q_temporal, "spatial": _q_spatial}


def _draw_queries(video: SynthVideo, rng: np.random.Generator, cfg: SynthConfig) -> list[SynthQuery]:
    kinds = [k for k in QUERY_KINDS if cfg.query_weights.get(k, 0.0) > 0]
    weights = np.array([cfg.query_weights[k] for k in kinds], dtype=np.float64)
    queries: list[SynthQuery] = []
    seen: set[str] = set()
    for _ in range(cfg.queries_per_video * 4):
        if len(queries) >= cfg.queries_per_video:
            break
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        query = _QUERY_BUILDERS[kind](video, rng, cfg)
        if query is not None and query.text not in seen:
            seen.add(query.text)
            queries.append(query)
    if not queries:  # every video keeps at least one expression: the full description of its first object
        obj = video.objects[0]
        queries.append(SynthQuery(f"the {obj.description()}", [obj.object_id], "referring", [f"The {obj.description()} is in the video."]))
    return queries


# ---------------------------------------------------------------------------------------- video


def render_video(rng: np.random.Generator, cfg: SynthConfig, video_id: str) -> SynthVideo:
    """Draw one video: scene, trajectories, frames, exact masks and queries (deterministic in ``rng``)."""
    num_frames = int(rng.integers(cfg.frames[0], cfg.frames[1] + 1))
    height = int(rng.integers(cfg.size[0], cfg.size[1] + 1))
    width = int(rng.integers(cfg.size[0], cfg.size[1] + 1))
    short = min(height, width)
    count = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
    depths = rng.permutation(count)
    objects = []
    for index, (shape, colour, size) in enumerate(_pick_attributes(rng, count)):
        radius = short * (0.07 if size == "small" else 0.13) + 1.0
        static = rng.random() < cfg.p_static
        centres, moving, stop, turn, bounces = _trajectory(rng, cfg, num_frames, height, width, radius, static)
        present_from = int(rng.integers(1, num_frames // 2)) if rng.random() < cfg.p_appear else 0
        present_to = num_frames - 1
        if rng.random() < cfg.p_leave:
            present_to = int(rng.integers(max(present_from + 2, num_frames // 2), num_frames - 1))
        objects.append(
            SynthObject(index + 1, shape, colour, size, radius, int(depths[index]), centres, moving, present_from, present_to, stop, turn, bounces)
        )
    if count >= 2 and rng.random() < cfg.p_cross:
        mover, other = (objects[int(i)] for i in rng.choice(count, size=2, replace=False))
        _steer_across(rng, mover, other, num_frames, cfg, short)
    frames = _render(objects, rng, cfg, num_frames, height, width)
    # An object never visible (hidden all along, or steered off-frame) is not part of the video.
    objects = [o for o in objects if o.visible is not None and o.visible.any()]
    video = SynthVideo(video_id, frames, objects, [])
    video.queries = _draw_queries(video, rng, cfg)
    return video


def video_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of video ``index`` of ``split``: independent across splits and videos."""
    if split not in SPLITS:
        raise ValueError(f"Invalid split ({split}). Supported values are {', '.join(SPLITS)}.")
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLITS.index(split), int(index)]))


def generate_split(
    out_dir: str | Path,
    num_videos: int,
    *,
    seed: int = 0,
    split: str = "train",
    layout: str = "revos",
    cfg: SynthConfig | None = None,
    records: bool = True,
    progress: bool = False,
    protocol: Any = None,
) -> dict[str, Any]:
    """Render ``num_videos`` videos of ``split`` into ``out_dir`` in ``layout``.

    Args:
        out_dir: the split folder to write (created).
        layout: one of :data:`videoseg_o3.data.writers.WRITE_LAYOUTS`.
        records: also write ``vts_cot.json`` and ``rl_data.json`` (mask_dict layouts only).
        protocol: the ``ProtocolConfig`` the VTS-CoT records are written for (its wording and turn-0
            high-resolution frames; default: the eval preset).
    Returns:
        A summary (counts and the config) that is also written to ``out_dir/synth_info.json``.
    """
    from videoseg_o3.data import vtscot

    cfg = cfg or SynthConfig()
    if layout not in WRITE_LAYOUTS:
        raise ValueError(f"Invalid layout ({layout}). Supported values are {', '.join(WRITE_LAYOUTS)}.")
    if num_videos < 1:
        raise ValueError(f"Invalid number of videos ({num_videos}). Expected >= 1.")
    out = Path(out_dir)
    writer = DatasetWriter(out, layout, jpeg_quality=cfg.jpeg_quality)
    sft: list[dict] = []
    rl: list[list[dict]] = []
    counts = {"videos": 0, "expressions": 0, "referring": 0, "reasoning": 0, "frames": 0}
    iterator: Any = range(num_videos)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc=f"synth {split}", unit="video")
    for index in iterator:
        rng = video_rng(seed, split, index)
        video = render_video(rng, cfg, f"{split}_{index:05d}")
        writer.add(video.to_annotation())
        counts["videos"] += 1
        counts["frames"] += video.num_frames
        for exp_id, query in enumerate(video.queries):
            counts["expressions"] += 1
            counts[query.expression_type] += 1
            if records and writer.uses_mask_dict:
                anno_ids = [writer.anno_ids[(video.video_id, t)] for t in query.targets]
                sft.append(vtscot.build_sft_record(video, query, str(exp_id), anno_ids, rng, cfg.turn_weights, protocol,
                                                     cfg.think_style, cfg.turn_plan))
                rl.append([vtscot.build_rl_record(video, query, anno_ids, str(exp_id))])
    writer.close()
    if records and writer.uses_mask_dict:
        (out / "vts_cot.json").write_text(json.dumps(sft))
        (out / "rl_data.json").write_text(json.dumps(rl))
    info = {"split": split, "seed": seed, "layout": layout, **counts, "config": _jsonable(asdict(cfg))}
    (out / "synth_info.json").write_text(json.dumps(info, indent=2))
    return info


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
