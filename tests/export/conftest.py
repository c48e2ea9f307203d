"""Shared fixtures of the export tests: the tiny "object present" checkpoint (``object_checkpoint``, see
tests/conftest.py) exported once, and loaded in PyTorch."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def exported(object_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """``(export_dir, manifest)`` of ``python -m export.trt`` on ``object_checkpoint`` (all components)."""
    from export.shapes import COMPONENTS
    from export.trt import export_all

    out = tmp_path_factory.mktemp("export_out")
    manifest = export_all(object_checkpoint, out, components=list(COMPONENTS), log=lambda line: None)
    return out, manifest


@pytest.fixture(scope="session")
def loaded(object_checkpoint: Path):
    """``(policy, segmenter)`` of ``object_checkpoint`` in PyTorch, float32, eval."""
    from videoseg_o3.checkpoint import load_checkpoint

    policy, segmenter, _ = load_checkpoint(object_checkpoint, device="cpu")
    return policy.float().eval(), segmenter.eval()
