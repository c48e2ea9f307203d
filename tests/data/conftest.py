"""Small synthetic datasets written in every layout, shared by the data tests (session-scoped: built once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from videoseg_o3.data.synthetic import SynthConfig, generate_split

TINY = SynthConfig(frames=(6, 10), size=(40, 56), objects=(2, 4), queries_per_video=3)
NUM_VIDEOS = 4
SEED = 11


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory):
    """A callable: layout -> split folder with NUM_VIDEOS tiny videos of the val split in that layout."""
    base = tmp_path_factory.mktemp("synth")
    made: dict[str, Path] = {}

    def build(layout: str) -> Path:
        if layout not in made:
            made[layout] = base / layout / "val"
            generate_split(made[layout], NUM_VIDEOS, seed=SEED, split="val", layout=layout, cfg=TINY)
        return made[layout]

    return build
