"""``videoseg-o3 app`` argument handling: one clear line and exit code 2, before any model loads."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from videoseg_o3.cli import build_parser, main


def test_app_command_is_registered_with_loopback_default() -> None:
    args = build_parser().parse_args(["app", "--ckpt", "CKPT"])
    assert (args.host, args.port, args.max_frames, args.examples) == ("127.0.0.1", 7860, 1800, 3)


def test_bad_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["app", "--ckpt", "CKPT", "--port", "0"]) == 2
    assert "videoseg-o3 app: error: Invalid port (0). Use an int in 1..65535." in capsys.readouterr().err


def test_missing_checkpoint_names_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["app", "--ckpt", str(tmp_path / "absent")]) == 2
    assert "Create a tiny one with `videoseg-o3 init-tiny" in capsys.readouterr().err


def test_missing_gradio_says_how_to_install(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Guards the optional dependency: without gradio the command fails with the install command,
    before spending time on loading a checkpoint."""
    monkeypatch.setitem(sys.modules, "gradio", None)  # makes `import gradio` raise ImportError
    assert main(["app", "--ckpt", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "The web demo needs gradio" in err and "pip install 'videoseg_o3[app]'" in err
