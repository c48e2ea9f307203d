"""``videoseg-o3 demo``: the one-minute pipeline check (random checkpoint) runs end to end and leaves its files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from videoseg_o3.cli import main


@pytest.mark.slow
def test_demo_runs_every_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As the README describes it (its own tiny random checkpoint); it must say that random output is expected."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--videos", "1", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "replaying the ground-truth trace: select" in printed
    assert "random weights: malformed turns and empty or arbitrary masks are expected" in printed
    assert "random weights: these scores are what empty or arbitrary masks get" in printed
    results = json.loads((out / "results.json").read_text())
    assert 0.0 <= results["overall"]["JF"] <= 1.0 and results["model"]["checkpoint"] == str(out / "ckpt")
    turns = json.loads((out / "segment" / "turns.json").read_text())
    assert len(list((out / "segment" / "masks").glob("*.png"))) == turns["num_frames"]
    assert (out / "segment" / "overlay.mp4").stat().st_size > 0
