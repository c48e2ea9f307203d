"""Build the SAM2 model from the sam2 package's hydra configs and load local weights.

sam2's own ``build_sam2_video_predictor`` hard-codes the device default to CUDA, logs and raises a bare
``RuntimeError()`` on key mismatches, and always loads ``.pt`` files; we compose the same configs with hydra
ourselves so that the model class is our predictor subclass (through the ``_target_`` override), the input
size can shrink for tests, and a bad checkpoint yields an error that names the problem.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from videoseg_o3.segmenter.config import SAM2_CONFIG_FILES, SegmenterConfig

# The predictor subclass that injects the [SEG] prompt (see predictor.py).
PREDICTOR_TARGET = "videoseg_o3.segmenter.predictor.SegPromptVideoPredictor"
# The released VideoSEG-O3 model leaves binarize_mask_from_pts_for_mem_enc False (sam2's class default; sam2's
# own builder turns it on for click prompts): the anchor frame's memory is encoded from the sigmoid of its
# logits, not from a thresholded mask. Stated explicitly so that a change of sam2's defaults cannot move it.
DEFAULT_OVERRIDES = ("++model.binarize_mask_from_pts_for_mem_enc=false",)
# How many mismatching names an error message lists before summarising with a count.
_MAX_NAMES_IN_ERROR = 6


def hydra_overrides(cfg: SegmenterConfig) -> list[str]:
    """The hydra overrides that turn sam2's config into the model ``cfg`` asks for."""
    feat = cfg.image_size // 16  # stride-16 feature map that memory attention's RoPE tables cover
    overrides = [
        f"++model._target_={PREDICTOR_TARGET}",
        f"++model.image_size={cfg.image_size}",
        f"++model.num_maskmem={cfg.num_maskmem}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{feat},{feat}]",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{feat},{feat}]",
        *DEFAULT_OVERRIDES,
    ]
    return overrides + list(cfg.hydra_overrides)


def _compose(config_file: str, overrides: list[str]):
    """Compose a sam2 config. ``import sam2`` registers its config module with hydra's global state; if
    something cleared that state, register it again only for this call (and restore whatever was there)."""
    import sam2  # noqa: F401  (side effect: hydra config module registration)
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name=config_file, overrides=overrides)
    with initialize_config_module("sam2", version_base="1.2"):
        return compose(config_name=config_file, overrides=overrides)


def build_sam2_model(cfg: SegmenterConfig, device: torch.device) -> torch.nn.Module:
    """Instantiate the predictor from ``cfg`` (random init, or ``cfg.checkpoint``), in eval mode on ``device``.

    Raises:
        FileNotFoundError: ``cfg.checkpoint`` does not exist.
        ValueError: the checkpoint's parameter names or shapes do not fit ``cfg.model_config``.
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    if cfg.checkpoint is not None and not os.path.isfile(cfg.checkpoint):
        raise FileNotFoundError(
            f"SAM2 checkpoint not found: {cfg.checkpoint}. Point SegmenterConfig.checkpoint at a local .pt or "
            ".safetensors file, or set it to None for random weights."
        )
    composed = _compose(SAM2_CONFIG_FILES[cfg.model_config], hydra_overrides(cfg))
    OmegaConf.resolve(composed)
    model = instantiate(composed.model, _recursive_=True)
    if cfg.checkpoint is not None:
        load_sam2_weights(model, read_state_dict(cfg.checkpoint), source=cfg.checkpoint, model_config=cfg.model_config)
    return model.to(device).eval()


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Read SAM2 weights from a file, never executing pickled code.

    ``.pt``/``.pth``: ``torch.load(weights_only=True)``; sam2's releases keep the weights under ``"model"``,
    a bare state dict is accepted too. ``.safetensors``: a flat state dict.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SAM2 checkpoint not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpicklable objects, truncated files, not a torch file at all
        raise ValueError(f"Could not read SAM2 checkpoint {path} with torch.load(weights_only=True): {err}") from err
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = list(obj)[:_MAX_NAMES_IN_ERROR] if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(
            f"Invalid SAM2 checkpoint {path}: expected a state dict of tensors, or sam2's layout with the state "
            f"dict under 'model'; found {keys}."
        )
    return dict(obj)


def _name_list(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMES_IN_ERROR])
    more = len(names) - _MAX_NAMES_IN_ERROR
    return shown + (f" ... and {more} more" if more > 0 else "")


def load_sam2_weights(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str,
                      model_config: str | None = None) -> None:
    """Load a sam2-named state dict into ``model`` strictly, with an error that says what does not fit.

    Parameter names are sam2's own (``image_encoder.trunk...``, ``sam_mask_decoder...``), so sam2 release
    files, our ``model.safetensors`` and remapped third-party checkpoints all load through here.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    hint = f" Does model_config ({model_config}) match the checkpoint's model?" if model_config else ""
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_name_list(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_name_list(unexpected)})")
        raise ValueError(f"SAM2 weights in {source} do not match the model: {'; '.join(parts)}.{hint}")
    wrong_shape = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items() if tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if wrong_shape:
        raise ValueError(
            f"SAM2 weights in {source} have {len(wrong_shape)} tensors of the wrong shape (file vs model): "
            f"{_name_list(wrong_shape)}.{hint} num_maskmem must equal the checkpoint's (7 for sam2 releases)."
        )
    model.load_state_dict(state_dict, strict=True)
