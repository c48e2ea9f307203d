"""CMake's VIDEOSEG_WITH_CUDA switch: what each value configures, and the error when CUDA is required but missing.

Configure-only runs (no compilation), a few seconds each; "no nvcc" is simulated with CUDACXX
pointing at a path that does not exist.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pybind11
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CMAKE = shutil.which("cmake")
NVCC = shutil.which("nvcc") or next((p for p in ("/usr/local/cuda/bin/nvcc",) if Path(p).exists()), None)
MISSING_NVCC = "/nonexistent/nvcc"
pytestmark = pytest.mark.skipif(CMAKE is None, reason="cmake is not on PATH (the package build needs it anyway)")


def _configure(build_dir: Path, defines: list[str], cuda_compiler: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CUDAARCHS", "CUDACXX")}
    if cuda_compiler is not None:
        env["CUDACXX"] = cuda_compiler
    cmd = [
        CMAKE, "-S", str(REPO_ROOT), "-B", str(build_dir), *defines,
        f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_EXECUTABLE={sys.executable}",
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)


def _status_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stdout.splitlines() if line.startswith("-- videoseg_o3:")]


def test_on_without_a_cuda_compiler_is_an_error_naming_the_fix(tmp_path: Path) -> None:
    proc = _configure(tmp_path, ["-DVIDEOSEG_WITH_CUDA=on"], MISSING_NVCC)
    assert proc.returncode != 0
    message = " ".join(proc.stderr.split())
    assert "VIDEOSEG_WITH_CUDA=on but no CUDA compiler (nvcc) was found" in message
    assert "CUDACXX=/path/to/nvcc" in message and "VIDEOSEG_WITH_CUDA=off" in message


def test_auto_without_a_cuda_compiler_builds_only_the_cpu_module(tmp_path: Path) -> None:
    proc = _configure(tmp_path, ["-DVIDEOSEG_WITH_CUDA=auto"], MISSING_NVCC)
    assert proc.returncode == 0, proc.stderr
    lines = _status_lines(proc)
    assert any("building _C (C++ CPU ops" in line for line in lines), lines
    assert any("not building _C_cuda: no CUDA compiler found" in line for line in lines), lines


def test_off_skips_cuda_and_bad_values_are_rejected(tmp_path: Path) -> None:
    proc = _configure(tmp_path / "off", ["-DVIDEOSEG_WITH_CUDA=OFF"])
    assert proc.returncode == 0, proc.stderr
    assert any("not building _C_cuda (VIDEOSEG_WITH_CUDA=off)" in line for line in _status_lines(proc))
    bad = _configure(tmp_path / "bad", ["-DVIDEOSEG_WITH_CUDA=maybe"])
    assert bad.returncode != 0
    assert "invalid VIDEOSEG_WITH_CUDA (maybe). Supported values are auto, on, off." in " ".join(bad.stderr.split())


@pytest.mark.skipif(NVCC is None, reason="no nvcc here: the CUDA module cannot be configured")
def test_cuda_architectures_can_be_overridden(tmp_path: Path) -> None:
    proc = _configure(tmp_path, ["-DVIDEOSEG_WITH_CUDA=on", "-DCMAKE_CUDA_ARCHITECTURES=86-real"], NVCC)
    assert proc.returncode == 0, proc.stderr
    lines = _status_lines(proc)
    assert any("building _C_cuda" in line and "architectures 86-real," in line for line in lines), lines
