"""The checkpoint directory: init-tiny writes it atomically, load_checkpoint reads it back, errors name the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from videoseg_o3.checkpoint import CONFIG_FILE, init_tiny_checkpoint, load_checkpoint, read_checkpoint_config
from videoseg_o3.cli import main


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    assert main(["init-tiny", str(out), "--family", "qwen2_5_vl", "--seed", "3"]) == 0
    return out


def test_init_tiny_writes_the_layout(tiny_ckpt: Path) -> None:
    assert sorted(p.name for p in tiny_ckpt.iterdir()) == sorted([CONFIG_FILE, "policy", "segmenter"])
    record = json.loads((tiny_ckpt / CONFIG_FILE).read_text())
    assert record["format_version"] == 1 and record["policy"] == {"family": "qwen2_5_vl"}
    assert record["segmenter"]["model_config"] == "sam2_hiera_t" and record["segmenter"]["image_size"] == 256
    assert record["protocol"]["max_turns"] == 3
    assert (tiny_ckpt / "policy" / "model.safetensors").is_file()
    assert (tiny_ckpt / "policy" / "projector.safetensors").is_file()
    assert (tiny_ckpt / "segmenter" / "model.safetensors").is_file()
    assert not list(tiny_ckpt.parent.glob(".tiny.tmp-*"))  # the temporary directory was renamed away
    assert tiny_ckpt.stat().st_mode & 0o055  # readable by others like a normal directory


def test_load_checkpoint(tiny_ckpt: Path) -> None:
    from videoseg_o3.policy import SegPolicy
    from videoseg_o3.protocol import ProtocolConfig

    policy, segmenter, protocol = load_checkpoint(tiny_ckpt, device="cpu")
    assert policy.family == "qwen2_5_vl" and isinstance(protocol, ProtocolConfig)
    assert segmenter.config.image_size == 256
    assert read_checkpoint_config(tiny_ckpt).generation.max_new_tokens == 32
    # same weights as a tiny policy built with the same seed
    reference = SegPolicy.tiny("qwen2_5_vl", seed=3)
    assert torch.equal(policy.model.lm_head.weight, reference.model.lm_head.weight)
    assert torch.equal(policy.projector[0].weight, reference.projector[0].weight)


def test_init_tiny_refuses_a_non_empty_directory(tiny_ckpt: Path, capsys: pytest.CaptureFixture) -> None:
    before = (tiny_ckpt / CONFIG_FILE).read_text()
    assert main(["init-tiny", str(tiny_ckpt)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert (tiny_ckpt / CONFIG_FILE).read_text() == before


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Checkpoint directory not found"):
        load_checkpoint(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="missing videoseg_o3.json"):
        load_checkpoint(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"format_version": 7}))
    with pytest.raises(ValueError, match=r"Invalid format_version \(7\)"):
        load_checkpoint(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"format_version": 1, "policy": {"family": "llama"},
                                                    "segmenter": {}, "protocol": {}}))
    with pytest.raises(ValueError, match=r"Invalid family \(llama\)"):
        load_checkpoint(tmp_path)
    (tmp_path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        load_checkpoint(tmp_path)


def test_overwrite_replaces_atomically(tmp_path: Path) -> None:
    out = tmp_path / "ck"
    out.mkdir()
    (out / "stale.txt").write_text("x")
    with pytest.raises(FileExistsError):
        init_tiny_checkpoint(out)
    init_tiny_checkpoint(out, family="qwen2_5_vl", overwrite=True)
    assert not (out / "stale.txt").exists() and (out / CONFIG_FILE).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
