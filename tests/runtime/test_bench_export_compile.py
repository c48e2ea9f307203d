"""``bench/export.py --compile MODE`` times the library's compile option, not a compile path of its own.

Guards that the benchmark's torch.compile rows go through :func:`videoseg_o3.runtime.compile_pipeline` (its
call and graph counts are in the JSON: a decode step that recompiled per timed call would show more than one
graph) and that each row has the eager time of the same call beside it.
"""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.export, pytest.mark.slow]


def test_export_bench_compile_rows(tmp_path) -> None:
    from bench import export as bench_export

    out = tmp_path / "export.json"
    assert bench_export.main(["--compile", "default", "--repeats", "2", "--past", "16", "--threads", "1",
                              "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["compile"] == {"requested": "default", "resolved": "default", "kv_bucket": None,
                                  "cuda_graphs": False}
    for component in ("sam2_seg_decoder", "language_model"):
        row = results[component]
        assert row["library_eager_s"] > 0 and row["torch_compile_s"] > 0
        assert row["torch_compile_speedup"] == pytest.approx(row["library_eager_s"] / row["torch_compile_s"])
        # 3 warm-up calls + 2 timed ones, all compiled, in one graph
        assert row["compile"]["calls"] == 5 and row["compile"]["graphs"] == 1, row["compile"]
