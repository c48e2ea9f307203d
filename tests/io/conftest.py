"""Fixtures for the video I/O tests: generated videos (cached per session) and a hang guard."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from videoio_factory import index_frames, sequential_decode  # noqa: E402

from videoseg_o3.io import write_video  # noqa: E402

# Every I/O test must finish within this many seconds: a decoder stuck on a damaged file must fail the
# test, not stall the suite.
HANG_GUARD_S = 60


@pytest.fixture(autouse=True)
def _hang_guard():
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def _timeout(signum, frame):
        raise TimeoutError(f"video I/O test ran longer than {HANG_GUARD_S} s (a decoder hang?)")

    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(HANG_GUARD_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def long_gop_video(tmp_path_factory) -> Path:
    """300 frames, 96x128, H.264 with GOP 60 and 2 B-frames, frames carrying their index."""
    path = tmp_path_factory.mktemp("videos") / "gop60_b2.mp4"
    write_video(path, index_frames(300), fps=30, gop=60, bframes=2)
    return path


@pytest.fixture(scope="session")
def long_gop_truth(long_gop_video) -> list[torch.Tensor]:
    return sequential_decode(long_gop_video)


@pytest.fixture(scope="session")
def gop30_video(tmp_path_factory) -> Path:
    """300 frames, H.264 with GOP 30 and 2 B-frames (the decode-count goal's video)."""
    path = tmp_path_factory.mktemp("videos") / "gop30_b2.mp4"
    write_video(path, index_frames(300), fps=30, gop=30, bframes=2)
    return path
