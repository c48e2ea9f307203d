"""Every frame budget, resolution and turn limit of the protocol in one dataclass (docs/architecture.md#the-turn-protocol)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FRAME_SIZING", "PRESETS", "PROMPT_STYLES", "TEMPLATE_VARIANTS", "VTG_JSON_MODES", "ProtocolConfig"]

PROMPT_STYLES = ("videoseg-o3", "default")
TEMPLATE_VARIANTS = ("eval", "rl")
PRESETS = ("eval", "rl")
# How a policy frame's size is chosen before the VLM processor rounds it to its patch grid:
# "pixel_limit": the released aspect-preserving rule (FrameSpec.target_size) only;
# "pixel_limit+qwen_vl_utils": that, then qwen-vl-utils' factor-28 rule (released evaluation, every frame);
# "qwen_vl_utils": qwen-vl-utils' factor-28 rule with the frame's own pixel bounds (released RL, first turn).
FRAME_SIZING = ("pixel_limit", "pixel_limit+qwen_vl_utils", "qwen_vl_utils")
# How the JSON inside <VTG> is read: "strict" json.loads (the released evaluation), "tolerant" also
# single quotes and loose "key: number" pairs.
VTG_JSON_MODES = ("strict", "tolerant")
# One Qwen-VL visual token covers a 28 x 28 pixel patch after the 2 x 2 merge; budgets are counted in
# these units in the released code, so the defaults are written that way.
_PATCH = 28 * 28


@dataclass
class ProtocolConfig:
    """Frame budgets, pixel caps, turn limit and prompt wording of one episode.

    The defaults are the released evaluation protocol (``ProtocolConfig.preset("eval")``);
    ``ProtocolConfig.preset("rl")`` gives the smaller budgets of the GRPO rollouts. Pixel caps are
    total pixels per image (width x height) after an aspect-preserving resize.

    ``turn0_sizing``, ``followup_sizing`` and ``vtg_json`` left at None are resolved from ``prompt_style``
    and ``template_variant`` when the config is built (and stored resolved, so ``to_dict`` says what is
    used); ``dataclasses.replace(cfg, prompt_style=...)`` keeps the resolved values: set them too.
    """

    turn0_temporal_frames: int = field(
        default=20,
        metadata={"help": "Low-resolution frames spread evenly over the whole video in the first user turn "
                  "(all frames when the video is shorter). Eval 20, RL 10."},
    )
    turn0_temporal_max_pixels: int = field(
        default=32 * _PATCH,
        metadata={"help": "Pixel cap of each first-turn low-resolution frame (32*28*28 = 25,088)."},
    )
    turn0_spatial_frames: int = field(
        default=8,
        metadata={"help": "High-resolution frames spread evenly over the video in the first user turn. Eval 8, RL 5."},
    )
    turn0_spatial_max_pixels: int = field(
        default=256 * _PATCH,
        metadata={"help": "Pixel cap of each first-turn high-resolution frame. Eval 256*28*28, RL 128*28*28."},
    )
    followup_temporal_frames: int = field(
        default=5,
        metadata={"help": "Most low-resolution frames shown from a selected interval (every frame of a shorter "
                  "interval, else this many spread evenly, both ends included)."},
    )
    followup_temporal_max_pixels: int = field(
        default=32 * _PATCH,
        metadata={"help": "Pixel cap of each follow-up low-resolution frame (32*28*28)."},
    )
    keyframe_max_pixels: int = field(
        default=512 * _PATCH,
        metadata={"help": "Pixel cap of the selected keyframe, shown at high resolution. Eval 512*28*28, RL 256*28*28."},
    )
    min_pixels: int = field(
        default=4 * _PATCH,
        metadata={"help": "Smallest pixel count any frame is resized up to (4*28*28 = 3,136)."},
    )
    max_turns: int = field(
        default=3,
        metadata={"help": "Most assistant turns per episode; the last one may still be a <select>, which then ends it."},
    )
    prompt_style: str = field(
        default="videoseg-o3",
        metadata={"help": "Wording of the system prompt and user turns: 'videoseg-o3' reproduces the released "
                  "checkpoints' texts exactly (use it with those checkpoints); 'default' is this project's own "
                  "clearer wording with a frame label in front of every image. Tags are identical in both."},
    )
    template_variant: str = field(
        default="eval",
        metadata={"help": "Which released code path prompt_style='videoseg-o3' copies: 'eval' (evaluation script) or "
                  "'rl' (GRPO rollouts: question wrapped in newlines, follow-up quotes the bare query). "
                  "Ignored by prompt_style='default'."},
    )
    turn0_show_all_margin: int = field(
        default=0,
        metadata={"help": "The first turn shows every frame of a video of N frames when N <= count + this margin "
                  "(count = turn0_temporal_frames or turn0_spatial_frames), else count frames spread evenly. "
                  "0 for the released evaluation (N <= count); 1 for the released RL rollouts, which test "
                  "N > count + 1 before sampling."},
    )
    turn0_sizing: str | None = field(
        default=None,
        metadata={"help": f"Size rule of first-turn frames, one of {', '.join(FRAME_SIZING)}. None picks the "
                  "released one: 'pixel_limit+qwen_vl_utils' (eval) or 'qwen_vl_utils' (rl) with "
                  "prompt_style='videoseg-o3', 'pixel_limit' with prompt_style='default'."},
    )
    followup_sizing: str | None = field(
        default=None,
        metadata={"help": f"Size rule of frames shown after a <select>, one of {', '.join(FRAME_SIZING)}. None "
                  "picks the released one: 'pixel_limit+qwen_vl_utils' (eval) or 'pixel_limit' (rl) with "
                  "prompt_style='videoseg-o3', 'pixel_limit' with prompt_style='default'."},
    )
    vtg_json: str | None = field(
        default=None,
        metadata={"help": "How the JSON inside <VTG> is read: 'strict' (json.loads; anything else makes a "
                  "<select> unusable and ends the episode, as in the released evaluation) or 'tolerant' "
                  "(also single quotes and loose 'key: number' pairs). None: strict with "
                  "prompt_style='videoseg-o3', tolerant with prompt_style='default'."},
    )
    select_requires_vtg: bool = field(
        default=False,
        metadata={"help": "A <select> counts only with <VTG>{...}</VTG> inside (the released RL rollouts). False "
                  "also reads <select>{...}</select> as the released evaluation and system prompt do."},
    )

    def __post_init__(self) -> None:
        if self.prompt_style not in PROMPT_STYLES:
            raise ValueError(
                f"Invalid prompt_style ({self.prompt_style}). Supported values are {', '.join(PROMPT_STYLES)}."
            )
        if self.template_variant not in TEMPLATE_VARIANTS:
            raise ValueError(
                f"Invalid template_variant ({self.template_variant}). Supported values are {', '.join(TEMPLATE_VARIANTS)}."
            )
        released = self.prompt_style == "videoseg-o3"
        if self.turn0_sizing is None:
            self.turn0_sizing = "pixel_limit" if not released else (
                "qwen_vl_utils" if self.template_variant == "rl" else "pixel_limit+qwen_vl_utils")
        if self.followup_sizing is None:
            self.followup_sizing = "pixel_limit" if not released or self.template_variant == "rl" \
                else "pixel_limit+qwen_vl_utils"
        if self.vtg_json is None:
            self.vtg_json = "strict" if released else "tolerant"
        for name in ("turn0_sizing", "followup_sizing"):
            if getattr(self, name) not in FRAME_SIZING:
                raise ValueError(f"Invalid {name} ({getattr(self, name)}). Supported values are {', '.join(FRAME_SIZING)}.")
        if self.vtg_json not in VTG_JSON_MODES:
            raise ValueError(f"Invalid vtg_json ({self.vtg_json}). Supported values are {', '.join(VTG_JSON_MODES)}.")
        if not isinstance(self.select_requires_vtg, bool):
            raise ValueError(f"Invalid select_requires_vtg ({self.select_requires_vtg!r}). Supported values are true, false.")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int) and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"Invalid {f.name} ({value!r}). It must be an int; set it to a whole number.")
        minimums = {
            "turn0_show_all_margin": 0,
            "turn0_temporal_frames": 0,
            "turn0_spatial_frames": 0,
            "followup_temporal_frames": 1,
            "max_turns": 1,
            "min_pixels": 1,
        }
        for name, low in minimums.items():
            if getattr(self, name) < low:
                raise ValueError(f"Invalid {name} ({getattr(self, name)}). Set it to an int >= {low}.")
        if self.turn0_temporal_frames + self.turn0_spatial_frames == 0:
            raise ValueError(
                "Invalid frame budget: turn0_temporal_frames and turn0_spatial_frames are both 0, so the first turn "
                "would show no frame. Set at least one of them to 1 or more."
            )
        for name in ("turn0_temporal_max_pixels", "turn0_spatial_max_pixels", "followup_temporal_max_pixels",
                     "keyframe_max_pixels"):
            if getattr(self, name) < self.min_pixels:
                raise ValueError(
                    f"Invalid {name} ({getattr(self, name)}): it is below min_pixels ({self.min_pixels}). "
                    f"Raise {name} or lower min_pixels."
                )

    @classmethod
    def preset(cls, name: str) -> ProtocolConfig:
        """The released budgets: ``"eval"`` (evaluation, 20 + 8 frames) or ``"rl"`` (GRPO rollouts, 10 + 5).

        ``"rl"`` also copies the rollouts' other rules: every frame shown at turn 0 when N <= count + 1,
        turn-0 frames sized by qwen-vl-utils' factor-28 rule, and a ``<select>`` needs ``<VTG>`` inside.
        """
        if name == "eval":
            return cls()
        if name == "rl":
            return cls(
                turn0_temporal_frames=10,
                turn0_spatial_frames=5,
                turn0_spatial_max_pixels=128 * _PATCH,
                keyframe_max_pixels=256 * _PATCH,
                template_variant="rl",
                turn0_show_all_margin=1,
                select_requires_vtg=True,
            )
        raise ValueError(f"Invalid preset ({name}). Supported values are {', '.join(PRESETS)}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain field values (what a checkpoint's ``videoseg_o3.json`` stores under ``"protocol"``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ProtocolConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo must not pass silently)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"Invalid ProtocolConfig keys ({', '.join(unknown)}). Supported keys are {', '.join(sorted(known))}."
            )
        return cls(**values)
