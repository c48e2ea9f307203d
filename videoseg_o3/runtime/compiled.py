"""``torch.compile`` of the two per-step hot spots of the PyTorch backend: the policy's decode step and
SAM2's ``[SEG]``-prompted mask decoder.

Per generated token the agent runs the language model on ONE token over a growing KV cache; per video
frame SAM2 runs its prompt-conditioned mask decoder. Both are many small kernels, where Python and
launch overhead dominate on a GPU; ``torch.compile`` fuses them and, in ``reduce-overhead`` (or
``max-autotune``) mode on CUDA, replays them as CUDA graphs. The rest (vision encoder, prompt prefill,
SAM2's image encoder and memory) stays eager: large, variable-shape work with little overhead to save.

How each piece is compiled (:func:`compile_pipeline` attaches both; :meth:`CompiledRuntime.detach` undoes it):

- **Decode step** (:class:`CompiledDecodeStep`): the language model's ``forward`` is replaced on the
  instance by a router. A call that is a decode step (one token per row, positions given, a non-empty
  cache, no images: what ``DialogueContext.decode`` and ``BatchedDecoder`` issue per token) runs a pure
  tensor function ``(ids, positions, mask, past keys, past values) -> (hidden, new keys, new values)``
  compiled with ``dynamic=True``, so the growing cache length is a symbol, not a constant: a decode of
  many tokens compiles once (plus one recompile if a batch size or mask appears later), never per token.
  The new keys/values are appended to the caller's cache as eager decoding would. Everything else
  (prefill with images, teacher-forced turns of several tokens) takes the original eager ``forward``.
- **KV buckets for CUDA graphs**: a CUDA graph replays fixed shapes; a cache that grows by one token
  per step would record a new graph every token. With ``kv_bucket`` set (the default under CUDA graphs)
  the past is left-padded to a multiple of ``kv_bucket`` tokens with an attention mask hiding the padding
  (the same left-padding ``BatchedDecoder`` uses for batches), so one graph serves ``kv_bucket`` steps.
- **SAM2 decoder** (:class:`CompiledMaskDecoder`): ``sam_mask_decoder.forward`` is replaced by its compiled
  version (``dynamic=False``), as sam2's own ``SAM2VideoPredictorVOS`` does (it notes an accuracy
  regression with dynamic shapes); its shapes are fixed by the image size, so it compiles once per batch
  size and ``multimask_output`` flag.

Under CUDA graphs the outputs of one replay are overwritten by the next, so both wrappers mark a new
step before each call and clone the (small) outputs they hand back.

``reduce-overhead`` needs CUDA; on a CPU it warns and runs as ``default``. The option applies to the
PyTorch backend only (the exported graphs of ``onnxruntime``/``tensorrt`` are compiled by their runtimes).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from videoseg_o3.device import ACCELERATOR

COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
# torch.compile modes that wrap the compiled code in CUDA graphs on a CUDA device (inductor's mode table).
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
DEFAULT_KV_BUCKET = 256  # past tokens per CUDA-graph shape: one recording per 256 decoded tokens


@dataclass(frozen=True)
class CompileConfig:
    """How ``VideoSegO3.from_pretrained(..., compile=...)`` compiles the PyTorch backend.

    A plain mode string is accepted wherever a config is (:meth:`coerce`).
    """

    mode: str = field(default="off", metadata={"help": "off, default, reduce-overhead (CUDA graphs; 'default' on a "
                                                       "CPU) or max-autotune (also CUDA graphs on CUDA)."})
    decode_step: bool = field(default=True, metadata={"help": "Compile the policy's one-token decode step."})
    seg_decoder: bool = field(default=True, metadata={"help": "Compile SAM2's [SEG]-prompted mask decoder."})
    kv_bucket: int | None = field(default=None, metadata={
        "help": "Left-pad the past KV cache to a multiple of this many tokens so decode-step shapes repeat "
                f"(what CUDA graphs need). None: {DEFAULT_KV_BUCKET} when CUDA graphs are used, else no padding."})
    backend: str = field(default="inductor", metadata={
        "help": "torch.compile backend. 'inductor' generates code; 'eager' or 'aot_eager' only capture the graphs "
                "(fast; for checking graph breaks and recompiles)."})
    recompile_limit: int = field(default=8, metadata={
        "help": "Compiles allowed per compiled function before it falls back to eager (torch.compile's "
                "recompile_limit); decode steps need 1-3."})

    def __post_init__(self) -> None:
        if self.mode not in COMPILE_MODES:
            raise ValueError(f"Invalid compile mode ({self.mode}). Supported values are {', '.join(COMPILE_MODES)}.")
        for name in ("decode_step", "seg_decoder"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"Invalid {name} ({getattr(self, name)!r}). Supported values are True, False.")
        if self.kv_bucket is not None and (isinstance(self.kv_bucket, bool) or not isinstance(self.kv_bucket, int)
                                           or self.kv_bucket < 1):
            raise ValueError(f"Invalid kv_bucket ({self.kv_bucket!r}). Set it to a positive int, or None.")
        if not isinstance(self.backend, str) or not self.backend:
            raise ValueError(f"Invalid backend ({self.backend!r}). Give a torch.compile backend name such as inductor.")
        if isinstance(self.recompile_limit, bool) or not isinstance(self.recompile_limit, int) or self.recompile_limit < 1:
            raise ValueError(f"Invalid recompile_limit ({self.recompile_limit!r}). Set it to an int >= 1.")

    @classmethod
    def coerce(cls, value: "str | CompileConfig | None") -> "CompileConfig":
        """A config from a mode string (``"default"``...), a config, or None (``"off"``)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(mode=value)
        raise ValueError(f"Invalid compile ({value!r}). Supported values are {', '.join(COMPILE_MODES)} "
                         "or a CompileConfig.")

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def resolve(self, device: torch.device) -> "CompileConfig":
        """The config as it runs on ``device``: ``reduce-overhead`` becomes ``default`` off CUDA (with a
        warning), and ``kv_bucket`` gets its CUDA-graph default."""
        mode = self.mode
        if mode == "reduce-overhead" and device.type != ACCELERATOR:
            warnings.warn(f"compile mode 'reduce-overhead' uses CUDA graphs, which need a CUDA device; on {device} "
                          "it runs as 'default' (torch.compile without CUDA graphs).", stacklevel=3)
            mode = "default"
        bucket = self.kv_bucket
        if bucket is None and mode in CUDA_GRAPH_MODES and device.type == ACCELERATOR:
            bucket = DEFAULT_KV_BUCKET
        return dataclasses.replace(self, mode=mode, kv_bucket=bucket)

    def uses_cuda_graphs(self, device: torch.device) -> bool:
        return self.mode in CUDA_GRAPH_MODES and device.type == ACCELERATOR and self.backend == "inductor"


def check_compile(compile: "str | CompileConfig | None", backend: str) -> CompileConfig:
    """Validate ``compile`` for a pipeline ``backend``; returns the config.

    Raises:
        ValueError: an unknown mode, or compiling with a backend other than ``torch``.
    """
    config = CompileConfig.coerce(compile)
    if config.enabled and backend != "torch":
        raise ValueError(f"Invalid compile ({config.mode}) with backend {backend}: torch.compile applies to "
                         "backend='torch' only; use compile='off' with exported graphs.")
    return config


def _torch_compile(fn: Callable[..., Any], config: CompileConfig, *, dynamic: bool, name: str) -> Callable[..., Any]:
    import inspect

    kwargs: dict[str, Any] = dict(dynamic=dynamic, backend=config.backend)
    if config.backend == "inductor":
        kwargs["mode"] = config.mode  # other backends take no mode
    # per-function recompile bookkeeping is newer than the oldest supported torch (2.4): pass it where it exists,
    # else dynamo's global limit (also 8 by default) applies
    accepted = inspect.signature(torch.compile).parameters
    extras = dict(recompile_limit=config.recompile_limit, isolate_recompiles=True, name=name)
    kwargs.update({k: v for k, v in extras.items() if k in accepted})
    return torch.compile(fn, **kwargs)


class _GraphCounter:
    """Graphs dynamo compiled during calls of one compiled function (``torch._dynamo``'s ``unique_graphs``
    counter read around each call; the pipeline is single-threaded, so the difference is this function's)."""

    def __init__(self) -> None:
        from torch._dynamo.utils import counters

        self._counters = counters
        self.graphs = 0
        self.calls = 0

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        before = self._counters["stats"]["unique_graphs"]
        try:
            return fn(*args)
        finally:
            self.calls += 1
            self.graphs += self._counters["stats"]["unique_graphs"] - before


def _clone_tensors(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, (list, tuple)):
        return type(value)(_clone_tensors(v) for v in value)
    return value


class CompiledDecodeStep:
    """Routes the policy's one-token decode steps through a compiled function (see the module docstring).

    Args:
        policy: a :class:`videoseg_o3.policy.SegPolicy` (its ``model.model`` is a transformers Qwen-VL model).
        config: a resolved :class:`CompileConfig`.
    """

    def __init__(self, policy: Any, config: CompileConfig) -> None:
        self.inner = policy.model.model
        self.config = config
        self.device = policy.device
        self.cuda_graphs = config.uses_cuda_graphs(self.device)
        self.counter = _GraphCounter()
        self.eager_calls = 0
        self._original: Callable[..., Any] | None = None
        inner, model_config = self.inner, policy.model.config
        # Unpadded and without CUDA graphs, the graph's own past+token concatenation becomes the cache (one copy
        # per step, as eager decoding's). A CUDA graph's outputs live in buffers the next replay overwrites, and
        # a padded past would leave the cache holding strided views (a new graph for their strides), so there
        # only the token's keys/values come out and the cache appends them.
        self.returns_full_cache = not self.cuda_graphs and not config.kv_bucket
        returns_full = self.returns_full_cache

        def decode_step(input_ids: torch.Tensor, position_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                        keys: list[torch.Tensor], values: list[torch.Tensor]):
            """``input_ids (B, 1)``, ``position_ids (3, B, 1)``, ``attention_mask (B, P + 1)`` or None, past
            ``keys``/``values`` per layer ``(B, kv_heads, P, head_dim)`` -> last hidden state ``(B, 1, H)`` and
            per layer the keys/values of past + token ``(B, kv_heads, P + 1, head_dim)`` (``returns_full``) or
            of the token alone ``(B, kv_heads, 1, head_dim)``."""
            from transformers import DynamicCache

            cache = DynamicCache(ddp_cache_data=list(zip(keys, values)), config=model_config)
            out = inner.language_model(input_ids=None, inputs_embeds=inner.get_input_embeddings()(input_ids),
                                       position_ids=position_ids, attention_mask=attention_mask, cache=cache,
                                       use_cache=True)
            if returns_full:
                return out.last_hidden_state, [layer.keys for layer in cache.layers], [layer.values for layer in cache.layers]
            new_keys = [layer.keys[:, :, -1:] for layer in cache.layers]
            new_values = [layer.values[:, :, -1:] for layer in cache.layers]
            return out.last_hidden_state, new_keys, new_values

        self.compiled_step = _torch_compile(decode_step, config, dynamic=True, name="policy_decode_step")

    # ------------------------------------------------------------------ attach / detach
    def attach(self) -> None:
        """Replace the language model's ``forward`` on the instance (module hooks keep running outside)."""
        if self._original is None:
            self._original = self.inner.forward
            self.inner.forward = self._route

    def detach(self) -> None:
        if self._original is not None:
            if self.inner.__dict__.get("forward") == self._route:
                del self.inner.forward
            self._original = None

    # ------------------------------------------------------------------ routing
    @staticmethod
    def _cache_layers(cache: Any) -> list[Any] | None:
        """The cache's layers when each is a plain full-attention layer with tensors (else None: eager)."""
        from transformers.cache_utils import DynamicLayer

        layers = list(getattr(cache, "layers", None) or [])
        if not layers or any(type(layer) is not DynamicLayer or getattr(layer, "keys", None) is None
                             or not isinstance(layer.keys, torch.Tensor) or layer.keys.ndim != 4 for layer in layers):
            return None
        return layers

    def is_decode_step(self, args: tuple, kwargs: dict[str, Any]) -> bool:
        """True for a call this class compiles: keyword arguments only, ``input_ids (B, 1)``, 3-D
        ``position_ids (3, B, 1)``, a non-empty full-attention cache, no images, no embeddings given."""
        ids, positions, cache = kwargs.get("input_ids"), kwargs.get("position_ids"), kwargs.get("cache")
        if args or not isinstance(ids, torch.Tensor) or not isinstance(positions, torch.Tensor):
            return False
        if ids.ndim != 2 or ids.shape[1] != 1 or tuple(positions.shape) != (3, ids.shape[0], 1):
            return False
        if kwargs.get("use_cache") is False or kwargs.get("mm_encoder_outputs"):
            return False
        if any(kwargs.get(k) is not None for k in ("inputs_embeds", "pixel_values", "pixel_values_videos",
                                                    "image_grid_thw", "video_grid_thw", "past_key_values")):
            return False
        allowed = {"input_ids", "position_ids", "cache", "use_cache", "attention_mask", "mm_token_type_ids",
                   "image_grid_thw", "video_grid_thw", "mm_encoder_outputs", "pixel_values", "pixel_values_videos",
                   "inputs_embeds", "past_key_values"}
        if set(kwargs) - allowed or torch.is_grad_enabled():
            return False
        layers = self._cache_layers(cache)
        if layers is None or layers[0].keys.shape[0] != ids.shape[0] or layers[0].keys.shape[2] < 1:
            return False
        mask = kwargs.get("attention_mask")
        return mask is None or (isinstance(mask, torch.Tensor) and tuple(mask.shape) == (ids.shape[0], layers[0].keys.shape[2] + 1))

    def _route(self, *args: Any, **kwargs: Any) -> Any:
        if not self.is_decode_step(args, kwargs):
            self.eager_calls += 1
            return self._original(*args, **kwargs)
        return self.step(kwargs["input_ids"], kwargs["position_ids"], kwargs["cache"], kwargs.get("attention_mask"))

    def step(self, input_ids: torch.Tensor, position_ids: torch.Tensor, cache: Any,
             attention_mask: torch.Tensor | None = None) -> Any:
        """One decode step on ``cache`` (extended in place by the new token's keys/values).

        Args:
            input_ids: ``(B, 1)`` long.
            position_ids: ``(3, B, 1)`` long, the M-RoPE positions (computed by the agent on the dialogue).
            cache: a transformers ``DynamicCache`` holding the past (``B`` rows of ``L`` tokens).
            attention_mask: ``(B, L + 1)`` (1 = real token) or None (no padding).
        Returns:
            transformers' ``BaseModelOutputWithPast`` with ``last_hidden_state (B, 1, H)`` and the cache.
        """
        from transformers.modeling_outputs import BaseModelOutputWithPast

        layers = self._cache_layers(cache)
        keys = [layer.keys for layer in layers]
        values = [layer.values for layer in layers]
        batch, past = input_ids.shape[0], keys[0].shape[2]
        mask = attention_mask
        bucket = self.config.kv_bucket
        if bucket:
            padded = int(math.ceil(past / bucket)) * bucket
            pad = padded - past
            if mask is None:
                mask = torch.ones(batch, past + 1, dtype=torch.long, device=input_ids.device)
            if pad:
                keys = [torch.nn.functional.pad(k, (0, 0, pad, 0)) for k in keys]
                values = [torch.nn.functional.pad(v, (0, 0, pad, 0)) for v in values]
                mask = torch.cat([mask.new_zeros(batch, pad), mask], dim=1)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        hidden, new_keys, new_values = self.counter(self.compiled_step, input_ids, position_ids, mask, keys, values)
        if self.cuda_graphs:  # the next replay overwrites these buffers; the agent keeps [SEG] hidden states
            hidden, new_keys, new_values = _clone_tensors((hidden, new_keys, new_values))
        if self.returns_full_cache:
            for layer, key, value in zip(layers, new_keys, new_values):
                layer.keys, layer.values = key, value
        else:
            for index, (key, value) in enumerate(zip(new_keys, new_values)):
                cache.update(key, value, index)
        return BaseModelOutputWithPast(last_hidden_state=hidden, cache=cache)


class CompiledMaskDecoder:
    """SAM2's mask decoder (``sam.sam_mask_decoder.forward``) compiled with static shapes.

    Args:
        segmenter: a :class:`videoseg_o3.segmenter.Sam2Segmenter`.
        config: a resolved :class:`CompileConfig`.
    """

    def __init__(self, segmenter: Any, config: CompileConfig) -> None:
        self.decoder = segmenter.sam.sam_mask_decoder
        self.config = config
        self.cuda_graphs = config.uses_cuda_graphs(segmenter.device)
        self.counter = _GraphCounter()
        self._original: Callable[..., Any] | None = None
        self.eager_forward = self.decoder.forward
        # dynamic=False as in sam2's SAM2VideoPredictorVOS ("accuracy regression on True"); the shapes are
        # fixed by the image size, so only batch size and the multimask flag make new graphs.
        self.compiled_forward = _torch_compile(self.eager_forward, config, dynamic=False, name="sam2_seg_decoder")

    def attach(self) -> None:
        if self._original is None:
            self._original = self.decoder.forward
            self.decoder.forward = self._call

    def detach(self) -> None:
        if self._original is not None:
            if self.decoder.__dict__.get("forward") == self._call:
                del self.decoder.forward
            self._original = None

    def _call(self, *args: Any, **kwargs: Any) -> Any:
        if torch.is_grad_enabled():  # training steps through the decoder stay eager (no graph per grad mode)
            return self.eager_forward(*args, **kwargs)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        out = self.counter(lambda: self.compiled_forward(*args, **kwargs))
        return _clone_tensors(out) if self.cuda_graphs else out


@dataclass
class CompiledRuntime:
    """What :func:`compile_pipeline` attached; :meth:`stats` counts calls and compiled graphs."""

    config: CompileConfig
    decode_step: CompiledDecodeStep | None = None
    seg_decoder: CompiledMaskDecoder | None = None

    def parts(self) -> list[Any]:
        return [p for p in (self.decode_step, self.seg_decoder) if p is not None]

    def attach(self) -> None:
        for part in self.parts():
            part.attach()

    def detach(self) -> None:
        """Restore the eager ``forward`` methods (the compiled code stays cached for a later :meth:`attach`)."""
        for part in self.parts():
            part.detach()

    def stats(self) -> dict[str, Any]:
        """``{"mode", "kv_bucket", "cuda_graphs", "decode_step": {...}, "seg_decoder": {...}}`` with per part
        ``calls`` (compiled calls), ``graphs`` (graphs dynamo compiled for them) and, for the decode step,
        ``eager_calls`` (language-model calls that were not decode steps)."""
        out: dict[str, Any] = {"mode": self.config.mode, "kv_bucket": self.config.kv_bucket}
        if self.decode_step is not None:
            out["cuda_graphs"] = self.decode_step.cuda_graphs
            out["decode_step"] = {"calls": self.decode_step.counter.calls, "graphs": self.decode_step.counter.graphs,
                                  "eager_calls": self.decode_step.eager_calls}
        if self.seg_decoder is not None:
            out["cuda_graphs"] = out.get("cuda_graphs", False) or self.seg_decoder.cuda_graphs
            out["seg_decoder"] = {"calls": self.seg_decoder.counter.calls, "graphs": self.seg_decoder.counter.graphs}
        return out


def compile_pipeline(policy: Any, segmenter: Any, compile: "str | CompileConfig") -> CompiledRuntime | None:
    """Compile ``policy``'s decode step and ``segmenter``'s ``[SEG]`` decoder in place (see the module docstring).

    Args:
        policy: a :class:`videoseg_o3.policy.SegPolicy` (PyTorch).
        segmenter: a :class:`videoseg_o3.segmenter.Sam2Segmenter` (PyTorch).
        compile: a mode string or a :class:`CompileConfig`.
    Returns:
        the attached :class:`CompiledRuntime`, or None for ``"off"``. Compilation itself happens lazily, at the
        first decode step / decoder call.
    Raises:
        ValueError: an unknown mode, or a policy or segmenter that is not a PyTorch module.
    """
    config = CompileConfig.coerce(compile)
    if not config.enabled:
        return None
    device = policy.device
    config = config.resolve(device)
    runtime = CompiledRuntime(config)
    if config.decode_step:
        if not isinstance(getattr(getattr(policy, "model", None), "model", None), torch.nn.Module):
            raise ValueError(f"Invalid policy for compile ({type(policy).__name__}): torch.compile needs the PyTorch "
                             "policy (backend='torch').")
        runtime.decode_step = CompiledDecodeStep(policy, config)
    if config.seg_decoder:
        if not isinstance(getattr(getattr(segmenter, "sam", None), "sam_mask_decoder", None), torch.nn.Module):
            raise ValueError(f"Invalid segmenter for compile ({type(segmenter).__name__}): torch.compile needs the "
                             "PyTorch segmenter (backend='torch').")
        runtime.seg_decoder = CompiledMaskDecoder(segmenter, config)
    runtime.attach()
    return runtime
