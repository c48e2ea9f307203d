"""Shared test configuration.

- ``gpu`` tests skip with a reason on machines without CUDA, and FAIL instead when
  ``VIDEOSEG_REQUIRE_GPU=1`` (a GPU runner whose CUDA went missing must not pass silently).
- ``trt`` tests additionally need TensorRT.
- Triton runs under its interpreter on CPU; TRITON_INTERPRET must be set before triton is imported.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# kernels/, training/, export/ and bench/ are run from the checkout: make them importable from any cwd.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

_REQUIRE_GPU = os.environ.get("VIDEOSEG_REQUIRE_GPU") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_cuda = torch.cuda.is_available()
    has_trt = importlib.util.find_spec("tensorrt") is not None
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            if _REQUIRE_GPU:
                item.add_marker(pytest.mark.usefixtures("_fail_missing_gpu"))
            else:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device; none is visible (torch.cuda.is_available() is False)"))
        if "trt" in item.keywords and not has_trt:
            item.add_marker(pytest.mark.skip(reason="needs TensorRT (`import tensorrt` fails here)"))


@pytest.fixture
def _fail_missing_gpu() -> None:
    pytest.fail("VIDEOSEG_REQUIRE_GPU=1 but torch.cuda.is_available() is False")


@pytest.fixture
def seed() -> int:
    """Seed torch's RNG for a test and return the seed."""
    torch.manual_seed(0)
    return 0


@pytest.fixture(scope="session")
def object_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny checkpoint whose SAM2 says "object present" (shared by the export and runtime tests).

    sam2's object-score head with random weights says "no object" on every frame, which makes every mask empty
    and every comparison of masks (torch vs ONNX, eager vs compiled) trivially equal. Here that head's last bias
    is set high and saved into the checkpoint, so exported graphs carry it too and the masks are non-empty.
    """
    from videoseg_o3.checkpoint import SEGMENTER_DIR, init_tiny_checkpoint
    from videoseg_o3.segmenter import Sam2Segmenter

    path = init_tiny_checkpoint(tmp_path_factory.mktemp("object_ckpt") / "tiny", seed=0)
    segmenter = Sam2Segmenter.from_pretrained(path / SEGMENTER_DIR, device="cpu")
    with torch.no_grad():
        segmenter.sam.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(10.0)
    segmenter.save_pretrained(path / SEGMENTER_DIR)
    return path
