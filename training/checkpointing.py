"""Resumable training checkpoints: weights, optimizer, scheduler, RNG and data position, written atomically.

Layout of ``OUTPUT_DIR/checkpoint-<step>/``::

    trainable.safetensors   every trainable parameter, by its name in the trained module tree
    optimizer.pt            the optimizer state keyed by parameter name (tensors, numbers and names only:
                            loaded with weights_only=True)
    scheduler.json          scheduler.state_dict() (a LambdaLR's counters)
    rng.safetensors         torch CPU (and CUDA) generator states
    trainer_state.json      step, samples seen (the data position), Python and NumPy RNG states, the config

Frozen weights are not written: they come again from ``--init`` (or the tiny model's seed) when a run is
resumed. A checkpoint directory is written under a temporary name and renamed into place, so a crash
never leaves a directory that looks complete; after a save only the newest ``keep`` checkpoints remain.
Nothing is unpickled when loading.

Weights and optimizer state are full (unsharded) state dicts, read through
``torch.distributed.checkpoint.state_dict`` (``full_state_dict=True, cpu_offload=True``): with FSDP2 shards
(:mod:`training.distributed`) that gathers them onto rank 0's CPU, without shards it is the plain state. So
one layout serves both strategies, and a run resumes under any strategy and number of processes
(the optimizer state is keyed by parameter name, not by position). Gathering is a collective
(:func:`gather_training_state` on every rank); rank 0 writes.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CHECKPOINT_PREFIX",
    "TrainingTensors",
    "gather_training_state",
    "latest_checkpoint",
    "list_checkpoints",
    "load_training_state",
    "save_training_state",
]

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


def _trainable_names(module: torch.nn.Module) -> list[str]:
    """Names of the parameters :func:`trainable_state` writes (tied parameters once, first name)."""
    seen: set[int] = set()
    names = []
    for name, param in module.named_parameters():
        if param.requires_grad and id(param) not in seen:
            seen.add(id(param))
            names.append(name)
    return names


def _state_dict_options(**kwargs: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


@dataclass
class TrainingTensors:
    """Full (unsharded) training tensors of one rank's view: ``weights`` by parameter name (trainable only,
    fp32/the parameters' dtype, on the CPU) and the name-keyed ``optimizer`` state dict; both empty off rank 0
    when the module is sharded."""

    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]


def gather_training_state(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> TrainingTensors:
    """Full state dicts of the trainable weights and the optimizer, on rank 0's CPU.

    A collective when ``module`` holds FSDP2 shards (every rank must call it); without shards a local copy.
    """
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    options = _state_dict_options(cpu_offload=True)
    model_state = get_model_state_dict(module, options=options)
    optim_state = get_optimizer_state_dict(module, optimizer, options=options)
    weights = {name: model_state[name].detach().contiguous().clone() for name in _trainable_names(module)
               if name in model_state}
    return TrainingTensors(weights, optim_state)


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
    tensors: TrainingTensors | None = None,
) -> Path:
    """Write ``OUTPUT_DIR/checkpoint-<step>`` atomically and delete all but the newest ``keep`` (0 keeps all).

    ``tensors``: what :func:`gather_training_state` returned on this rank (required when ``module`` is sharded,
    since gathering is a collective the other ranks join); default: gathered here.
    """
    from safetensors.torch import save_file

    if tensors is None:
        tensors = gather_training_state(module, optimizer)
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{CHECKPOINT_PREFIX}{step}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=root))
    try:
        save_file(tensors.weights, str(tmp / "trainable.safetensors"), metadata={"step": str(step)})
        torch.save(tensors.optimizer, tmp / "optimizer.pt")
        (tmp / "scheduler.json").write_text(json.dumps(scheduler.state_dict()))
        host, rng = _rng_state()
        save_file({k: v.contiguous() for k, v in rng.items()}, str(tmp / "rng.safetensors"))
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

    Every rank reads the full files and keeps its own shard (``set_model_state_dict`` /
    ``set_optimizer_state_dict`` with ``full_state_dict=True``); a collective when ``module`` is sharded.

    Raises:
        FileNotFoundError / ValueError: a missing file or a parameter set that does not match the run's.
    """
    from safetensors.torch import load_file

    path = Path(path)
    for name in ("trainable.safetensors", "optimizer.pt", "scheduler.json", "rng.safetensors", STATE_FILE):
        if not (path / name).is_file():
            raise FileNotFoundError(f"Incomplete checkpoint {path}: missing {name}. Resume from another checkpoint-* "
                                    "directory or start without --resume.")
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(module.named_parameters())
    expected = set(_trainable_names(module))
    if set(weights) != expected:
        missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
        raise ValueError(f"Checkpoint {path} does not fit this run's trainable parameters (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}); resume with the configuration it was written with.")
    weights = {name: value.to(params[name].dtype) for name, value in weights.items()}
    set_model_state_dict(module, weights, options=_state_dict_options(strict=False))
    optim_state = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
    groups = optim_state.get("param_groups", [])
    if groups and groups[0]["params"] and isinstance(groups[0]["params"][0], int):
        optimizer.load_state_dict(optim_state)  # position-keyed: written by an older version of this module
    else:
        # strict=False: a parameter that never had a gradient has no AdamW state, in the file as in the run
        set_optimizer_state_dict(module, optimizer, optim_state, options=_state_dict_options(strict=False))
    scheduler.load_state_dict(json.loads((path / "scheduler.json").read_text()))
    state = json.loads((path / STATE_FILE).read_text())
    _set_rng_state(state["rng"], load_file(str(path / "rng.safetensors")))
    return state
