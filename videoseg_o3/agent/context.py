"""The dialogue context of one episode: token ids, images, and (in ``kv`` mode) the KV cache.

Two modes with the same interface and the same token stream:

- ``"kv"``: every new chunk (a user observation, a generated token) *extends* the cache. Qwen's
  3-D M-RoPE positions of a chunk are computed with ``model.model.get_rope_index`` on the FULL
  dialogue (its ids and all image grids) and sliced to the chunk; ``get_rope_index`` is causal in
  the sequence, so the slice equals what a full re-encode computes. Only the chunk's own images
  go through the vision encoder. The model's cached ``rope_deltas`` is then set to the full
  dialogue's, because transformers reads it in any later step that does not pass positions.
  Why not let the model compute positions: with a non-empty cache it gives new image tokens 1-D
  text positions (silently wrong logits; docs/architecture.md#measured-traps: ~0.1 max error on
  Qwen3-VL).
- ``"reencode"``: the reference behaviour: each prompt prefill runs the whole dialogue from
  scratch (all images re-encoded, fresh cache); decoding then extends that fresh cache.

No attention mask is passed: one unpadded sequence needs none, and a mask of only the chunk's
length gives wrong logits without an error.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import torch

from videoseg_o3.device import synchronize

MODES = ("kv", "reencode")


def check_mode(mode: str) -> str:
    """Validate an episode mode name; returns it unchanged."""
    if mode not in MODES:
        raise ValueError(f"Invalid mode ({mode}). Supported values are {', '.join(MODES)}.")
    return mode


@dataclass
class Chunk:
    """A piece of the dialogue to append.

    Attributes:
        input_ids: ``(L,)`` long, image placeholders already expanded.
        mm_token_type_ids: ``(L,)`` int, 0 text, 1 image (from the processor).
        pixel_values: ``(sum(prod(grid)), C*T*P*P)`` float, patches of this chunk's images, or None.
        image_grid_thw: ``(num_images, 3)`` long, grids of this chunk's images, or None.
    """

    input_ids: torch.Tensor
    mm_token_type_ids: torch.Tensor
    pixel_values: torch.Tensor | None = None
    image_grid_thw: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.input_ids.ndim != 1 or self.mm_token_type_ids.shape != self.input_ids.shape:
            raise ValueError(
                f"Invalid chunk: input_ids {tuple(self.input_ids.shape)} must be 1-D and match mm_token_type_ids "
                f"{tuple(self.mm_token_type_ids.shape)}."
            )

    @classmethod
    def text(cls, ids: torch.Tensor) -> "Chunk":
        """A chunk of text tokens only (e.g. generated tokens)."""
        ids = ids.reshape(-1).long()
        return cls(ids, torch.zeros_like(ids, dtype=torch.int32))


@dataclass
class StepOutput:
    """What a forward over a chunk returns.

    Attributes:
        logits: ``(V,)`` float32, next-token logits after the chunk's last token.
        hidden: ``(L, H)`` last-layer hidden states of the chunk's tokens (after the final norm).
    """

    logits: torch.Tensor
    hidden: torch.Tensor


@dataclass
class ContextStats:
    """Counters and timings (seconds) accumulated by a context."""

    prefill_tokens: int = 0
    decode_tokens: int = 0
    vision_encoder_s: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0


class DialogueContext:
    """One growing dialogue on one policy. Not thread-safe (the model's ``rope_deltas`` is shared state)."""

    def __init__(self, policy: Any, mode: str = "kv") -> None:
        self.policy = policy
        self.mode = check_mode(mode)
        device = policy.device
        self.input_ids = torch.zeros(0, dtype=torch.long, device=device)
        self.mm_token_type_ids = torch.zeros(0, dtype=torch.int32, device=device)
        self.image_grid_thw = torch.zeros(0, 3, dtype=torch.long, device=device)
        # All image patches so far; the re-encode mode feeds them again every prefill.
        self.pixel_values: list[torch.Tensor] = []
        self.cache: Any = None
        self.rope_deltas: torch.Tensor | None = None
        self.stats = ContextStats()

    # ------------------------------------------------------------------ bookkeeping
    def __len__(self) -> int:
        return int(self.input_ids.numel())

    @property
    def num_images(self) -> int:
        return int(self.image_grid_thw.shape[0])

    def fork(self) -> "DialogueContext":
        """An independent copy (cache included) for branching rollouts that share this prefix.

        The cache is mutated in place by every forward, so each branch needs its own copy.
        Statistics are copied too; callers that count the shared prefix once snapshot them at the fork.
        """
        other = DialogueContext.__new__(DialogueContext)
        other.policy = self.policy
        other.mode = self.mode
        other.input_ids = self.input_ids.clone()
        other.mm_token_type_ids = self.mm_token_type_ids.clone()
        other.image_grid_thw = self.image_grid_thw.clone()
        other.pixel_values = list(self.pixel_values)
        other.cache = copy.deepcopy(self.cache)
        other.rope_deltas = None if self.rope_deltas is None else self.rope_deltas.clone()
        other.stats = dataclasses.replace(self.stats)
        return other

    # ------------------------------------------------------------------ forward passes
    def _rope_index(self, ids: torch.Tensor, types: torch.Tensor, grids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """3-D positions ``(3, 1, L)`` and deltas ``(1, 1)`` of a whole dialogue."""
        inner = self.policy.model.model
        return inner.get_rope_index(
            ids[None],
            mm_token_type_ids=types[None],
            image_grid_thw=grids if grids.shape[0] > 0 else None,
        )

    def _forward(
        self,
        ids: torch.Tensor,
        position_ids: torch.Tensor,
        pixel_values: torch.Tensor | None,
        grids: torch.Tensor | None,
        types: torch.Tensor,
        *,
        is_decode: bool,
    ) -> StepOutput:
        model = self.policy.model
        inner = model.model
        device = self.policy.device
        encoder_outputs = None
        if pixel_values is not None and grids is not None and grids.shape[0] > 0:
            synchronize(device)
            t0 = time.perf_counter()
            encoder_outputs = {"image": inner.get_image_features(pixel_values.to(device), grids, return_dict=True)}
            synchronize(device)
            self.stats.vision_encoder_s += time.perf_counter() - t0
        if self.cache is None:
            from transformers import DynamicCache

            self.cache = DynamicCache(config=model.config)
        synchronize(device)
        t0 = time.perf_counter()
        out = inner(
            input_ids=ids[None],
            position_ids=position_ids,
            cache=self.cache,
            use_cache=True,
            image_grid_thw=grids if encoder_outputs is not None else None,
            mm_token_type_ids=types[None],
            mm_encoder_outputs=encoder_outputs,
        )
        hidden = out.last_hidden_state[0]
        # Only the last position's logits are needed: a full-vocabulary projection of a
        # several-thousand-token prompt would cost gigabytes for nothing.
        logits = model.lm_head(hidden[-1:]).float()[0]
        synchronize(device)
        elapsed = time.perf_counter() - t0
        if is_decode:
            self.stats.decode_s += elapsed
            self.stats.decode_tokens += int(ids.numel())
        else:
            self.stats.prefill_s += elapsed
            self.stats.prefill_tokens += int(ids.numel())
        return StepOutput(logits=logits, hidden=hidden)

    def _append(self, chunk: Chunk) -> None:
        device = self.policy.device
        self.input_ids = torch.cat([self.input_ids, chunk.input_ids.to(device)])
        self.mm_token_type_ids = torch.cat([self.mm_token_type_ids, chunk.mm_token_type_ids.to(device, torch.int32)])
        if chunk.image_grid_thw is not None and chunk.image_grid_thw.shape[0] > 0:
            self.image_grid_thw = torch.cat([self.image_grid_thw, chunk.image_grid_thw.to(device, torch.long)])
            self.pixel_values.append(chunk.pixel_values)

    @torch.inference_mode()
    def prefill(self, chunk: Chunk) -> StepOutput:
        """Append a prompt chunk (text and images) and run it.

        Returns the logits after the chunk and the hidden states of the chunk's tokens (in
        ``reencode`` mode, of the whole dialogue's last ``len(chunk)`` tokens: the same positions).
        """
        past = len(self)
        self._append(chunk)
        inner = self.policy.model.model
        positions, deltas = self._rope_index(self.input_ids, self.mm_token_type_ids, self.image_grid_thw)
        self.rope_deltas = deltas
        if self.mode == "kv":
            new_grids = chunk.image_grid_thw.to(self.policy.device) if chunk.image_grid_thw is not None else None
            out = self._forward(
                self.input_ids[past:], positions[:, :, past:], chunk.pixel_values, new_grids,
                self.mm_token_type_ids[past:], is_decode=False,
            )
        else:
            self.cache = None
            pixels = torch.cat(self.pixel_values) if self.pixel_values else None
            out = self._forward(
                self.input_ids, positions, pixels, self.image_grid_thw, self.mm_token_type_ids, is_decode=False
            )
            out = StepOutput(logits=out.logits, hidden=out.hidden[past:])
        inner.rope_deltas = deltas
        return out

    @torch.inference_mode()
    def decode(self, token_ids: torch.Tensor) -> StepOutput:
        """Append generated text tokens ``(n,)`` and run them on the cache (both modes)."""
        if self.cache is None:
            raise RuntimeError("decode() needs a prefilled context: call prefill() with the prompt first.")
        chunk = Chunk.text(token_ids.to(self.policy.device))
        past = len(self)
        self._append(chunk)
        # Text after the last image: position = index + rope delta on all three rows, as a full
        # re-encode's get_rope_index would give.
        pos = torch.arange(past, past + chunk.input_ids.numel(), device=self.policy.device) + self.rope_deltas.reshape(())
        pos = pos.view(1, 1, -1).expand(3, 1, -1)
        return self._forward(chunk.input_ids, pos, None, None, chunk.mm_token_type_ids, is_decode=True)
