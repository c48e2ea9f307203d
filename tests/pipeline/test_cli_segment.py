"""``videoseg-o3 segment`` and ``videoseg-o3 eval --ckpt``: the files a user gets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from videoseg_o3.cli import main


def _write_frames(folder: Path, num_frames: int, height: int, width: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(num_frames):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(folder / f"{i * 5:05d}.jpg")


def test_segment_writes_masks_overlay_and_turns(tiny_ckpt: Path, tmp_path: Path) -> None:
    from videoseg_o3.io import open_video, write_video

    video = tmp_path / "clip.mp4"
    write_video(video, np.random.default_rng(1).integers(0, 256, (6, 48, 64, 3), dtype=np.uint8), fps=10)
    out = tmp_path / "out"
    assert main(["segment", str(video), "the red ball", "--ckpt", str(tiny_ckpt), "--out", str(out), "--no-progress", "--device", "cpu"]) == 0

    masks = sorted((out / "masks").glob("*.png"))
    assert [m.name for m in masks] == [f"{i:05d}.png" for i in range(6)]
    for path in masks:
        array = np.asarray(Image.open(path))
        assert array.shape == (48, 64) and set(np.unique(array)) <= {0, 255}
    with open_video(out / "overlay.mp4") as overlay:
        assert (overlay.num_frames, overlay.height, overlay.width) == (6, 48, 64)
    record = json.loads((out / "turns.json").read_text())
    assert record["query"] == "the red ball" and record["num_frames"] == 6
    assert record["turns"] and {"text", "action", "frames_shown"} <= set(record["turns"][0])
    assert 0 <= record["anchor_frame"] < 6


def test_segment_frame_folder_keeps_frame_names_and_odd_sizes(tiny_ckpt: Path, tmp_path: Path) -> None:
    frames = tmp_path / "JPEGImages" / "vid"
    _write_frames(frames, 4, 33, 47)
    out = tmp_path / "out"
    assert main(["segment", str(frames), "the ball", "--ckpt", str(tiny_ckpt), "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    assert sorted(p.stem for p in (out / "masks").glob("*.png")) == ["00000", "00005", "00010", "00015"]
    assert np.asarray(Image.open(out / "masks" / "00005.png")).shape == (33, 47)
    from videoseg_o3.io import open_video

    with open_video(out / "overlay.mp4") as overlay:  # padded by one pixel to even sides for 4:2:0
        assert (overlay.num_frames, overlay.height, overlay.width) == (4, 34, 48)


@pytest.mark.parametrize(
    "argv_tail, message",
    [
        (["--ckpt", "{missing}"], "Checkpoint directory not found"),
        (["--ckpt", "{ckpt}", "--video", "{bad}"], "not_a_video.mp4"),
    ],
)
def test_segment_errors_are_one_line(tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv_tail, message) -> None:
    bad = tmp_path / "not_a_video.mp4"
    bad.write_text("hello")
    video = str(bad) if "--video" in argv_tail else str(tmp_path / "whatever.mp4")
    tail = [a.format(missing=tmp_path / "missing", ckpt=tiny_ckpt, bad=bad) for a in argv_tail if a not in ("--video", "{bad}")]
    assert main(["segment", video, "the ball", *tail, "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_segment_rejects_empty_query(tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["segment", str(tmp_path), "  ", "--ckpt", str(tiny_ckpt), "--out", str(tmp_path / "o")]) == 2
    assert "QUERY" in capsys.readouterr().err


def test_eval_with_a_checkpoint_scores_the_model(tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "synth"
    assert main(["synth", "--out", str(data), "--videos", "2", "--seed", "3", "--frames", "6-8", "--size", "48-64", "--no-progress"]) == 0
    pred, result = tmp_path / "pred", tmp_path / "result.json"
    argv = ["eval", "--format", "revos", "--root", str(data / "train"), "--ckpt", str(tiny_ckpt), "--device", "cpu",
            "--limit", "2", "--pred", str(pred), "--out", str(result), "--no-progress"]
    assert main(argv) == 0
    record = json.loads(result.read_text())
    assert record["model"]["checkpoint"] == str(tiny_ckpt)
    assert sum(record["model"]["turns"].values()) == 2
    assert len(list(pred.rglob("*.png"))) > 0
    # The saved predictions score the same when read back as a folder.
    assert main(["eval", "--format", "revos", "--root", str(data / "train"), "--pred", str(pred), "--limit", "2",
                 "--out", str(tmp_path / "again.json"), "--no-progress"]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["overall"] == record["overall"]
    assert record["model"]["max_turns"] == 3  # the checkpoint's own budget
    # --max-turns replaces the checkpoint's turn budget for this run only (a turn ablation at inference).
    assert main([*argv[:-5], "--limit", "1", "--max-turns", "1", "--out", str(tmp_path / "one.json"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "one.json").read_text())["model"]["max_turns"] == 1
    assert main([*argv[:-5], "--max-turns", "0"]) == 2
    assert "Invalid --max-turns (0)" in capsys.readouterr().err


def test_eval_needs_predictions_or_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--format", "revos", "--root", str(tmp_path)]) == 2
    assert "--ckpt" in capsys.readouterr().err
