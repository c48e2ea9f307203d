"""bench/kernels.py: the memory tracker counts what it should, and a tiny run produces ratios."""

from __future__ import annotations

import pytest
import torch

from bench.kernels import TensorMemoryTracker, algorithms, measure_cpu


def test_tracker_counts_new_storages_once_and_releases_them() -> None:
    base = torch.ones(1000)  # made before the block: never counted
    with TensorMemoryTracker() as tracker:
        a = base * 2  # 4000 bytes
        view = a[:10]  # a view: nothing new
        a.add_(1)  # in place: nothing new
        b = torch.empty(500, dtype=torch.float64)  # 4000 bytes
        assert tracker.current == 8000
        del a, view, b
        assert tracker.current == 0
        c = base[:500]  # a view of an input
        assert tracker.current == 0
    assert tracker.peak == 8000
    del c


def test_tracker_sees_the_backward_pass() -> None:
    x = torch.randn(64, 64, requires_grad=True)
    with TensorMemoryTracker() as tracker:
        (x @ x).relu().sum().backward()
    # x.grad (16 KiB) survives the block; the product and the relu output existed during it.
    assert tracker.current >= x.numel() * 4
    assert tracker.peak >= 3 * x.numel() * 4


def test_tiny_cpu_run_reports_memory_ratios() -> None:
    rows = measure_cpu(24, 16, 300, torch.float32, algorithms(chunk_size=4, with_triton=False), "test")
    eager, chunked = rows
    assert eager["ratio_vs_eager"] == 1.0 and eager["peak_bytes"] > 0
    # the chunked workspace holds a few 4 x V tiles instead of a few 24 x V tensors
    assert chunked["workspace_bytes"] < eager["workspace_bytes"]
    assert abs(chunked["loss"] - eager["loss"]) < 1e-5


@pytest.mark.triton
def test_tiny_cpu_run_with_triton() -> None:
    rows = measure_cpu(20, 32, 200, torch.float32, algorithms(chunk_size=5, with_triton=True), "test")
    by_name = {r["algorithm"]: r for r in rows}
    for name in ("triton(bwd chunk 5)", "triton(atomic bwd)"):
        assert by_name[name]["workspace_bytes"] < by_name["eager"]["workspace_bytes"], name
        assert abs(by_name[name]["loss"] - by_name["eager"]["loss"]) < 1e-5, name


@pytest.mark.gpu
def test_tiny_gpu_run_reports_time_and_memory() -> None:
    from bench.kernels import measure_gpu

    rows = measure_gpu(256, 64, 1000, torch.bfloat16, algorithms(chunk_size=64, with_triton=True), iters=2, peak_tflops=989.0)
    by_name = {r["algorithm"]: r for r in rows}
    assert set(by_name) == {"eager", "chunked(64)", "triton(bwd chunk 64)", "triton(atomic bwd)"}
    for name, row in by_name.items():
        assert row["error"] is None and row["ms_fwd_bwd"] > 0 and row["peak_bytes"] > 0, (name, row)
        assert abs(row["loss"] - by_name["eager"]["loss"]) < 5e-2, (name, row["loss"], by_name["eager"]["loss"])
