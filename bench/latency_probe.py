"""Instruments for bench/latency.py: stage timers, scripted decoding, a recording reader, peak memory.

They observe the pipeline from outside (module hooks, a reader proxy, an instance-level wrapper), so
the library carries no benchmark code and every backend that keeps the same modules is measured the
same way. Each timer synchronises the device around the timed call, as the agent's own timings do.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch

from videoseg_o3 import device as devices

# SAM2 submodules whose forward time is one benchmark stage each (see VideoSegO3.segment's propagation):
# the [SEG]-prompted decode is the prompt encoder plus the mask decoder; memory is SAM2's tracking state.
SAM2_STAGE_MODULES = {
    "sam2_image_encoder": ("image_encoder",),
    "sam2_seg_decode": ("sam_prompt_encoder", "sam_mask_decoder"),
    "sam2_memory": ("memory_attention", "memory_encoder"),
}


class StageTimer:
    """Seconds and calls per named stage, accumulated by forward hooks and wrapped callables."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._handles: list[Any] = []
        self._restore: list[tuple[Any, str]] = []
        self._started: dict[int, float] = {}

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    def hook_module(self, stage: str, module: torch.nn.Module) -> None:
        """Time every forward of ``module`` under ``stage``."""
        def before(mod: torch.nn.Module, args: Any) -> None:
            devices.synchronize(self.device)
            self._started[id(mod)] = time.perf_counter()

        def after(mod: torch.nn.Module, args: Any, output: Any) -> None:
            devices.synchronize(self.device)
            self.seconds[stage] += time.perf_counter() - self._started.pop(id(mod))
            self.calls[stage] += 1

        self._handles.append(module.register_forward_pre_hook(before))
        self._handles.append(module.register_forward_hook(after))

    def wrap_method(self, stage: str, owner: Any, name: str) -> None:
        """Time ``owner.name(...)`` by shadowing the bound method with an instance attribute."""
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            devices.synchronize(self.device)
            start = time.perf_counter()
            result = original(*args, **kwargs)
            devices.synchronize(self.device)
            self.seconds[stage] += time.perf_counter() - start
            self.calls[stage] += 1
            return result

        setattr(owner, name, timed)
        self._restore.append((owner, name))

    def attach_segmenter(self, segmenter: Any) -> list[str]:
        """Hook the SAM2 stages of a ``Sam2Segmenter``; returns the stages it could attach (backends that
        replace SAM2's modules report the others as not measured)."""
        attached = []
        sam = getattr(segmenter, "sam", None)
        for stage, names in SAM2_STAGE_MODULES.items():
            modules = [getattr(sam, n, None) for n in names]
            if sam is not None and all(isinstance(m, torch.nn.Module) for m in modules):
                for module in modules:
                    self.hook_module(stage, module)
                attached.append(stage)
        if callable(getattr(segmenter, "prepare_frames", None)):
            self.wrap_method("sam2_frame_prep", segmenter, "prepare_frames")
            attached.append("sam2_frame_prep")
        return attached

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for owner, name in self._restore:
            try:
                delattr(owner, name)
            except AttributeError:
                pass
        self._restore.clear()


class ScriptedDecoding:
    """Teacher forcing at generation speed: the policy decodes token by token, and a hook on its LM head
    makes the greedy choice the next token of a script.

    The agent's own ``forced_turns`` runs a scripted turn as one parallel forward (right for training,
    too fast for latency: a deployed model pays one forward per generated token). Here every scripted
    token costs one decode step through the real KV-cache path, the LM head included; only the argmax
    is steered. Each LM-head call (after a prompt prefill or a decode step) yields the next scripted
    token; after a turn's stop token the next call is the next turn's prefill.
    """

    def __init__(self, policy: Any, turns: Sequence[str]) -> None:
        tokenizer = policy.tokenizer
        stop = int(tokenizer.convert_tokens_to_ids("<|im_end|>"))
        self.stop_id = stop
        self.turn_ids = [list(tokenizer.encode(text, add_special_tokens=False)) + [stop] for text in turns]
        self.stream = [t for ids in self.turn_ids for t in ids]
        self.cursor = 0
        self.model = policy.model
        self.head = policy.model.lm_head
        self._handle: Any = None

    @property
    def longest_turn(self) -> int:
        return max((len(ids) for ids in self.turn_ids), default=1)

    def _steer(self, module: torch.nn.Module | None, args: Any, output: torch.Tensor) -> torch.Tensor:
        token = self.stream[self.cursor] if self.cursor < len(self.stream) else self.stop_id
        self.cursor += 1
        steered = torch.full_like(output, -1e4)
        steered[..., token] = 0.0
        return steered

    def __enter__(self) -> "ScriptedDecoding":
        self.cursor = 0
        if isinstance(self.head, torch.nn.Module):
            self._handle = self.head.register_forward_hook(self._steer)
        else:
            # an exported policy's LM head is a plain callable (the graph computed the logits): wrap it instead
            head = self.head
            self.model.lm_head = lambda *args: self._steer(None, args, head(*args))
            self._handle = "wrapped"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle == "wrapped":
            self.model.lm_head = self.head
        elif self._handle is not None:
            self._handle.remove()
        self._handle = None


class RecordingReader:
    """A reader proxy that records which frames were asked for and how long ``get_frames`` took, per phase.

    ``phase`` is set by the caller ("episode", "propagation"); ``requested[phase]`` holds the distinct
    indices, ``seconds[phase]`` the wall time inside ``get_frames``. Everything else is the wrapped reader's.
    """

    def __init__(self, reader: Any, device: torch.device) -> None:
        self.reader = reader
        self.device = device
        self.phase = "episode"
        self.requested: dict[str, set[int]] = defaultdict(set)
        self.seconds: dict[str, float] = defaultdict(float)

    @property
    def num_frames(self) -> int:
        return int(self.reader.num_frames)

    @property
    def height(self) -> int:
        return int(self.reader.height)

    @property
    def width(self) -> int:
        return int(self.reader.width)

    @property
    def fps(self) -> float:
        return float(getattr(self.reader, "fps", 0.0))

    @property
    def num_decoded(self) -> int:
        return int(getattr(self.reader, "num_decoded", 0))

    def get_frames(self, indices: Any, **kwargs: Any) -> torch.Tensor:
        indices = [int(i) for i in indices]
        start = time.perf_counter()
        frames = self.reader.get_frames(indices, **kwargs)
        devices.synchronize(frames.device if isinstance(frames, torch.Tensor) else self.device)
        self.seconds[self.phase] += time.perf_counter() - start
        self.requested[self.phase].update(indices)
        return frames


class PeakMemory:
    """Peak memory over a block: allocated CUDA memory on a GPU (reset at entry), else the process's
    resident set sampled every ``interval`` seconds (CPU tensors live in the process heap).

    Attributes (after exit):
        peak_mib: the peak in MiB.
        increase_mib: peak minus the value at entry (what the block itself added).
        kind: ``"cuda_max_allocated"`` or ``"process_rss_sampled"``.
    """

    def __init__(self, device: torch.device, interval: float = 0.005) -> None:
        self.device = device
        self.interval = interval
        self.peak_mib = 0.0
        self.increase_mib = 0.0
        self.kind = "cuda_max_allocated" if device.type == devices.ACCELERATOR else "process_rss_sampled"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_bytes = 0
        self._peak_bytes = 0

    @staticmethod
    def _rss() -> int:
        import psutil

        return int(psutil.Process().memory_info().rss)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak_bytes = max(self._peak_bytes, self._rss())

    def __enter__(self) -> "PeakMemory":
        if self.kind == "cuda_max_allocated":
            devices.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start_bytes = self._peak_bytes = int(torch.cuda.memory_allocated(self.device))
        else:
            self._start_bytes = self._peak_bytes = self._rss()
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.kind == "cuda_max_allocated":
            devices.synchronize(self.device)
            self._peak_bytes = int(torch.cuda.max_memory_allocated(self.device))
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self._peak_bytes = max(self._peak_bytes, self._rss())
        self.peak_mib = self._peak_bytes / 2**20
        self.increase_mib = (self._peak_bytes - self._start_bytes) / 2**20


@contextmanager
def frame_prep_impl(impl: str) -> Iterator[None]:
    """Run a block with ``VIDEOSEG_KERNEL_IMPL=impl`` (the frame-prep dispatcher reads it at every call)."""
    import os

    from videoseg_o3.ops.dispatch import ENV_VAR

    old = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = impl
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = old
