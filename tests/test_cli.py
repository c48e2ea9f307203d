"""The ``videoseg-o3`` command: discovery, --help, info, and error reporting."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from videoseg_o3.cli import build_parser, main


def test_every_command_module_is_registered() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert "info" in sub.choices


def test_info_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--indent", "0"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["version"]
    assert isinstance(info["extension"], bool)


def test_module_entry_point_matches_console_script() -> None:
    out = subprocess.run([sys.executable, "-m", "videoseg_o3", "info"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "extension" in json.loads(out.stdout)


def test_unknown_command_exits_nonzero() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
