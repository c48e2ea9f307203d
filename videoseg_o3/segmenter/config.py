"""The segmenter's configuration: which SAM2, at which input size, with which weights.

One dataclass, TRL style: every field carries help text, and ``__post_init__`` rejects a bad value with a
message that says how to fix it. The same fields are written to ``segmenter.json`` by
:meth:`videoseg_o3.segmenter.Sam2Segmenter.save_pretrained` and to the ``"segmenter"`` entry of a
checkpoint's ``videoseg_o3.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# sam2 1.1.0 ships these configs; the name picks both the yaml and the family folder it lives in.
SAM2_CONFIG_FILES: dict[str, str] = {
    "sam2_hiera_t": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_hiera_s": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_hiera_b+": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_hiera_l": "configs/sam2/sam2_hiera_l.yaml",
    "sam2.1_hiera_t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_s": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_l": "configs/sam2.1/sam2.1_hiera_l.yaml",
}

# Hiera downsamples by 32 overall (patch stride 4, three 2x poolings); other sizes misalign its windows.
IMAGE_SIZE_MULTIPLE = 32
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")
PREPROCESSING = ("fast", "reference")


@dataclass
class SegmenterConfig:
    """How to build the SAM2 segmenter.

    The defaults are the real model (SAM2 Hiera-L at 1024 px, the released VideoSEG-O3 choice). Tests use
    ``SegmenterConfig(model_config="sam2_hiera_t", image_size=256)``.
    """

    model_config: str = field(
        default="sam2_hiera_l",
        metadata={"help": f"sam2 package config name, one of: {', '.join(SAM2_CONFIG_FILES)}."},
    )
    image_size: int = field(
        default=1024,
        metadata={"help": "Square input size in pixels that frames are resized to (multiple of 32). The "
                          "released checkpoints use 1024; tests use 256 with the tiny Hiera."},
    )
    checkpoint: str | None = field(
        default=None,
        metadata={"help": "Local SAM2 weights: a sam2 release .pt (weights under 'model') or a .safetensors "
                          "state dict. None keeps the random initialisation."},
    )
    num_maskmem: int = field(
        default=7,
        metadata={"help": "Memory slots used during propagation (1 conditioning frame + num_maskmem - 1 "
                          "previous frames). Changes a parameter shape: keep 7 for the released weights."},
    )
    autocast_bf16: bool = field(
        default=False,
        metadata={"help": "Run SAM2 under bf16 autocast. About 2x faster on GPUs and on CPUs with native "
                          "bf16, slower on other CPUs. The released VideoSEG-O3 model runs SAM2 in bf16."},
    )
    preprocessing: str = field(
        default="fast",
        metadata={"help": "How frames are resized and normalised for SAM2. 'fast': the project's fused frame "
                          "preparation (antialiased bilinear, on the frames' device). 'reference': exactly the "
                          "released VideoSEG-O3 code's steps (PIL bicubic resize on the CPU, bf16-rounded "
                          "ImageNet statistics, bf16 pixels when autocast_bf16 is set); the default for "
                          "released checkpoints (SegmenterConfig.released())."},
    )
    gate_objects: bool = field(
        default=False,
        metadata={"help": "Blank a frame's mask where SAM2's object-score logit is <= 0, as stock sam2 does. "
                          "False (default) is the released VideoSEG-O3 model's behaviour: its code removes "
                          "that gating everywhere (the head is never trained on [SEG] prompts)."},
    )
    encode_chunk_size: int = field(
        default=16,
        metadata={"help": "Frames prepared and run through the image encoder at a time. Bounds memory on "
                          "long videos: only one chunk of frames and features is held at once."},
    )
    hydra_overrides: list[str] = field(
        default_factory=list,
        metadata={"help": "Extra hydra overrides for sam2's config, e.g. "
                          "['++model.memory_temporal_stride_for_eval=2']."},
    )

    def __post_init__(self) -> None:
        if self.model_config not in SAM2_CONFIG_FILES:
            raise ValueError(
                f"Invalid model_config ({self.model_config}). Supported values are {', '.join(SAM2_CONFIG_FILES)}."
            )
        if (not isinstance(self.image_size, int) or isinstance(self.image_size, bool) or self.image_size <= 0
                or self.image_size % IMAGE_SIZE_MULTIPLE):
            raise ValueError(
                f"Invalid image_size ({self.image_size}). Use a positive multiple of {IMAGE_SIZE_MULTIPLE}: "
                "1024 for the released SAM2 weights, 256 for quick tests."
            )
        if self.checkpoint is not None:
            self.checkpoint = str(self.checkpoint)
            if not self.checkpoint.endswith(CHECKPOINT_SUFFIXES):
                raise ValueError(
                    f"Invalid checkpoint ({self.checkpoint}). Supported file types are "
                    f"{', '.join(CHECKPOINT_SUFFIXES)}; set checkpoint=None for random weights."
                )
        if not isinstance(self.num_maskmem, int) or isinstance(self.num_maskmem, bool) or self.num_maskmem < 1:
            raise ValueError(
                f"Invalid num_maskmem ({self.num_maskmem}). Use an integer >= 1 (7 for the released weights)."
            )
        if (not isinstance(self.encode_chunk_size, int) or isinstance(self.encode_chunk_size, bool)
                or self.encode_chunk_size < 1):
            raise ValueError(
                f"Invalid encode_chunk_size ({self.encode_chunk_size}). Use an integer >= 1 (16 is a good "
                "default; lower it if propagation runs out of memory)."
            )
        if self.preprocessing not in PREPROCESSING:
            raise ValueError(
                f"Invalid preprocessing ({self.preprocessing}). Supported values are {', '.join(PREPROCESSING)}."
            )
        for name in ("autocast_bf16", "gate_objects"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"Invalid {name} ({getattr(self, name)}). Supported values are true, false.")
        if isinstance(self.hydra_overrides, str) or not all(isinstance(o, str) for o in self.hydra_overrides):
            raise ValueError(
                f"Invalid hydra_overrides ({self.hydra_overrides!r}). Use a list of strings such as "
                "['++model.memory_temporal_stride_for_eval=2']."
            )
        self.hydra_overrides = list(self.hydra_overrides)

    @classmethod
    def released(cls, **overrides: Any) -> "SegmenterConfig":
        """The released VideoSEG-O3 SAM2 exactly: Hiera-L at 1024 px, 7 memory slots, the reference frame
        preprocessing and bf16 autocast. ``overrides`` replace single fields (e.g. ``checkpoint``)."""
        values: dict[str, Any] = dict(model_config="sam2_hiera_l", image_size=1024, num_maskmem=7,
                                      preprocessing="reference", autocast_bf16=True)
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields (the layout of ``segmenter.json``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SegmenterConfig":
        """Build from :meth:`to_dict` output; unknown keys are an error (a typo must not pass silently)."""
        if not isinstance(data, dict):
            raise ValueError(f"Invalid segmenter config ({type(data).__name__}). Expected a JSON object.")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"Invalid segmenter config keys ({', '.join(unknown)}). Supported keys are {', '.join(sorted(names))}."
            )
        return cls(**data)
