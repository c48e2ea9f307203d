"""``SegPolicy``: a Qwen-VL model with a ``[SEG]`` token and the 256-d projector (docs/architecture.md#the-model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from videoseg_o3.policy.configs import MODEL_TYPE_TO_FAMILY, model_class, processor_class, tiny_config
from videoseg_o3.policy.tokenizer import SEG_TOKEN, add_seg, build_processor, check_family

PROJECTOR_FILE = "projector.safetensors"
SEG_EMBED_DIM = 256  # SAM2's prompt width


class SegProjector(nn.Sequential):
    """``Linear(H, H) -> ReLU -> Linear(H, 256)``: maps a ``[SEG]`` hidden state to a SAM2 prompt.

    Same layout (indices 0 and 2) as the released checkpoints' ``text_hidden_fcs`` so their weights
    load by index.
    """

    def __init__(self, hidden_size: int, out_dim: int = SEG_EMBED_DIM) -> None:
        super().__init__(nn.Linear(hidden_size, hidden_size), nn.ReLU(inplace=False), nn.Linear(hidden_size, out_dim))


def text_hidden_size(config: Any) -> int:
    """Hidden width H of the language model of a Qwen-VL config."""
    return int(config.text_config.hidden_size)


def ensure_seg_token(model: nn.Module, tokenizer: Any) -> int:
    """Add ``[SEG]`` to ``tokenizer`` and grow ``model``'s embeddings when its id does not fit.

    Released Qwen models carry spare rows (vocab 151,936 > 151,669 tokens), so the table is resized
    only when needed; it is never shrunk (shrinking would drop rows a checkpoint may use).
    Returns the ``[SEG]`` id.
    """
    seg_id = add_seg(tokenizer)
    rows = model.get_input_embeddings().weight.shape[0]
    if seg_id >= rows:
        # mean_resizing initialises the new row at the mean embedding (a neutral start for a new token).
        model.resize_token_embeddings(seg_id + 1, mean_resizing=True)
    return seg_id


class SegPolicy(nn.Module):
    """The policy of docs/architecture.md#the-model: Qwen-VL + ``[SEG]`` + projector.

    Attributes:
        model: ``Qwen3VLForConditionalGeneration`` or ``Qwen2_5_VLForConditionalGeneration``.
        processor: the matching processor (tokenizer with ``[SEG]``, image processor, video processor).
        projector: ``Linear(H,H) -> ReLU -> Linear(H,256)``.
        seg_token_id: id of ``[SEG]`` in the tokenizer.
        family: ``"qwen3_vl"`` or ``"qwen2_5_vl"``.
    """

    def __init__(self, model: nn.Module, processor: Any, family: str, projector: SegProjector | None = None) -> None:
        super().__init__()
        self.family = check_family(family)
        self.model = model
        self.processor = processor
        self.seg_token_id = ensure_seg_token(model, processor.tokenizer)
        hidden = text_hidden_size(model.config)
        self.projector = projector if projector is not None else SegProjector(hidden)
        self.projector.to(device=self.device, dtype=self.dtype)

    # ------------------------------------------------------------------ properties
    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def hidden_size(self) -> int:
        return text_hidden_size(self.model.config)

    @property
    def vision_factor(self) -> int:
        """Pixels per merged vision token along one side (patch x merge: 32 for Qwen3-VL, 28 for Qwen2.5-VL)."""
        vision = self.model.config.vision_config
        return int(vision.patch_size) * int(vision.spatial_merge_size)

    # ------------------------------------------------------------------ [SEG]
    def seg_embeddings(self, hidden_states: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Project the last-layer hidden states at every ``[SEG]`` position.

        Args:
            hidden_states: ``(B, L, H)`` or ``(L, H)`` float, last decoder layer (after the final norm).
            input_ids: ``(B, L)`` or ``(L,)`` long, the tokens at those positions.
        Returns:
            ``(num_seg, 256)`` in the projector's dtype, in order of position (batch-major).
        """
        if hidden_states.shape[:-1] != input_ids.shape:
            raise ValueError(
                f"Invalid shapes: hidden_states {tuple(hidden_states.shape)} must be input_ids {tuple(input_ids.shape)} + (H,)."
            )
        mask = input_ids == self.seg_token_id
        selected = hidden_states[mask]
        return self.projector(selected.to(self.projector[0].weight.dtype))

    # ------------------------------------------------------------------ construction
    @classmethod
    def tiny(cls, family: str = "qwen3_vl", seed: int = 0, *, dtype: torch.dtype = torch.float32) -> "SegPolicy":
        """A random-init tiny policy built in code (hidden 64, 2 layers) with the real Qwen tokenizer."""
        check_family(family)
        processor = build_processor(family)
        # fork_rng keeps the caller's global RNG stream untouched by model construction.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = model_class(family)(tiny_config(family)).to(dtype)
            policy = cls(model, processor, family)
        policy.eval()
        return policy

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> "SegPolicy":
        """Load a policy directory written by :meth:`save_pretrained` (or a plain local Qwen-VL directory).

        Local files only, safetensors only, never remote code. A plain Qwen-VL directory (no
        ``projector.safetensors``) gets ``[SEG]`` added and a freshly initialised projector.
        """
        from videoseg_o3.device import resolve_device

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"Policy directory not found: {path}")
        config_file = path / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"Not a Hugging Face model directory (missing config.json): {path}")
        if not ((path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file()):
            raise FileNotFoundError(
                f"No safetensors weights in {path} (expected model.safetensors or model.safetensors.index.json; "
                "pickle .bin weights are not loaded)."
            )
        model_type = json.loads(config_file.read_text()).get("model_type")
        family = MODEL_TYPE_TO_FAMILY.get(model_type)
        if family is None:
            raise ValueError(
                f"Invalid model_type ({model_type}) in {config_file}. Supported values are {', '.join(MODEL_TYPE_TO_FAMILY)}."
            )
        target = resolve_device(device)
        kwargs: dict[str, Any] = dict(local_files_only=True, use_safetensors=True, trust_remote_code=False)
        if dtype is not None:
            kwargs["dtype"] = dtype
        model = model_class(family).from_pretrained(str(path), **kwargs).to(target)
        processor = processor_class(family).from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
        projector = None
        projector_file = path / PROJECTOR_FILE
        if projector_file.is_file():
            from safetensors.torch import load_file

            state = load_file(str(projector_file))
            projector = SegProjector(state["0.weight"].shape[1], state["2.weight"].shape[0])
            projector.load_state_dict(state)
        policy = cls(model, processor, family, projector)
        policy.eval()
        return policy

    def save_pretrained(self, path: str | Path) -> None:
        """Write the HF model (safetensors), the processor files and ``projector.safetensors`` to ``path``."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(path))
        self.processor.save_pretrained(str(path))
        state = {k: v.detach().contiguous().cpu() for k, v in self.projector.state_dict().items()}
        save_file(state, str(path / PROJECTOR_FILE), metadata={"format": "pt", "seg_token": SEG_TOKEN})
