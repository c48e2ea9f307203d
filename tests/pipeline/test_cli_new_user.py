"""What a new user ran into with the CLI: each case must end in one clear line, or say what happened."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from videoseg_o3.cli import main


def _no_model(*args, **kwargs):
    raise AssertionError("the model was loaded before the input was checked")


def test_out_is_an_existing_file(tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards: ``--out FILE`` gave a FileExistsError traceback; now one line, exit 2, before loading the model."""
    from videoseg_o3.pipeline import VideoSegO3

    monkeypatch.setattr(VideoSegO3, "from_pretrained", _no_model)
    taken = tmp_path / "result.txt"
    taken.write_text("keep me")
    assert main(["segment", str(tmp_path), "the ball", "--ckpt", str(tiny_ckpt), "--out", str(taken)]) == 2
    err = capsys.readouterr().err
    assert "Invalid --out" in err and "existing file" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert taken.read_text() == "keep me"


@pytest.mark.parametrize("kind", ["missing", "corrupt"])
def test_bad_video_is_reported_before_the_model_loads(kind: str, tiny_ckpt: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards: a missing or undecodable video fails before the checkpoint is loaded (seconds to minutes)."""
    from videoseg_o3.pipeline import VideoSegO3

    monkeypatch.setattr(VideoSegO3, "from_pretrained", _no_model)
    video = tmp_path / "clip.mp4"
    if kind == "corrupt":
        video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    assert main(["segment", str(video), "the ball", "--ckpt", str(tiny_ckpt), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "clip.mp4" in err and "Traceback" not in err and "model was loaded" not in err


def test_no_seg_skips_propagation_without_a_stuck_bar_and_odd_overlay_is_explained(
        tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Guards: with no [SEG] the "propagating" bar used to stay at 0/N; now there is no bar and a line says why.
    An odd-sized video's overlay is one pixel larger: the command says so."""
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (33, 47, 3), dtype=np.uint8)).save(frames / f"{i:05d}.jpg")
    out = tmp_path / "out"
    # one token per turn: the random tiny policy writes no [SEG] (its single token is not [SEG] for this seed)
    assert main(["segment", str(frames), "the ball", "--ckpt", str(tiny_ckpt), "--out", str(out),
                 "--max-new-tokens", "1", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    record = json.loads((out / "turns.json").read_text())
    assert record["error"] and "[SEG]" in record["error"]
    assert "propagation skipped" in captured.out and "[SEG]" in captured.out
    assert "propagating" not in captured.err
    assert "note: overlay.mp4 is 48x34" in captured.out


def test_cli_silences_transformers_notices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards: transformers' info/warning chatter (the mean_resizing notice) and its loading bars are off in the CLI."""
    from transformers.utils import logging as hf_logging

    from videoseg_o3.cli import quiet_libraries

    monkeypatch.delenv("VIDEOSEG_DEBUG", raising=False)
    monkeypatch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    before = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_warning()
    hf_logging.enable_progress_bar()
    try:
        quiet_libraries()
        assert hf_logging.get_verbosity() == hf_logging.ERROR
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.set_verbosity(before[0])
        (hf_logging.enable_progress_bar if before[1] else hf_logging.disable_progress_bar)()


def test_davis_without_annotations_does_not_suggest_submission(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Guards: ``eval --format davis`` on data without Annotations suggested --submission, which davis lacks."""
    root = tmp_path / "valid"
    (root / "JPEGImages" / "v").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / "JPEGImages" / "v" / "00000.jpg")
    meta = {"videos": {"v": {"frames": ["00000"], "expressions": {"0": {"exp": "a cat", "obj_id": "1"}}}}}
    (root / "meta_expressions.json").write_text(json.dumps(meta))
    (tmp_path / "pred").mkdir()
    assert main(["eval", "--format", "davis", "--root", str(root), "--pred", str(tmp_path / "pred"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "No ground truth" in err and "scored locally" in err and "with --submission on the benchmark server" not in err
