"""The episode state machine (docs/architecture.md#the-turn-protocol): observe -> generate -> parse -> fetch frames -> repeat.

One episode is one dialogue between the policy and a video:

1. turn 0: the protocol's first observation (low-resolution frames over the whole video, a few
   high-resolution frames, the query) is rendered with the policy's chat template, its frames are
   fetched from the video reader, resized to their budgets and appended to the dialogue context;
2. the policy generates one assistant turn token by token; the last-layer hidden state at every
   ``[SEG]`` it emits is kept and projected to a 256-d SAM2 prompt;
3. the turn is parsed (``protocol.parse_turn`` never raises); ``protocol.next_step`` says continue
   (a ``<select>``: the follow-up observation shows frames of the chosen interval and the keyframe)
   or stop (``<answer>``, an invalid turn, an empty interval, ``max_turns``).

Several rollouts (``run_episodes``) run as one batch by default: each rollout is a small state machine
(choose a token -> end the turn -> show the next observation), and at every step all rollouts that
are generating decode their tokens in one forward pass (``context.BatchedDecoder``).

Like verl's tool agent loop, the result is a flat token stream with a ``response_mask`` (1 = a
token the policy chose, 0 = prompt, observation and image tokens), which is what a policy-gradient
loss needs. The reader caches decoded frames, so a frame shown twice is decoded once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from videoseg_o3.agent.context import BatchedDecoder, Chunk, ContextStats, DialogueContext, check_mode
from videoseg_o3.agent.frames import expand_image_placeholders, prepare_policy_images
from videoseg_o3.agent.generation import GenerationConfig, TokenChooser
from videoseg_o3.device import synchronize

# Stand-in for an assistant message while rendering the chat template; the text after it is the
# follow-up chunk. Any string the template copies verbatim works.
_ASSISTANT_PLACEHOLDER = "\u2063videoseg_o3_assistant_turn\u2063"

STAGES = ("video_decode", "preprocess", "vision_encoder", "prefill", "decode")
DECODINGS = ("batched", "sequential")


@dataclass
class _TurnInProgress:
    """The open turn of a rollout: its observation chunk and what the policy has chosen so far."""

    index: int
    chunk: Chunk
    prep: dict[str, float]
    specs: list[Any]
    before: ContextStats
    logits: torch.Tensor
    chosen: list[int] = field(default_factory=list)
    seg_hidden: list[torch.Tensor] = field(default_factory=list)


@dataclass
class TurnRecord:
    """One assistant turn and the observation that preceded it.

    Attributes:
        index: 0-based turn number.
        frames: the observation's images in order (``protocol.FrameSpec``: index, budget, role).
        shown_keyframe: the keyframe shown at high resolution in that observation (None at turn 0).
        prompt_ids: ``(P,)`` long, the tokens appended before this turn (chat markup, text, image
            placeholders; in ``reencode`` mode the dialogue before them is re-run too).
        token_ids: ``(G,)`` long, the tokens the policy chose (the stop token included when emitted).
        text: ``token_ids`` decoded (special tokens kept except the stop token).
        parse: ``protocol.TurnParse`` of ``text``.
        keyframe: this turn's VTG keyframe clipped into the video, or None.
        seg_hidden: ``(num_seg, H)`` last-layer hidden states at the ``[SEG]`` tokens.
        seg_embeddings: ``(num_seg, 256)`` projected (SAM2 prompts).
        timings: seconds per stage (``STAGES``).
        prefill_tokens, decode_tokens: tokens run through the language model for this turn.
    """

    index: int
    frames: list[Any]
    shown_keyframe: int | None
    prompt_ids: torch.Tensor
    token_ids: torch.Tensor
    text: str
    parse: Any
    keyframe: int | None
    seg_hidden: torch.Tensor
    seg_embeddings: torch.Tensor
    timings: dict[str, float]
    prefill_tokens: int
    decode_tokens: int

    @property
    def action(self) -> str:
        return self.parse.action

    @property
    def seg_embedding(self) -> torch.Tensor | None:
        """``(256,)`` the last ``[SEG]`` of this turn, or None when it emitted none."""
        return self.seg_embeddings[-1] if self.seg_embeddings.shape[0] else None

    def decode_frame(self, num_frames: int) -> int:
        """Frame this turn's ``[SEG]`` is decoded on during RL: the keyframe visible at the turn
        (the previous select's), the middle frame ``N // 2`` at turn 0 (the released rollouts' rule)."""
        return self.shown_keyframe if self.shown_keyframe is not None else num_frames // 2


@dataclass
class Trajectory:
    """A whole episode.

    Attributes:
        query: the user's question.
        num_frames: frames in the video.
        mode: ``"kv"`` or ``"reencode"``.
        turns: one :class:`TurnRecord` per assistant turn.
        input_ids: ``(L,)`` long, the whole dialogue (every prompt chunk and every chosen token).
        response_mask: ``(L,)`` long, 1 where the policy chose the token, 0 elsewhere.
        mm_token_type_ids: ``(L,)`` int, 1 at image placeholders.
        image_grid_thw: ``(num_images, 3)`` long, every image of the dialogue in order.
        pixel_values: ``(sum(prod(grid)), D)`` float, the images' patches (for re-scoring in training).
        anchor_frame: ``protocol.anchor_frame`` of the turns (where SAM2 is conditioned).
        final_seg_embedding: ``(256,)`` the last ``[SEG]`` of the whole dialogue: the final turn's, or when
            it has none the latest earlier turn's (as the released evaluation reads it from the final
            forward pass over the whole dialogue); None when no turn has one.
        stop_reason: ``"answer"``, ``"invalid"``, ``"empty_interval"``, ``"max_turns"`` or the
            protocol's own word.
        prefill_tokens, decode_tokens: language-model tokens over the episode.
        timings: seconds per stage summed over turns (``STAGES``) plus ``"total"``.
    """

    query: str
    num_frames: int
    mode: str
    turns: list[TurnRecord]
    input_ids: torch.Tensor
    response_mask: torch.Tensor
    mm_token_type_ids: torch.Tensor
    image_grid_thw: torch.Tensor
    pixel_values: torch.Tensor | None
    anchor_frame: int
    final_seg_embedding: torch.Tensor | None
    stop_reason: str
    prefill_tokens: int
    decode_tokens: int
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def parses(self) -> list[Any]:
        return [t.parse for t in self.turns]

    @property
    def num_turns(self) -> int:
        return len(self.turns)


# ---------------------------------------------------------------------- rendering
def observation_content(observation: Any) -> list[dict[str, Any]]:
    """Chat content items of an observation: text parts and one image item per frame, in order."""
    from videoseg_o3.protocol import to_chat_content

    return list(to_chat_content(observation))


class _Renderer:
    """Turns observations into chunk text with the policy's own chat template.

    The first chunk is ``[system, user]`` + generation prompt; a follow-up chunk is what the
    template adds after an assistant message: its closing markup, the new user message and the
    next generation prompt. Deriving it from the template (instead of hard-coding ChatML) keeps
    the token stream identical to what a full re-render would give, which KV reuse needs.
    """

    def __init__(self, processor: Any, system: str | None) -> None:
        self.processor = processor
        self.system = [{"role": "system", "content": system}] if system else []

    def _render(self, messages: list[dict[str, Any]]) -> str:
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def first(self, content: list[dict[str, str]]) -> str:
        return self._render(self.system + [{"role": "user", "content": content}])

    def followup(self, content: list[dict[str, str]]) -> str:
        base = self.system + [{"role": "user", "content": [{"type": "text", "text": "q"}]}]
        before = self._render(base) + _ASSISTANT_PLACEHOLDER
        full = self._render(base + [{"role": "assistant", "content": _ASSISTANT_PLACEHOLDER},
                                    {"role": "user", "content": content}])
        if not full.startswith(before):
            raise RuntimeError(
                "The policy's chat template does not render a dialogue as a prefix of its continuation "
                "(an assistant message is rewritten when a user message follows); multi-turn episodes "
                "need a prefix-stable template such as Qwen's ChatML."
            )
        return full[len(before):]


# ---------------------------------------------------------------------- the loop
class _EpisodeRunner:
    """State of one episode in progress (one video, one query, one context)."""

    def __init__(self, policy: Any, video: Any, query: str, protocol_config: Any, mode: str) -> None:
        from videoseg_o3 import protocol

        self.protocol = protocol
        self.policy = policy
        self.video = video
        self.query = query
        self.cfg = protocol_config
        self.mode = check_mode(mode)
        self.num_frames = int(video.num_frames)
        self.renderer = _Renderer(policy.processor, protocol.system_prompt(protocol_config))
        self.eos_ids = _stop_token_ids(policy)
        self.ctx = DialogueContext(policy, mode)
        self.mask: list[int] = []
        self.turns: list[TurnRecord] = []
        # A stop token the policy chose but that has not entered the context yet (it opens the next chunk).
        self.pending_stop: int | None = None

    def fork(self) -> "_EpisodeRunner":
        other = _EpisodeRunner.__new__(_EpisodeRunner)
        other.__dict__.update(self.__dict__)
        other.ctx = self.ctx.fork()
        other.mask = list(self.mask)
        other.turns = list(self.turns)
        return other

    # -- observation -> prompt chunk
    def prepare(self, observation: Any, turn_index: int) -> tuple[Chunk, dict[str, float], list[Any]]:
        device = self.policy.device
        specs = list(observation.frames())
        content = observation_content(observation)
        text = self.renderer.first(content) if turn_index == 0 else self.renderer.followup(content)
        timings = {"video_decode": 0.0, "preprocess": 0.0}
        processor = self.policy.processor
        image_token = getattr(processor, "image_token", "<|image_pad|>")
        num_tokens: list[int] = []
        pixels = grids = None
        if specs:
            wanted = sorted({int(s.index) for s in specs})
            t0 = time.perf_counter()
            decoded = self.video.get_frames(wanted)
            synchronize(decoded.device)
            timings["video_decode"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            row = {index: i for i, index in enumerate(wanted)}
            # uint8 frames move to the policy's device before preparation (4x fewer bytes than floats),
            # so on a GPU the resize/normalise/patchify run there.
            frames = decoded[[row[int(s.index)] for s in specs]].to(device)
            images = prepare_policy_images(frames, specs, processor.image_processor)
            pixels, grids, num_tokens = images.pixel_values, images.image_grid_thw, images.num_tokens
        else:
            t0 = time.perf_counter()
        text = expand_image_placeholders(text, num_tokens, image_token)
        ids = self.policy.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        types = (ids == self.policy.model.config.image_token_id).to(torch.int32)
        if self.pending_stop is not None:
            # The template's follow-up opens with the stop token the policy already emitted: keep the
            # policy's copy (response mask 1) instead of duplicating it.
            if ids.numel() and int(ids[0]) == self.pending_stop:
                ids, types = ids[1:], types[1:]
            ids = torch.cat([torch.tensor([self.pending_stop]), ids])
            types = torch.cat([torch.zeros(1, dtype=types.dtype), types])
        if pixels is not None:
            pixels = pixels.to(device=device, dtype=self.policy.dtype)
        chunk = Chunk(ids.to(device), types.to(device=device, dtype=torch.int32), pixels,
                      grids.to(device) if grids is not None else None)
        synchronize(device)
        timings["preprocess"] = time.perf_counter() - t0
        return chunk, timings, specs

    def prefill(self, chunk: Chunk) -> Any:
        carried = self.pending_stop is not None
        out = self.ctx.prefill(chunk)
        self.mask.extend([1] * int(carried) + [0] * (chunk.input_ids.numel() - int(carried)))
        self.pending_stop = None
        return out

    # -- one turn, as a small state machine ("choose" -> "end_turn" -> next turn or "done") so that a
    # sequential driver and a batched one (several rollouts decoded in one forward) share every rule
    def configure(self, generation: GenerationConfig, chooser: TokenChooser, forced_turns: "ForcedTurns",
                  t_start: float) -> None:
        """Per-rollout settings (set after :meth:`fork`, so siblings sample with their own generators)."""
        self.generation = generation
        self.chooser = chooser
        self.forced_turns = forced_turns
        self.t_start = t_start
        self.state = "idle"
        self.current: _TurnInProgress | None = None
        self.result: Trajectory | None = None

    def begin_turn(self, index: int, observation: Any = None,
                   first: tuple[Chunk, dict[str, float], list[Any], Any, Any] | None = None) -> None:
        """Show an observation (prepare + prefill, or the already prefilled ``first``) and open turn ``index``.

        A scripted turn runs at once (teacher forcing), leaving the runner in ``"end_turn"``; otherwise
        the runner waits in ``"choose"`` with the next-token logits.
        """
        if first is not None:
            chunk, prep, specs, out, before = first
        else:
            chunk, prep, specs = self.prepare(observation, index)
            before = _snapshot(self.ctx.stats)
            out = self.prefill(chunk)
        self.current = _TurnInProgress(index, chunk, prep, specs, before, out.logits)
        forced = _forced_ids(self.policy, self.forced_turns, index, self.turns)
        if forced is not None:
            self.current.chosen, self.current.seg_hidden = self._teacher_force(forced[: self.generation.max_new_tokens])
            self.state = "end_turn"
        else:
            self.state = "choose"

    def choose(self) -> int | None:
        """Pick the next token of the open turn. Returns it when it needs a forward pass, or None when it
        is a stop token (kept pending: it opens the next chunk) and the turn ends."""
        cur = self.current
        token = self.chooser(cur.logits)
        cur.chosen.append(token)
        if token in self.eos_ids:
            self.pending_stop = token
            self.state = "end_turn"
            return None
        return token

    def accept(self, token: int, hidden: torch.Tensor, logits: torch.Tensor) -> None:
        """Record the forward pass of a chosen ``token`` (already in the context): its hidden state ``(H,)``
        (kept at a ``[SEG]``) and the next-token logits ``(V,)``. The turn ends at ``max_new_tokens``."""
        cur = self.current
        self.mask.append(1)
        if token == self.policy.seg_token_id:
            cur.seg_hidden.append(hidden)
        cur.logits = logits
        if len(cur.chosen) >= self.generation.max_new_tokens:
            self.state = "end_turn"

    def _teacher_force(self, forced: list[int]) -> tuple[list[int], list[torch.Tensor]]:
        """Run a scripted turn in one forward pass (causal attention makes every hidden state equal
        to token-by-token decoding's); the tokens count as decode tokens, like generated ones."""
        for i, token in enumerate(forced):
            if token in self.eos_ids:
                forced = forced[: i + 1]
                break
        body = forced[:-1] if forced and forced[-1] in self.eos_ids else forced
        if forced and forced[-1] in self.eos_ids:
            self.pending_stop = forced[-1]
        if not body:
            return forced, []
        ids = torch.tensor(body)
        out = self.ctx.decode(ids)
        self.mask.extend([1] * len(body))
        seg_rows = (ids == self.policy.seg_token_id).nonzero().flatten().tolist()
        return forced, [out.hidden[r] for r in seg_rows]

    def end_turn(self) -> None:
        """Close the open turn: record it, then stop (``"done"``, :attr:`result` set) or show the follow-up."""
        record = self._record()
        self.turns.append(record)
        self.current = None
        reason = self.stop_reason(record.parse, record.index)
        if reason is not None:
            self.result = self.finish(reason, time.perf_counter() - self.t_start)
            self.state = "done"
            return
        observation = self.protocol.followup_observation(self.query, self.num_frames, record.parse, self.cfg)
        self.begin_turn(record.index + 1, observation)

    def _record(self) -> TurnRecord:
        cur = self.current
        stats0 = cur.before
        stats = self.ctx.stats
        chosen, seg_hidden = cur.chosen, cur.seg_hidden
        text_ids = [t for t in chosen if t not in self.eos_ids]
        text = self.policy.tokenizer.decode(text_ids, skip_special_tokens=False)
        parse = self.protocol.parse_turn(text, self.cfg)
        clipped = parse.clipped(self.num_frames)
        hidden = torch.stack(seg_hidden) if seg_hidden else torch.zeros(0, self.policy.hidden_size, device=self.policy.device)
        with torch.inference_mode():
            embeddings = self.policy.projector(hidden.to(self.policy.projector[0].weight.dtype))
        keyframes = [s for s in cur.specs if getattr(s, "role", None) == "keyframe"]
        timings = dict(cur.prep)
        timings["vision_encoder"] = stats.vision_encoder_s - stats0.vision_encoder_s
        timings["prefill"] = stats.prefill_s - stats0.prefill_s
        timings["decode"] = stats.decode_s - stats0.decode_s
        return TurnRecord(
            index=cur.index,
            frames=cur.specs,
            shown_keyframe=int(keyframes[-1].index) if keyframes else None,
            prompt_ids=cur.chunk.input_ids.detach().cpu(),
            token_ids=torch.tensor(chosen, dtype=torch.long),
            text=text,
            parse=parse,
            keyframe=clipped[2] if clipped is not None else None,
            seg_hidden=hidden,
            seg_embeddings=embeddings,
            timings=timings,
            prefill_tokens=stats.prefill_tokens - stats0.prefill_tokens,
            decode_tokens=stats.decode_tokens - stats0.decode_tokens,
        )

    def stop_reason(self, parse: Any, turn_index: int) -> str | None:
        """None to continue, else why the episode ends."""
        step = self.protocol.next_step(parse, turn_index, self.num_frames, self.cfg)
        if step == "continue":
            return None
        if parse.action in ("answer", "invalid"):
            return parse.action
        if parse.action == "select" and parse.interval_is_empty(self.num_frames):
            return "empty_interval"
        if turn_index + 1 >= self.cfg.max_turns:
            return "max_turns"
        return str(step)

    def finish(self, stop_reason: str, total_s: float) -> Trajectory:
        ctx = self.ctx
        ids = ctx.input_ids.detach().cpu()
        types = ctx.mm_token_type_ids.detach().cpu()
        if self.pending_stop is not None:
            # The final stop token never needs a forward pass, but it is a policy choice: it belongs
            # to the stream (mask 1) so a loss can score it.
            ids = torch.cat([ids, torch.tensor([self.pending_stop])])
            types = torch.cat([types, torch.zeros(1, dtype=types.dtype)])
            self.mask.append(1)
            self.pending_stop = None
        if len(self.mask) != ids.numel():  # an internal invariant, checked because training relies on it
            raise RuntimeError(f"response mask length {len(self.mask)} != dialogue length {ids.numel()}")
        parses = [t.parse for t in self.turns]
        anchor = self.protocol.anchor_frame(parses, self.num_frames, self.cfg)
        for turn in self.turns:
            # computed under inference mode; a clone is an ordinary tensor that a training step may use
            if turn.seg_embeddings.is_inference():
                turn.seg_embeddings = turn.seg_embeddings.clone()
                turn.seg_hidden = turn.seg_hidden.clone()
        # the last [SEG] of the dialogue: the final turn's, else the latest earlier turn's (as the released code)
        final = next((t.seg_embedding for t in reversed(self.turns) if t.seg_embedding is not None), None)
        timings = {stage: sum(t.timings.get(stage, 0.0) for t in self.turns) for stage in STAGES}
        timings["total"] = total_s
        return Trajectory(
            query=self.query,
            num_frames=self.num_frames,
            mode=self.mode,
            turns=self.turns,
            input_ids=ids,
            response_mask=torch.tensor(self.mask, dtype=torch.long),
            mm_token_type_ids=types,
            image_grid_thw=ctx.image_grid_thw.detach().cpu(),
            pixel_values=torch.cat(ctx.pixel_values) if ctx.pixel_values else None,
            anchor_frame=int(anchor),
            final_seg_embedding=final,
            stop_reason=stop_reason,
            prefill_tokens=sum(t.prefill_tokens for t in self.turns),
            decode_tokens=sum(t.decode_tokens for t in self.turns),
            timings=timings,
        )


def _stop_token_ids(policy: Any) -> set[int]:
    """Tokens that end an assistant turn: the tokenizer's eos (``<|im_end|>``) and the generation config's."""
    ids: set[int] = set()
    tok = policy.tokenizer
    if tok.eos_token_id is not None:
        ids.add(int(tok.eos_token_id))
    gen_eos = getattr(getattr(policy.model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif gen_eos:
        ids.update(int(i) for i in gen_eos)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end >= 0 and im_end != tok.unk_token_id:
        ids.add(im_end)
    return ids


ForcedTurns = Sequence[str] | Callable[[int, list[Any]], str | None] | None


def _forced_ids(policy: Any, forced_turns: ForcedTurns, turn_index: int, turns: list[TurnRecord]) -> list[int] | None:
    """Token ids of a scripted assistant turn (its text + the stop token), or None to let the policy choose."""
    if forced_turns is None:
        return None
    if callable(forced_turns):
        text = forced_turns(turn_index, turns)
    else:
        text = forced_turns[turn_index] if turn_index < len(forced_turns) else None
    if text is None:
        return None
    tok = policy.tokenizer
    return tok.encode(text, add_special_tokens=False) + [int(tok.convert_tokens_to_ids("<|im_end|>"))]


def _drive_sequential(runner: _EpisodeRunner) -> Trajectory:
    """Run one configured episode to its end, one token per forward pass."""
    while runner.state != "done":
        if runner.state == "end_turn":
            runner.end_turn()
            continue
        token = runner.choose()
        if token is None:
            continue
        out = runner.ctx.decode(torch.tensor([token]))
        runner.accept(token, out.hidden[-1], out.logits)
    return runner.result


def _drive_batched(policy: Any, runners: list[_EpisodeRunner]) -> list[Trajectory]:
    """Run configured episodes together: at every step, each rollout that is generating picks its token
    (with its own generator, so the draws equal the sequential driver's) and all of them run in ONE
    forward pass (:class:`BatchedDecoder`). A rollout that ends its turn leaves the batch, is shown its
    next observation alone (its own prefill, images included) and rejoins; a finished one is dropped."""
    decoder = BatchedDecoder(policy)
    try:
        while True:
            ending = [r for r in runners if r.state == "end_turn"]
            if ending:
                decoder.release([r.ctx for r in ending])
                for runner in ending:
                    runner.end_turn()
                continue
            active = [r for r in runners if r.state == "choose"]
            if not active:
                break
            rows = [(r, t) for r, t in ((r, r.choose()) for r in active) if t is not None]
            if not rows:
                continue
            outs = decoder.decode([r.ctx for r, _ in rows], [t for _, t in rows])
            for (runner, token), out in zip(rows, outs):
                runner.accept(token, out.hidden[-1], out.logits)
    finally:
        decoder.release(list(decoder.rows))
    return [r.result for r in runners]


def _snapshot(stats: Any) -> Any:
    from dataclasses import replace

    return replace(stats)


def _check_inputs(video: Any, query: str) -> None:
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"Invalid query ({query!r}): it must be a non-empty string.")
    if int(getattr(video, "num_frames", 0)) < 1:
        raise ValueError("Invalid video: it has no frames (num_frames < 1).")


def run_episode(
    policy: Any,
    video: Any,
    query: str,
    *,
    protocol: Any = None,
    generation: GenerationConfig | None = None,
    mode: str = "kv",
    forced_turns: ForcedTurns = None,
) -> Trajectory:
    """Run one multi-turn episode of ``policy`` on ``video`` for ``query``.

    Args:
        policy: a :class:`videoseg_o3.policy.SegPolicy`.
        video: a ``videoseg_o3.io`` reader (``num_frames``, ``get_frames(indices) -> (n, H, W, 3) uint8``).
        query: the question (non-empty).
        protocol: a ``ProtocolConfig`` (default: the eval preset's defaults).
        generation: a :class:`GenerationConfig` (default: greedy, 1024 tokens per turn).
        mode: ``"kv"`` (extend the cache each turn) or ``"reencode"`` (re-run the whole dialogue each
            turn, the reference behaviour). Both give the same tokens for greedy decoding.
        forced_turns: scripted assistant turns (teacher forcing): a list of texts, one per turn, or
            a callable ``(turn_index, previous_turns) -> text | None``. The policy still runs every
            scripted token (so caches, ``[SEG]`` states and timings are real); None lets it choose.
    Returns:
        a :class:`Trajectory`. A malformed turn ends the episode with its parse, never an exception.
    """
    from videoseg_o3 import protocol as protocol_module

    _check_inputs(video, query)
    cfg = protocol if protocol is not None else protocol_module.ProtocolConfig()
    generation = generation if generation is not None else GenerationConfig()
    t_start = time.perf_counter()
    runner = _EpisodeRunner(policy, video, query, cfg, mode)
    runner.configure(generation, TokenChooser(generation, policy.device), forced_turns, t_start)
    runner.begin_turn(0, protocol_module.initial_observation(query, runner.num_frames, cfg))
    return _drive_sequential(runner)


def run_episodes(
    policy: Any,
    videos: Sequence[Any],
    queries: Sequence[str],
    *,
    protocol: Any = None,
    generation: GenerationConfig | None = None,
    mode: str = "kv",
    num_rollouts: int = 1,
    forced_turns: ForcedTurns = None,
    forced_turns_by_rollout: Sequence[ForcedTurns] | None = None,
    decoding: str = "batched",
) -> list[Trajectory]:
    """Several episodes: one per (video, query) pair, each with ``num_rollouts`` rollouts (GRPO's G).

    The rollouts of one prompt share its first observation: it is decoded, encoded and prefilled
    once, and every rollout continues from a copy of that context (the cache is mutated in place,
    so sharing it would corrupt the siblings). Rollout ``i`` of the batch (prompt-major) samples with
    seed ``seed + i`` so a seeded call is reproducible and the rollouts differ. The result is ordered
    prompt-major: ``[p0 g0, p0 g1, ..., p1 g0, ...]``.

    ``decoding="batched"`` (default) decodes every rollout that is generating, of every prompt, in one
    forward pass per token (a left-padded batch of their KV caches with per-row 3-D positions); a
    rollout that finishes a turn is shown its next observation on its own and rejoins the batch.
    ``decoding="sequential"`` runs the rollouts one after another (one token per forward). Both choose
    the same tokens: every rollout draws from its own generator, and the batch's attention masks its
    padding (the logits differ only by floating-point summation order).

    Args:
        forced_turns: a script (see :func:`run_episode`) used by every rollout.
        forced_turns_by_rollout: one script per rollout, prompt-major (``len(videos) * num_rollouts``
            entries, None for a free rollout); overrides ``forced_turns``.
        decoding: ``"batched"`` or ``"sequential"`` (see above).

    Returns:
        ``len(videos) * num_rollouts`` trajectories. In rollouts after the first, turn 0 reports 0
        prefill tokens (its prompt was prefilled once, for the first rollout).
    """
    from videoseg_o3 import protocol as protocol_module

    if len(videos) != len(queries):
        raise ValueError(f"Invalid batch: {len(videos)} videos but {len(queries)} queries; pass one query per video.")
    if isinstance(num_rollouts, bool) or not isinstance(num_rollouts, int) or num_rollouts < 1:
        raise ValueError(f"Invalid num_rollouts ({num_rollouts!r}). Set it to an int >= 1.")
    if forced_turns_by_rollout is not None and len(forced_turns_by_rollout) != len(videos) * num_rollouts:
        raise ValueError(f"Invalid forced_turns_by_rollout: {len(forced_turns_by_rollout)} scripts for "
                         f"{len(videos) * num_rollouts} rollouts. Pass one per rollout (prompt-major), None for free ones.")
    cfg = protocol if protocol is not None else protocol_module.ProtocolConfig()
    generation = generation if generation is not None else GenerationConfig()
    if decoding not in DECODINGS:
        raise ValueError(f"Invalid decoding ({decoding}). Supported values are {', '.join(DECODINGS)}.")
    results: list[Trajectory] = []
    batch: list[_EpisodeRunner] = []
    t_batch = time.perf_counter()
    for p, (video, query) in enumerate(zip(videos, queries)):
        _check_inputs(video, query)
        t_start = time.perf_counter()
        base = _EpisodeRunner(policy, video, query, cfg, mode)
        observation = protocol_module.initial_observation(query, base.num_frames, cfg)
        chunk, prep, specs = base.prepare(observation, 0)
        before = _snapshot(base.ctx.stats)
        out = base.prefill(chunk)
        for g in range(num_rollouts):
            runner = base.fork() if g < num_rollouts - 1 else base
            if g > 0:
                # The shared prefix was paid for once, by rollout 0.
                prep = {k: 0.0 for k in prep}
                before = _snapshot(runner.ctx.stats)
            chooser = TokenChooser(generation, policy.device, seed_offset=p * num_rollouts + g)
            script = forced_turns if forced_turns_by_rollout is None else forced_turns_by_rollout[p * num_rollouts + g]
            runner.configure(generation, chooser, script, t_batch if decoding == "batched" else t_start)
            runner.begin_turn(0, first=(chunk, prep, specs, out, before))
            if decoding == "batched":
                batch.append(runner)
            else:
                results.append(_drive_sequential(runner))
                t_start = time.perf_counter()
    if decoding == "batched":
        results = _drive_batched(policy, batch)
    return results
