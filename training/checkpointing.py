"""Resumable training checkpoints: weights, optimizer, scheduler, RNG and data position, written atomically.

Layout of ``OUTPUT_DIR/checkpoint-<step>/``::

    trainable.safetensors   every trainable parameter, by its name in the trained module tree
    optimizer.pt            optimizer.state_dict() (tensors and numbers only: loaded with weights_only=True)
    scheduler.json          scheduler.state_dict() (a LambdaLR's counters)
    rng.safetensors         torch CPU (and CUDA) generator states
    trainer_state.json      step, samples seen (the data position), Python and NumPy RNG states, the config

Frozen weights are not written: they come again from ``--init`` (or the tiny model's seed) when a run is
resumed. A checkpoint directory is written under a temporary name and renamed into place, so a crash
never leaves a directory that looks complete; after a save only the newest ``keep`` checkpoints remain.
Nothing is unpickled when loading.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["CHECKPOINT_PREFIX", "latest_checkpoint", "list_checkpoints", "load_training_state", "save_training_state"]

CHECKPOINT_PREFIX = "checkpoint-"
_STEP = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")
STATE_FILE = "trainer_state.json"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete ``checkpoint-<step>`` directories of ``output_dir``, oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP.match(p.name))
             and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def _rng_state() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    np_state = np.random.get_state()
    py_state = random.getstate()
    host = {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = state
    return host, tensors


def _set_rng_state(host: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    version, internal, gauss = host["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = host["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("torch_cuda_"))]
        if states:
            torch.cuda.set_rng_state_all(states)


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter with ``requires_grad`` by name (tied parameters once), detached on the CPU."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, param in module.named_parameters():
        if param.requires_grad and id(param) not in seen:
            seen.add(id(param))
            out[name] = param.detach().to("cpu").contiguous().clone()
    return out


def save_training_state(
    output_dir: str | Path,
    step: int,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    *,
    samples_seen: int,
    config: dict[str, Any],
    keep: int = 2,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``OUTPUT_DIR/checkpoint-<step>`` atomically and delete all but the newest ``keep`` (0 keeps all)."""
    from safetensors.torch import save_file

    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{CHECKPOINT_PREFIX}{step}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=root))
    try:
        save_file(trainable_state(module), str(tmp / "trainable.safetensors"), metadata={"step": str(step)})
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "scheduler.json").write_text(json.dumps(scheduler.state_dict()))
        host, tensors = _rng_state()
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "rng.safetensors"))
        state = {"step": step, "samples_seen": samples_seen, "rng": host, "config": config, **(extra or {})}
        (tmp / STATE_FILE).write_text(json.dumps(state))
        os.chmod(tmp, 0o755)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep > 0:
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_training_state(
    path: str | Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and every RNG from a checkpoint; returns ``trainer_state.json``.

    Raises:
        FileNotFoundError / ValueError: a missing file or a parameter set that does not match the run's.
    """
    from safetensors.torch import load_file

    path = Path(path)
    for name in ("trainable.safetensors", "optimizer.pt", "scheduler.json", "rng.safetensors", STATE_FILE):
        if not (path / name).is_file():
            raise FileNotFoundError(f"Incomplete checkpoint {path}: missing {name}. Resume from another checkpoint-* "
                                    "directory or start without --resume.")
    weights = load_file(str(path / "trainable.safetensors"))
    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    expected = set(trainable_state(module))
    if set(weights) != expected:
        missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
        raise ValueError(f"Checkpoint {path} does not fit this run's trainable parameters (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}); resume with the configuration it was written with.")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu"))
    scheduler.load_state_dict(json.loads((path / "scheduler.json").read_text()))
    state = json.loads((path / STATE_FILE).read_text())
    _set_rng_state(state["rng"], load_file(str(path / "rng.safetensors")))
    return state
