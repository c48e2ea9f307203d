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


class BatchedDecoder:
    """Decodes one token for each of several dialogues in ONE forward pass.

    The dialogues' KV caches are left-padded to a common length and stacked into one batched cache; a
    2-D attention mask hides the padding, and each row gets its own 3-D M-RoPE position (its unpadded
    length + its own ``rope_deltas``: rows hold different images, so their deltas differ), exactly what
    :meth:`DialogueContext.decode` passes for that dialogue alone. While a dialogue is in the batch its
    own ``cache`` is None (its keys and values live here); :meth:`release` hands them back (unpadded)
    so the dialogue can prefill its next observation on its own. Rows are rebuilt only when the set of
    dialogues changes (a rollout leaves at the end of a turn, or rejoins after its next observation);
    leaving alone needs no rebuild, just a row selection.
    """

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.rows: list[DialogueContext] = []
        self.cache: Any = None
        self.mask: torch.Tensor | None = None  # (B, L) long: 1 = a real token, 0 = left padding
        self.pads: list[int] = []

    # ------------------------------------------------------------------ membership
    def _config(self) -> Any:
        return self.policy.model.config

    @staticmethod
    def _layers(cache: Any) -> list[Any]:
        layers = list(cache.layers)
        for layer in layers:
            if getattr(layer, "is_sliding", False) or not hasattr(layer, "keys"):
                raise ValueError(f"Batched decoding needs full-attention cache layers; got {type(layer).__name__}. "
                                 "Use decoding='sequential' for this model.")
        return layers

    def _build(self, ctxs: list[DialogueContext]) -> None:
        from transformers import DynamicCache

        lengths = [len(c) for c in ctxs]
        for c, n in zip(ctxs, lengths):
            if c.cache is None or c.cache.get_seq_length() != n:
                raise RuntimeError("BatchedDecoder needs prefilled dialogues whose cache covers every token.")
        longest = max(lengths)
        per_ctx = [self._layers(c.cache) for c in ctxs]
        data = []
        for li in range(len(per_ctx[0])):
            pad = lambda t, n: torch.nn.functional.pad(t, (0, 0, longest - n, 0))  # noqa: E731
            keys = torch.cat([pad(layers[li].keys, n) for layers, n in zip(per_ctx, lengths)])
            values = torch.cat([pad(layers[li].values, n) for layers, n in zip(per_ctx, lengths)])
            data.append((keys, values))
        device = self.policy.device
        self.cache = DynamicCache(ddp_cache_data=data, config=self._config())
        self.pads = [longest - n for n in lengths]
        self.mask = torch.stack([torch.cat([torch.zeros(p, dtype=torch.long), torch.ones(n, dtype=torch.long)])
                                 for p, n in zip(self.pads, lengths)]).to(device)
        self.rows = list(ctxs)
        for c in ctxs:
            c.cache = None  # its keys and values live in the batch now

    def _select(self, keep: list[int]) -> None:
        """Keep rows ``keep`` (in that order) and drop the left padding every remaining row shares."""
        index = torch.tensor(keep, dtype=torch.long, device=self.mask.device)
        pads = [self.pads[i] for i in keep]
        trim = min(pads)
        for layer in self._layers(self.cache):
            layer.keys = layer.keys[index][:, :, trim:]
            layer.values = layer.values[index][:, :, trim:]
        self.mask = self.mask[index][:, trim:]
        self.pads = [p - trim for p in pads]
        self.rows = [self.rows[i] for i in keep]

    def release(self, ctxs: list[DialogueContext]) -> None:
        """Give the listed dialogues their own (unpadded) caches back and drop them from the batch."""
        from transformers import DynamicCache

        leaving = [i for i, c in enumerate(self.rows) if any(c is x for x in ctxs)]
        if not leaving:
            return
        layers = self._layers(self.cache)
        for i in leaving:
            pad = self.pads[i]
            data = [(layer.keys[i:i + 1, :, pad:].clone(), layer.values[i:i + 1, :, pad:].clone()) for layer in layers]
            self.rows[i].cache = DynamicCache(ddp_cache_data=data, config=self._config())
        keep = [i for i in range(len(self.rows)) if i not in leaving]
        if keep:
            self._select(keep)
        else:
            self.rows, self.cache, self.mask, self.pads = [], None, None, []

    def _sync(self, ctxs: list[DialogueContext]) -> None:
        """Make the batch hold exactly ``ctxs``, in that order."""
        if len(ctxs) == len(self.rows) and all(a is b for a, b in zip(ctxs, self.rows)):
            return
        position = {id(c): i for i, c in enumerate(self.rows)}
        if all(id(c) in position for c in ctxs):
            dropped = [c for c in self.rows if all(c is not x for x in ctxs)]
            self.release(dropped)
            position = {id(c): i for i, c in enumerate(self.rows)}
            self._select([position[id(c)] for c in ctxs])
            return
        self.release(list(self.rows))
        self._build(ctxs)

    # ------------------------------------------------------------------ the forward pass
    @torch.inference_mode()
    def decode(self, ctxs: list[DialogueContext], tokens: list[int]) -> list[StepOutput]:
        """Append ``tokens[b]`` to dialogue ``ctxs[b]`` and run them all in one forward pass.

        Returns one :class:`StepOutput` per dialogue: next-token logits ``(V,)`` float32 and the new
        token's last-layer hidden state ``(1, H)``.
        """
        if len(ctxs) != len(tokens) or not ctxs:
            raise ValueError(f"Invalid batch: {len(ctxs)} dialogues and {len(tokens)} tokens; pass one token per dialogue.")
        self._sync(ctxs)
        model = self.policy.model
        device = self.policy.device
        batch = len(ctxs)
        ids = torch.tensor(tokens, dtype=torch.long, device=device)[:, None]
        # text after the last image: position = unpadded index + the row's own rope delta, on all three rows
        # (the deltas stay on the device: reading them back would stall a GPU once per row and token)
        lengths = torch.tensor([len(c) for c in ctxs], device=device)
        deltas = torch.stack([c.rope_deltas.reshape(()).to(device) for c in ctxs])
        pos = (lengths + deltas).view(1, batch, 1).expand(3, batch, 1)
        mask = torch.cat([self.mask, torch.ones(batch, 1, dtype=self.mask.dtype, device=device)], dim=1)
        synchronize(device)
        t0 = time.perf_counter()
        out = model.model(
            input_ids=ids,
            position_ids=pos,
            attention_mask=mask,
            cache=self.cache,
            use_cache=True,
            mm_token_type_ids=torch.zeros_like(ids, dtype=torch.int32),
        )
        hidden = out.last_hidden_state[:, -1]
        logits = model.lm_head(hidden).float()
        synchronize(device)
        share = (time.perf_counter() - t0) / batch
        self.mask = mask
        results = []
        for b, ctx in enumerate(ctxs):
            ctx._append(Chunk.text(ids[b]))
            ctx.stats.decode_tokens += 1
            ctx.stats.decode_s += share
            results.append(StepOutput(logits=logits[b], hidden=hidden[b:b + 1]))
        return results
