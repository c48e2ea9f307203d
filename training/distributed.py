"""Several processes (``torchrun --nproc_per_node N -m training.sft|grpo``): process group, data split, gradients,
and the ``distributed_strategy`` of the trained modules.

Two strategies (``--distributed_strategy``; ``auto`` picks ``fsdp2`` on CUDA with more than one process,
``replicate`` otherwise):

``replicate``
    Every rank holds the whole model; after the micro-batches of a step each trainable gradient is
    averaged with one ``all_reduce`` (gloo on the CPU, NCCL on GPUs), which is what
    ``DistributedDataParallel`` does. The averaging is written out rather than taken from the DDP wrapper
    because a training step calls the policy in pieces (the language model, the LM head at labelled
    positions only, the projector, SAM2's decoder, the rollout loop outside any ``forward``), which DDP's
    forward-bound hooks cannot follow.

``fsdp2``
    ``torch.distributed.fsdp.fully_shard`` (FSDP2, parameters as dim-0 sharded ``DTensor``) on the
    policy's transformer stacks: every decoder layer of the language model and every block of the vision
    tower is its own unit (all-gathered in its forward pre-hook, resharded after forward, gradients
    reduce-scattered after its backward), then the language model and the vision tower themselves take
    what is left in them (final norm; patch embedding, mergers). These two are the FSDP *roots*, not the
    whole ``Qwen*VLForConditionalGeneration``: FSDP2 makes the first module to run ``forward`` the root,
    and the policy is entered in several places (``model.model(...)`` for a dialogue,
    ``get_image_features`` -> ``visual(...)`` first in a rollout), so only modules whose own ``forward``
    is always the way in can be units.

    Kept whole on every rank and averaged by the ``replicate`` all_reduce instead: the token embedding and
    the LM head (tied in the Qwen-VL 2B/4B checkpoints; ``embed_tokens`` is called by the outer model, not
    inside the language model's ``forward``, and the chunked / Triton policy loss reads the LM-head weight
    directly, outside any ``forward``), the ``[SEG]`` projector and the SAM2 segmenter (called piecewise by
    the losses; small next to the language model). The rollout loop needs nothing special: each of its
    forwards goes through the units' hooks (one all-gather per layer per decoding step, the price of not
    holding the whole model).

    With ``--bf16`` the units use ``MixedPrecisionPolicy(param_dtype=bfloat16, reduce_dtype=float32)``:
    bf16 all-gathers and compute, fp32 gradient reduction, fp32 sharded master weights for AdamW.
    LoRA (peft) adapters live inside the decoder layers and are sharded with them (frozen base weights and
    trainable adapters in one group).

Gradient clipping sums the squared norms of the local shards over the ranks plus those of the replicated
gradients (:func:`clip_grad_norm`); checkpoints hold full (unsharded) state dicts gathered through
``torch.distributed.checkpoint.state_dict`` (:mod:`training.checkpointing`), so a run may resume under either
strategy and any number of processes; :func:`unshard_for_export` turns the sharded modules back into plain
ones at the end so that the final checkpoint is written by the same code as a single-process run. With one
process and ``replicate`` everything here is a no-op.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.distributed as dist
from torch import nn

from training.config import DISTRIBUTED_STRATEGIES as STRATEGIES

__all__ = [
    "STRATEGIES",
    "DistInfo",
    "all_reduce_mean",
    "average_gradients",
    "barrier",
    "clip_grad_norm",
    "full_gradients",
    "init_distributed",
    "prepare_model",
    "resolve_strategy",
    "shard_model",
    "unshard_for_export",
]


@dataclass
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device, *, single_process_group: bool = False) -> DistInfo:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); gloo on the CPU, NCCL on GPUs.

    ``single_process_group``: with one process, still form a one-rank group (an in-memory store, no
    network), which ``fully_shard`` needs to build its device mesh.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if world <= 1:
        if not single_process_group:
            return DistInfo()
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1)
        return DistInfo(0, 1, 0, dist.get_backend())
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_backend())


def resolve_strategy(strategy: str, device: torch.device, world_size: int) -> str:
    """``auto`` -> ``fsdp2`` on CUDA with ``world_size`` > 1, else ``replicate``; the others as given."""
    if strategy not in STRATEGIES:
        raise ValueError(f"Invalid distributed_strategy ({strategy}). Supported values are {', '.join(STRATEGIES)}; "
                         "set --distributed_strategy.")
    if strategy == "auto":
        return "fsdp2" if device.type == "cuda" and world_size > 1 else "replicate"
    return strategy


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def _is_dtensor(tensor: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def _transformer_stacks(module: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    """The language models (``.layers``) and vision towers (``.blocks``) of every Qwen-VL policy in ``module``.

    Found through ``language_model`` / ``visual`` attributes (the ``Qwen*VLModel`` layout of transformers
    5; the outer ``...ForConditionalGeneration`` exposes the same modules as properties, hence the
    de-duplication by identity).
    """
    language, vision, seen = [], [], set()
    for sub in module.modules():
        lm, vis = getattr(sub, "language_model", None), getattr(sub, "visual", None)
        if isinstance(getattr(lm, "layers", None), nn.ModuleList) and id(lm) not in seen:
            seen.add(id(lm))
            language.append(lm)
        if isinstance(getattr(vis, "blocks", None), nn.ModuleList) and id(vis) not in seen:
            seen.add(id(vis))
            vision.append(vis)
    return language, vision


def shard_model(module: nn.Module, *, bf16: bool = False, mesh: Any = None) -> list[str]:
    """Apply FSDP2 to the policy's transformer stacks inside ``module``, in place (see the module docstring).

    Must run after LoRA injection and after ``requires_grad`` is set, and before the optimizer is built (the
    sharded parameters are new ``Parameter`` objects). Needs an initialised process group.

    Returns:
        the qualified names of the modules made FSDP units, roots last.
    Raises:
        ValueError: ``module`` holds no Qwen-VL language model to shard.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    language, vision = _transformer_stacks(module)
    if not language:
        raise ValueError(f"Invalid distributed_strategy (fsdp2) for {type(module).__name__}: no language model with "
                         "decoder layers found to shard. Use --distributed_strategy replicate.")
    if mesh is None:
        device = next(module.parameters()).device
        mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else \
        MixedPrecisionPolicy()
    names = {id(m): n for n, m in module.named_modules()}
    units: list[nn.Module] = []
    for root, children in [(lm, list(lm.layers)) for lm in language] + [(vis, list(vis.blocks)) for vis in vision]:
        # A parameter also reachable outside the root (e.g. tied to the LM head) stays whole on every rank.
        inside, prefix = {id(p) for p in root.parameters()}, (names[id(root)] + ".").lstrip(".")
        shared = {p for n, p in module.named_parameters(remove_duplicate=False)
                  if id(p) in inside and not n.startswith(prefix)}
        # The outer model embeds the tokens before calling the language model: its embedding stays whole.
        embed = root.get_input_embeddings() if any(root is lm for lm in language) else None
        ignored = shared | (set(embed.parameters()) if isinstance(embed, nn.Module) else set())
        for child in children:
            fully_shard(child, mesh=mesh, mp_policy=mp, reshard_after_forward=True, ignored_params=ignored or None)
            units.append(child)
        # reshard_after_forward=True on the roots too (FSDP2 would keep a root unsharded after forward): the
        # rollout runs forwards without a backward, and the weights change between rollouts.
        fully_shard(root, mesh=mesh, mp_policy=mp, reshard_after_forward=True, ignored_params=ignored or None)
        units.append(root)
    # Allocate the unsharded parameters now, outside inference mode: a first all-gather inside the rollout's
    # ``torch.inference_mode`` would make them inference tensors, which the training forward may not update.
    with torch.no_grad():
        for unit in units:
            assert isinstance(unit, FSDPModule)
            unit.unshard()
            unit.reshard()
    return [names[id(u)] for u in units]


def prepare_model(module: nn.Module, config: Any, info: DistInfo) -> str:
    """Apply ``config.distributed_strategy`` to the trained ``module`` in place; returns the resolved strategy.

    Call after the trainable set is final and before the optimizer is built.
    """
    device = next(module.parameters()).device
    strategy = resolve_strategy(config.distributed_strategy, device, info.world_size)
    if strategy == "fsdp2":
        if not dist.is_initialized():
            raise ValueError("Invalid distributed_strategy (fsdp2) without a process group: launch with torchrun "
                             "or use --distributed_strategy replicate.")
        shard_model(module, bf16=bool(getattr(config, "bf16", False)))
    return strategy


def average_gradients(params: Iterable[torch.nn.Parameter], info: DistInfo) -> None:
    """Mean of every replicated trainable parameter's gradient over the ranks (a missing gradient counts as zero).

    FSDP2 shards (``DTensor`` parameters) are skipped: their gradients were already averaged by the
    reduce-scatter after backward (a shard that got no gradient on any rank stays ``None``).
    """
    if not info.enabled:
        return
    for param in params:
        if not param.requires_grad or _is_dtensor(param):
            continue
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
        param.grad.div_(info.world_size)


def clip_grad_norm(params: Iterable[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` over a mix of FSDP2 shards and replicated parameters.

    The global 2-norm is the norm of (norm of the sharded gradients over all ranks, norm of the replicated
    gradients, which are equal on every rank); every gradient is then scaled by
    ``min(1, max_norm / (norm + 1e-6))`` as torch does. Without shards this is ``clip_grad_norm_`` itself.

    Returns:
        the global gradient norm before clipping, a 0-dim float32 tensor (``inf`` ``max_norm`` never clips).
    """
    params = [p for p in params if p.grad is not None]
    sharded = [p for p in params if _is_dtensor(p)]
    if not sharded:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    plain = [p for p in params if not _is_dtensor(p)]
    norm = torch.nn.utils.get_total_norm([p.grad for p in sharded])
    norm = norm.full_tensor()  # DTensor's norm already reduces over the shards (Replicate); as a plain tensor
    if plain:
        plain_norm = torch.nn.utils.get_total_norm([p.grad for p in plain]).to(norm.device)
        norm = torch.nn.utils.get_total_norm([norm, plain_norm])
    torch.nn.utils.clip_grads_with_norm_(sharded, max_norm, norm)
    if plain:
        torch.nn.utils.clip_grads_with_norm_(plain, max_norm, norm.to(plain[0].grad.device))
    return norm


def full_gradients(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable parameter's gradient by name, gathered whole (a collective under FSDP2: call on all ranks)."""
    out: dict[str, torch.Tensor] = {}
    for name, param in module.named_parameters():
        if param.requires_grad and param.grad is not None:
            grad = param.grad.full_tensor() if _is_dtensor(param.grad) else param.grad
            out[name] = grad.detach().to("cpu").clone()
    return out


def unshard_for_export(module: nn.Module) -> None:
    """Turn every FSDP2 unit in ``module`` back into a plain module holding full fp32 parameters, in place.

    A collective (every rank must call it). Afterwards ``module`` is an ordinary single-process module: its
    ``state_dict``/``save_pretrained`` and peft's LoRA merge see whole tensors, so the final checkpoint is
    written by the same code as without sharding. The module cannot train under FSDP2 any more.
    """
    from torch.distributed.fsdp import FSDPModule, fully_shard

    units = [m for m in module.modules() if isinstance(m, FSDPModule)]
    if not units:
        return
    full: list[tuple[nn.Module, str, torch.Tensor, bool]] = []
    for mod in module.modules():
        for name, param in list(mod._parameters.items()):
            if param is not None and _is_dtensor(param):
                full.append((mod, name, param.detach().full_tensor(), param.requires_grad))
    for unit in units:
        state = fully_shard.state(unit)
        state._pre_forward_hook_handle.remove()
        state._post_forward_hook_handle.remove()
        for group in state._fsdp_param_groups:
            for handle in (*group._module_to_pre_save_state_dict_hook_handle.values(),
                           *group._module_to_pre_load_state_dict_hook_handle.values()):
                handle.remove()
        unit.__class__ = type(unit).__mro__[type(unit)._orig_cls_mro_index]
    for mod, name, tensor, requires_grad in full:
        mod._parameters[name] = nn.Parameter(tensor, requires_grad=requires_grad)


def all_reduce_mean(value: float, info: DistInfo) -> float:
    """Mean of a Python number over the ranks (for logs)."""
    if not info.enabled:
        return value
    # NCCL reduces only device tensors
    device = torch.device("cuda", torch.cuda.current_device()) if info.backend == "nccl" else torch.device("cpu")
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / info.world_size
