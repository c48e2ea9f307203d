"""Memory and time of the GRPO loss with the LM head: eager reference vs torch-chunked vs fused Triton.

Launch from the repository root::

    python bench/kernels.py                       # CPU: measured peak tensor bytes, Qwen3-VL-2B head, small N
    python bench/kernels.py --tokens 1024,4096,16384 --dtype bfloat16   # GPU: peak memory and time
    python bench/kernels.py --json out.json       # also write the rows as JSON

What it measures, and what it deliberately simplifies:

- Shapes are Qwen3-VL-2B's LM head (H = 2048, V = 151,936) with random weights; the loss options are
  the training defaults (seq-mean-token-mean, k3 KL with beta 0.04, a calibration bonus at some tokens).
- Memory is the *measured* peak of live tensor bytes allocated during forward + backward, beyond the
  inputs (gradients of hidden and weight included, as every algorithm must produce them; "workspace"
  is that peak minus the sizes of those two gradients, i.e. what the algorithm itself adds). On a GPU it is
  ``torch.cuda.max_memory_allocated``; on the CPU a dispatch-mode tracker records every tensor storage
  an operator creates and releases it when the storage is freed (:class:`TensorMemoryTracker`).
- On the CPU, eager and chunked run at the real H and V but with few tokens (the eager logits of 16k
  tokens alone need 10 GB and minutes per matmul on two cores). Triton only runs there under its
  interpreter, which is far too slow for these sizes, so its memory is measured at a small size beside
  eager and chunked at that same size (``--triton-small``), and labelled so.
- Time on the CPU is wall time of one forward + backward (no warm-up beyond one run): indicative only.
  On a GPU: CUDA-event time (median of ``--iters``) against the floor set by the three matrix products
  (2·N·H·V FLOPs forward, 4·N·H·V backward), both as the nominal FLOP count and as measured
  cuBLAS time of those three matmuls.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import weakref
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_flatten  # noqa: E402

from videoseg_o3.device import cuda_available, default_device, synchronize  # noqa: E402

if not cuda_available():
    # Must precede the first `import triton` (inside kernels): Triton picks interpreter vs GPU at definition time.
    os.environ.setdefault("TRITON_INTERPRET", "1")

from kernels import _triton_support  # noqa: E402
from kernels.grpo_loss import chunked_linear_grpo_loss, grpo_loss_ref, triton_linear_grpo_loss  # noqa: E402

QWEN3_VL_2B_HIDDEN = 2048
QWEN3_VL_2B_VOCAB = 151_936


class TensorMemoryTracker(TorchDispatchMode):
    """Peak bytes of tensor storages created inside the ``with`` block and still alive.

    Every aten operator's outputs pass through ``__torch_dispatch__``; a storage not seen before and not
    owned by an input is counted until Python frees it (``weakref.finalize`` on the storage). Views and
    in-place results reuse a counted storage and add nothing. Storages that existed before the block
    (the inputs) are never counted. Works for the CPU, where torch has no allocator statistics.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _release(self, key: int, nbytes: int) -> None:
        if self.live.pop(key, None) is not None:
            self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes == 0 or key in self.live or key in inputs:
                continue
            self.live[key] = nbytes
            self.current += nbytes
            self.peak = max(self.peak, self.current)
            weakref.finalize(storage, self._release, key, nbytes)
        return out


def make_inputs(n: int, h: int, v: int, dtype: torch.dtype, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """A GRPO batch of ``n`` tokens in 4 sequences with a calibration bonus every 50th token."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    hidden = torch.randn(n, h, generator=g).to(device=device, dtype=dtype)
    weight = (torch.randn(v, h, generator=g) / h**0.5).to(device=device, dtype=dtype)
    seq_ids = torch.arange(n) * 4 // max(n, 1)
    seg_bonus = torch.where(torch.arange(n) % 50 == 49, -torch.rand(n, generator=g), torch.zeros(n))
    return {
        "hidden": hidden,
        "weight": weight,
        "target_ids": torch.randint(0, v, (n,), generator=g).to(device),
        "loss_mask": (torch.rand(n, generator=g) > 0.1).to(device),
        "advantages": torch.randn(4, generator=g)[seq_ids].to(device),
        "seq_ids": seq_ids.to(device),
        "ref_logps": (-5 * torch.rand(n, generator=g)).to(device),
        "seg_bonus": seg_bonus.to(device),
    }


def forward_backward(fn: Callable, inputs: dict[str, Any]) -> torch.Tensor:
    hidden = inputs["hidden"].detach().requires_grad_()
    weight = inputs["weight"].detach().requires_grad_()
    seg_bonus = inputs["seg_bonus"].detach().requires_grad_()
    rest = {k: v for k, v in inputs.items() if k not in ("hidden", "weight", "target_ids", "loss_mask", "advantages", "seg_bonus")}
    loss, _ = fn(hidden, weight, inputs["target_ids"], inputs["loss_mask"], inputs["advantages"], seg_bonus=seg_bonus, **rest)
    loss.backward()
    return loss.detach()


def algorithms(chunk_size: int, with_triton: bool) -> dict[str, Callable]:
    algos: dict[str, Callable] = {
        "eager": grpo_loss_ref,
        f"chunked({chunk_size})": lambda *a, **k: chunked_linear_grpo_loss(*a, chunk_size=chunk_size, **k),
    }
    if with_triton:
        algos[f"triton(bwd chunk {chunk_size})"] = lambda *a, **k: triton_linear_grpo_loss(*a, backward_chunk_size=chunk_size, **k)
        algos["triton(atomic bwd)"] = lambda *a, **k: triton_linear_grpo_loss(*a, backward_chunk_size=None, **k)
    return algos


def _row(device: str, setting: str, name: str, n: int, h: int, v: int, dtype: torch.dtype, peak: int | None,
         eager_peak: int | None, loss: torch.Tensor, **extra: Any) -> dict[str, Any]:
    # The gradients of hidden and weight are outputs every algorithm must return; the rest of the peak is
    # the algorithm's own workspace (derived: measured peak minus the sizes of those two outputs).
    grads = (n * h + v * h) * torch.tensor([], dtype=dtype).element_size()
    return {
        "device": device, "setting": setting, "algorithm": name, "tokens": n, "hidden": h, "vocab": v,
        "dtype": str(dtype).split(".")[-1], "peak_bytes": peak,
        "ratio_vs_eager": (peak / eager_peak) if (peak is not None and eager_peak) else None,
        "workspace_bytes": (peak - grads) if peak is not None else None, "loss": float(loss), **extra,
    }


def measure_cpu(n: int, h: int, v: int, dtype: torch.dtype, algos: dict[str, Callable], label: str) -> list[dict[str, Any]]:
    rows = []
    inputs = make_inputs(n, h, v, dtype, torch.device("cpu"))
    eager_peak = eager_workspace = None
    for name, fn in algos.items():
        tracker = TensorMemoryTracker()
        start = time.perf_counter()
        with tracker:
            loss = forward_backward(fn, inputs)
        seconds = time.perf_counter() - start
        eager_peak = tracker.peak if name == "eager" else eager_peak
        rows.append(_row("cpu", label, name, n, h, v, dtype, tracker.peak, eager_peak, loss, seconds_fwd_bwd=seconds))
        if name == "eager":
            eager_workspace = rows[-1]["workspace_bytes"]
        rows[-1]["workspace_ratio_vs_eager"] = rows[-1]["workspace_bytes"] / eager_workspace if eager_workspace else None
    return rows


def _matmul_floor_ms(n: int, h: int, v: int, dtype: torch.dtype, device: torch.device, iters: int) -> float:
    """Measured time of the three products alone: logits = h W^T, dh = d W, dW = d^T h."""
    a = torch.randn(n, h, device=device, dtype=dtype)
    w = torch.randn(v, h, device=device, dtype=dtype)
    d = torch.randn(n, v, device=device, dtype=dtype)

    def three() -> None:
        torch.mm(a, w.T)
        torch.mm(d, w)
        torch.mm(d.T, a)

    ms = _cuda_time_ms(three, iters)
    del a, w, d
    return ms


def _cuda_time_ms(fn: Callable[[], Any], iters: int) -> float:
    fn()  # warm-up (Triton compilation, cuBLAS heuristics)
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def measure_gpu(n: int, h: int, v: int, dtype: torch.dtype, algos: dict[str, Callable], iters: int, peak_tflops: float) -> list[dict[str, Any]]:
    device = default_device()
    rows = []
    floor_ms = _matmul_floor_ms(n, h, v, dtype, device, iters)
    nominal_ms = 6.0 * n * h * v / (peak_tflops * 1e12) * 1e3
    inputs = make_inputs(n, h, v, dtype, device)
    eager_peak = eager_workspace = None
    for name, fn in algos.items():
        torch.cuda.empty_cache()
        synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        try:
            loss = forward_backward(fn, inputs)
            synchronize(device)
            peak = torch.cuda.max_memory_allocated(device) - base
            ms = _cuda_time_ms(lambda: forward_backward(fn, inputs), iters)
            error = None
        except torch.OutOfMemoryError as exc:
            peak, ms, loss, error = None, None, torch.tensor(float("nan")), f"OOM: {str(exc).splitlines()[0]}"
        eager_peak = peak if name == "eager" else eager_peak
        rows.append(_row(
            torch.cuda.get_device_name(device), "gpu", name, n, h, v, dtype, peak, eager_peak, loss,
            ms_fwd_bwd=ms, matmul_floor_ms_measured=floor_ms, matmul_floor_ms_nominal=nominal_ms,
            x_floor=(ms / floor_ms) if ms else None, error=error,
        ))
        if name == "eager":
            eager_workspace = rows[-1]["workspace_bytes"]
        rows[-1]["workspace_ratio_vs_eager"] = (
            rows[-1]["workspace_bytes"] / eager_workspace if (eager_workspace and rows[-1]["workspace_bytes"] is not None) else None
        )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    gpu = any(r["setting"] == "gpu" for r in rows)
    head = ["setting", "algorithm", "tokens", "hidden", "vocab", "dtype", "peak MiB", "x eager", "workspace MiB", "x eager"]
    head += ["ms fwd+bwd", "floor ms (meas.)", "floor ms (nominal)", "x floor"] if gpu else ["s fwd+bwd"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        mib = f"{r['peak_bytes'] / 2**20:.1f}" if r["peak_bytes"] is not None else r.get("error", "-")
        ratio = f"{r['ratio_vs_eager']:.3f}" if r["ratio_vs_eager"] is not None else "-"
        ws = f"{r['workspace_bytes'] / 2**20:.1f}" if r["workspace_bytes"] is not None else "-"
        ws_ratio = f"{r['workspace_ratio_vs_eager']:.3f}" if r.get("workspace_ratio_vs_eager") is not None else "-"
        cells = [r["setting"], r["algorithm"], str(r["tokens"]), str(r["hidden"]), str(r["vocab"]), r["dtype"], mib, ratio, ws, ws_ratio]
        if gpu:
            fmt = lambda x: f"{x:.1f}" if x is not None else "-"  # noqa: E731
            cells += [fmt(r.get("ms_fwd_bwd")), fmt(r.get("matmul_floor_ms_measured")), fmt(r.get("matmul_floor_ms_nominal")),
                      f"{r['x_floor']:.2f}" if r.get("x_floor") else "-"]
        else:
            cells += [f"{r['seconds_fwd_bwd']:.2f}"]
        print("| " + " | ".join(cells) + " |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    on_gpu = cuda_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", default="1024,4096,16384" if on_gpu else "64,512", help="comma-separated token counts N")
    p.add_argument("--hidden", type=int, default=QWEN3_VL_2B_HIDDEN, help="H (Qwen3-VL-2B: 2048)")
    p.add_argument("--vocab", type=int, default=QWEN3_VL_2B_VOCAB, help="V (Qwen3 tokenizer: 151,936)")
    p.add_argument("--dtype", default="bfloat16" if on_gpu else "float32", choices=["float32", "bfloat16"], help="input dtype")
    p.add_argument("--chunk-size", type=int, default=2048 if on_gpu else 32, help="tokens per chunk of the torch-chunked baseline and of the Triton chunked backward")
    p.add_argument("--iters", type=int, default=5, help="timed repetitions on the GPU (median)")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="nominal dense peak for the nominal floor (H100 SXM bf16: 989)")
    p.add_argument("--triton-small", default="48,64,4000", help="N,H,V at which the CPU run measures Triton under the interpreter ('' to skip)")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dtype = getattr(torch, args.dtype)
    tokens = [int(t) for t in args.tokens.split(",") if t]
    rows: list[dict[str, Any]] = []
    if cuda_available():
        with_triton = _triton_support.unavailable_reason() is None
        for n in tokens:
            rows += measure_gpu(n, args.hidden, args.vocab, dtype, algorithms(args.chunk_size, with_triton), args.iters, args.peak_tflops)
    else:
        print(f"CPU run: measured tensor peaks of eager and chunked at H={args.hidden}, V={args.vocab}; "
              "Triton (interpreter) only at the small size below.", flush=True)
        for n in tokens:
            rows += measure_cpu(n, args.hidden, args.vocab, dtype, algorithms(args.chunk_size, False), "cpu, full head")
        if args.triton_small:
            n, h, v = (int(x) for x in args.triton_small.split(","))
            with_triton = _triton_support.unavailable_reason() is None
            rows += measure_cpu(n, h, v, dtype, algorithms(max(1, n // 4), with_triton), "cpu, small (Triton interpreted)")
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
