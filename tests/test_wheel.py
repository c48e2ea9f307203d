"""`pip install .` ships only the library: kernels/, training/, export/, bench/ stay in the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_contains_only_the_library(tmp_path: Path) -> None:
    env = dict(os.environ, VIDEOSEG_WITH_CUDA="off")  # the CUDA module is not what this test is about
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q", "-w", str(tmp_path),
           # A private build dir: the checkout's own (editable) build must not be reconfigured by this test.
           f"--config-settings=build-dir={tmp_path / 'build'}", str(REPO_ROOT)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (wheel,) = tmp_path.glob("videoseg_o3-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_levels = {n.split("/")[0] for n in names}
    assert {t for t in top_levels if not t.endswith(".dist-info")} == {"videoseg_o3"}, sorted(top_levels)
    assert any(n.startswith("videoseg_o3/_C") and n.endswith(".so") for n in names), "compiled _C missing from the wheel"
    assert "videoseg_o3/cli/__init__.py" in names
