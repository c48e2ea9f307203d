"""The checkpoint directory: one folder a user points every command at.

Layout::

    CKPT/
      videoseg_o3.json   {"format_version": 1,
                          "policy": {"family": "qwen3_vl" | "qwen2_5_vl"},
                          "segmenter": SegmenterConfig fields,
                          "protocol": ProtocolConfig fields,
                          "generation": GenerationConfig fields}
      policy/            SegPolicy.save_pretrained (HF config, model.safetensors, tokenizer/processor, projector.safetensors)
      segmenter/         Sam2Segmenter.save_pretrained (segmenter.json, model.safetensors)

Writes are atomic: everything goes to a temporary sibling directory that is renamed into place at
the end, so an interrupted write never leaves a directory that looks like a checkpoint.
:func:`load_checkpoint` also accepts a released VideoSEG-O3 Hugging Face directory (no
``videoseg_o3.json``, a Qwen-VL ``config.json`` with ``text_hidden_fcs``/SAM2 weights) and loads it
with the released protocol (eval preset, released prompts).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 1
CONFIG_FILE = "videoseg_o3.json"
POLICY_DIR = "policy"
SEGMENTER_DIR = "segmenter"


@dataclass
class CheckpointConfig:
    """The contents of ``videoseg_o3.json``."""

    family: str = field(metadata={"help": "Policy family: qwen3_vl or qwen2_5_vl."})
    segmenter: Any = field(metadata={"help": "A videoseg_o3.segmenter.SegmenterConfig."})
    protocol: Any = field(metadata={"help": "A videoseg_o3.protocol.ProtocolConfig."})
    generation: Any = field(metadata={"help": "A videoseg_o3.agent.GenerationConfig (the default decoding)."})

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "format_version": FORMAT_VERSION,
            "policy": {"family": self.family},
            "segmenter": {**self.segmenter.to_dict(), "checkpoint": None},
            "protocol": self.protocol.to_dict(),
            "generation": asdict(self.generation),
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any], *, source: str = CONFIG_FILE) -> "CheckpointConfig":
        from videoseg_o3.agent.generation import GenerationConfig
        from videoseg_o3.policy.tokenizer import check_family
        from videoseg_o3.protocol import ProtocolConfig
        from videoseg_o3.segmenter import SegmenterConfig

        if not isinstance(record, dict):
            raise ValueError(f"Invalid {source}: expected a JSON object.")
        version = record.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"Invalid format_version ({version}) in {source}. Supported values are {FORMAT_VERSION}.")
        for key in ("policy", "segmenter", "protocol"):
            if not isinstance(record.get(key), dict):
                raise ValueError(f"Invalid {source}: the '{key}' entry is missing or not an object.")
        family = check_family(str(record["policy"].get("family")))
        generation = record.get("generation") or {}
        if not isinstance(generation, dict):
            raise ValueError(f"Invalid {source}: the 'generation' entry is not an object.")
        known = set(GenerationConfig.__dataclass_fields__)
        unknown = sorted(set(generation) - known)
        if unknown:
            raise ValueError(f"Invalid generation keys ({', '.join(unknown)}) in {source}. Supported keys are "
                             f"{', '.join(sorted(known))}.")
        return cls(
            family=family,
            segmenter=SegmenterConfig.from_dict(dict(record["segmenter"])),
            protocol=ProtocolConfig.from_dict(dict(record["protocol"])),
            generation=GenerationConfig(**generation),
        )


def is_released_checkpoint(path: str | Path) -> bool:
    """True for a released VideoSEG-O3 HF directory (a top-level config.json and no videoseg_o3.json)."""
    path = Path(path)
    return not (path / CONFIG_FILE).is_file() and (path / "config.json").is_file()


def read_checkpoint_config(path: str | Path) -> CheckpointConfig:
    """Read ``videoseg_o3.json`` of a checkpoint directory (released directories get the released defaults)."""
    from videoseg_o3.agent.generation import GenerationConfig
    from videoseg_o3.protocol import ProtocolConfig
    from videoseg_o3.segmenter import SegmenterConfig

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"Checkpoint directory not found: {path}. Create one with `videoseg-o3 init-tiny {path}`.")
    if is_released_checkpoint(path):
        record = json.loads((path / "config.json").read_text())
        vision = record.get("vision_config") or {}
        family = "qwen3_vl" if ("deepstack_visual_indexes" in vision or "qwen3" in str(record.get("model_type", ""))) \
            else "qwen2_5_vl"
        # The released model exactly: reference SAM2 preprocessing and bf16, the released prompts and budgets.
        return CheckpointConfig(family=family, segmenter=SegmenterConfig.released(),
                                protocol=ProtocolConfig.preset("eval"), generation=GenerationConfig())
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        raise FileNotFoundError(
            f"Not a videoseg_o3 checkpoint (missing {CONFIG_FILE}): {path}. Expected {CONFIG_FILE}, {POLICY_DIR}/ and "
            f"{SEGMENTER_DIR}/, or a released VideoSEG-O3 Hugging Face directory."
        )
    try:
        record = json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"Invalid {config_file}: not JSON ({err}).") from err
    return CheckpointConfig.from_dict(record, source=str(config_file))


def load_checkpoint(
    path: str | Path, *, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> tuple[Any, Any, Any]:
    """Load ``(policy, segmenter, protocol_config)`` from a checkpoint directory.

    Args:
        path: a directory written by :func:`save_checkpoint` (e.g. by ``videoseg-o3 init-tiny``) or a
            released VideoSEG-O3 Hugging Face directory.
        device: where to put both models (default: the default device).
        dtype: the policy's dtype (default: as saved).
    Raises:
        FileNotFoundError: the directory or one of its parts is missing (the message names it).
    """
    from videoseg_o3.policy import SegPolicy
    from videoseg_o3.policy.released import load_released_checkpoint
    from videoseg_o3.segmenter import Sam2Segmenter

    config = read_checkpoint_config(path)
    path = Path(path)
    if is_released_checkpoint(path):
        policy, segmenter = load_released_checkpoint(path, family=config.family, segmenter_config=config.segmenter,
                                                     device=device, dtype=dtype)
        return policy, segmenter, config.protocol
    for sub in (POLICY_DIR, SEGMENTER_DIR):
        if not (path / sub).is_dir():
            raise FileNotFoundError(f"Checkpoint {path} has no {sub}/ directory.")
    policy = SegPolicy.from_pretrained(path / POLICY_DIR, device=device, dtype=dtype)
    if policy.family != config.family:
        raise ValueError(f"Checkpoint {path}: {CONFIG_FILE} says family {config.family} but {POLICY_DIR}/ holds "
                         f"{policy.family}.")
    segmenter = Sam2Segmenter.from_pretrained(path / SEGMENTER_DIR, device=device)
    return policy, segmenter, config.protocol


def save_checkpoint(
    path: str | Path,
    policy: Any,
    segmenter: Any,
    protocol: Any,
    generation: Any = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write a complete checkpoint directory atomically; returns its path.

    Raises:
        FileExistsError: ``path`` exists and is not empty, and ``overwrite`` is False.
    """
    from videoseg_o3.agent.generation import GenerationConfig

    path = _check_target(path, overwrite)
    config = CheckpointConfig(family=policy.family, segmenter=segmenter.config, protocol=protocol,
                              generation=generation if generation is not None else GenerationConfig())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        policy.save_pretrained(tmp / POLICY_DIR)
        segmenter.save_pretrained(tmp / SEGMENTER_DIR)
        (tmp / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        # mkdtemp creates the directory private (0700); give it the permissions of a normal mkdir.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _check_target(path: str | Path, overwrite: bool) -> Path:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"Cannot write a checkpoint to {path}: it is a file.")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"Checkpoint directory {path} exists and is not empty; pass overwrite=True (--overwrite).")
    return path


def init_tiny_checkpoint(path: str | Path, *, family: str = "qwen3_vl", seed: int = 0, overwrite: bool = False) -> Path:
    """Write a random tiny checkpoint: tiny policy (real Qwen tokenizer), tiny SAM2 (Hiera-T, 256 px).

    The protocol is the eval preset; decoding is greedy with 32 new tokens per turn so that a
    random model's episode stays short. SAM2 is random (its masks carry no meaning).
    """
    from videoseg_o3.agent.generation import GenerationConfig
    from videoseg_o3.policy import SegPolicy
    from videoseg_o3.protocol import ProtocolConfig
    from videoseg_o3.segmenter import Sam2Segmenter, SegmenterConfig

    _check_target(path, overwrite)  # fail before spending seconds on building models
    policy = SegPolicy.tiny(family, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        segmenter = Sam2Segmenter.from_config(SegmenterConfig(model_config="sam2_hiera_t", image_size=256), device="cpu")
    return save_checkpoint(path, policy, segmenter, ProtocolConfig.preset("eval"), GenerationConfig(max_new_tokens=32),
                           overwrite=overwrite)
