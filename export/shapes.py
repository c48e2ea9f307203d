"""The input/output contract of every exported graph, in one dict.

``SPECS[component]`` lists the graph's inputs and outputs in order, each as a tuple of dimensions. A
dimension is an int, the name of a size fixed by the checkpoint (resolved by :func:`checkpoint_dims`), or
the name of a dynamic axis (listed in the component's ``"dynamic"``). A name containing ``{i}`` is one
tensor per language-model layer. The ONNX files, the manifest, the TensorRT optimisation profiles and
the runtime all read this table, so a graph and its users cannot disagree.
"""

from __future__ import annotations

from typing import Any

SPECS: dict[str, dict[str, Any]] = {
    "sam2_image_encoder": {
        "inputs": {"image": ("batch", 3, "image_size", "image_size")},
        "outputs": {
            "image_embed": ("batch", 256, "feat", "feat"),
            "high_res_0": ("batch", 32, "feat_x4", "feat_x4"),
            "high_res_1": ("batch", 64, "feat_x2", "feat_x2"),
        },
        "dynamic": ("batch",),
    },
    "sam2_seg_decoder": {
        "inputs": {
            "image_embed": ("batch", 256, "feat", "feat"),
            "high_res_0": ("batch", 32, "feat_x4", "feat_x4"),
            "high_res_1": ("batch", 64, "feat_x2", "feat_x2"),
            "seg_embedding": ("batch", 256),
        },
        "outputs": {
            "masks": ("batch", "num_mask_tokens", "feat_x4", "feat_x4"),
            "iou": ("batch", "num_mask_tokens"),
            "mask_tokens": ("batch", "num_mask_tokens", 256),
            "object_score_logits": ("batch", 1),
        },
        "dynamic": ("batch",),
    },
    "sam2_memory_encoder": {
        "inputs": {
            "pix_feat": ("batch", 256, "feat", "feat"),
            "mask_for_mem": ("batch", 1, "image_size", "image_size"),
        },
        "outputs": {
            "maskmem_features": ("batch", "mem_dim", "feat", "feat"),
            "maskmem_pos_enc": ("batch", "mem_dim", "feat", "feat"),
        },
        "dynamic": ("batch",),
    },
    "sam2_memory_attention": {
        "inputs": {
            "curr": ("feat_hw", "batch", 256),
            "curr_pos": ("feat_hw", "batch", 256),
            "memory": ("memory_tokens", "batch", "mem_dim"),
            "memory_pos": ("memory_tokens", "batch", "mem_dim"),
            "memory_mask": ("batch", "memory_tokens"),
        },
        "outputs": {"conditioned": ("feat_hw", "batch", 256)},
        "dynamic": ("batch",),
    },
    "vision_encoder": {
        "inputs": {
            "pixel_values": ("patches", "patch_dim"),
            "interp_indices": ("patches", 4),
            "interp_weights": ("patches", 4),
            "rotary_pos_ids": ("patches", 2),
        },
        "outputs": {
            "image_embeds": ("merged_tokens", "text_hidden"),
            "deepstack_embeds": ("num_deepstack", "merged_tokens", "text_hidden"),
        },
        "dynamic": ("patches", "merged_tokens"),
    },
    "language_model": {
        "inputs": {
            "input_ids": (1, "seq"),
            "position_ids": (3, 1, "seq"),
            "image_embeds": ("image_tokens", "text_hidden"),
            "deepstack_embeds": ("num_deepstack", "image_tokens", "text_hidden"),
            "past_key_{i}": (1, "kv_heads", "past", "head_dim"),
            "past_value_{i}": (1, "kv_heads", "past", "head_dim"),
        },
        "outputs": {
            "logits": (1, "vocab"),
            "hidden_states": (1, "seq", "text_hidden"),
            "seg_embeddings": (1, "seq", 256),
            "present_key_{i}": (1, "kv_heads", "total", "head_dim"),
            "present_value_{i}": (1, "kv_heads", "total", "head_dim"),
        },
        "dynamic": ("seq", "image_tokens", "past", "total"),
    },
}

# Integer dtypes of inputs that are not float32 (everything else is float32).
INPUT_DTYPES: dict[str, str] = {
    "interp_indices": "int64",
    "rotary_pos_ids": "int64",
    "input_ids": "int64",
    "position_ids": "int64",
    "memory_mask": "bool",
}

SAM2_COMPONENTS = ("sam2_image_encoder", "sam2_seg_decoder", "sam2_memory_encoder", "sam2_memory_attention")
POLICY_COMPONENTS = ("vision_encoder", "language_model")
COMPONENTS = SAM2_COMPONENTS + POLICY_COMPONENTS

# TensorRT optimisation profiles: (min, opt, max) of every dynamic axis. A deployment with longer
# dialogues or more images per chunk raises the maxima (the engine's memory grows with them).
PROFILE_RANGES: dict[str, tuple[int, int, int]] = {
    "batch": (1, 1, 8),
    "patches": (16, 1024, 16384),
    "merged_tokens": (4, 256, 4096),
    "seq": (1, 1, 8192),
    "image_tokens": (0, 0, 8192),
    "past": (0, 2048, 16384),
    "total": (1, 2048, 16384),
}


def layer_names(template: str, num_layers: int) -> list[str]:
    """``"past_key_{i}"`` -> ``["past_key_0", ...]``; a name without ``{i}`` -> ``[name]``."""
    return [template.format(i=i) for i in range(num_layers)] if "{i}" in template else [template]


def expand(component: str, dims: dict[str, int], kind: str) -> dict[str, tuple[int | str, ...]]:
    """Inputs or outputs (``kind``) of ``component`` with per-layer names expanded and fixed sizes resolved;
    dynamic axes stay as their names. Per-layer tensors alternate key/value layer by layer, the order the
    graphs take and return them."""
    spec = SPECS[component]
    dynamic = set(spec["dynamic"])
    entries = spec[kind]
    resolved: dict[str, tuple[int | str, ...]] = {}
    templates = [name for name in entries if "{i}" in name]
    fixed = [name for name in entries if "{i}" not in name]
    for name in fixed:
        resolved[name] = _resolve(entries[name], dims, dynamic)
    for i in range(dims.get("num_layers", 0) if templates else 0):
        for name in templates:
            resolved[name.format(i=i)] = _resolve(entries[name], dims, dynamic)
    return resolved


def _resolve(shape: tuple[int | str, ...], dims: dict[str, int], dynamic: set[str]) -> tuple[int | str, ...]:
    out: list[int | str] = []
    for dim in shape:
        if isinstance(dim, int) or dim in dynamic:
            out.append(dim)
        elif dim in dims:
            out.append(int(dims[dim]))
        else:
            raise KeyError(f"Unknown dimension ({dim}); checkpoint_dims must provide it.")
    return tuple(out)


def dynamic_axes(component: str, dims: dict[str, int]) -> dict[str, dict[int, str]]:
    """``{tensor: {axis: name}}`` for torch.onnx.export, from the spec."""
    axes: dict[str, dict[int, str]] = {}
    for kind in ("inputs", "outputs"):
        for name, shape in expand(component, dims, kind).items():
            named = {axis: dim for axis, dim in enumerate(shape) if isinstance(dim, str)}
            if named:
                axes[name] = named
    return axes


def checkpoint_dims(segmenter: Any | None, policy: Any | None) -> dict[str, int]:
    """The fixed sizes of a checkpoint's graphs: SAM2 input and feature sizes, memory slots, the policy's
    widths, heads, layers and vocabulary."""
    dims: dict[str, int] = {}
    if segmenter is not None:
        sam = segmenter.sam
        size = int(segmenter.image_size)
        feat = size // 16
        tokens_per_ptr = max(1, sam.hidden_dim // sam.mem_dim)
        dims.update(
            image_size=size, feat=feat, feat_x2=feat * 2, feat_x4=feat * 4, feat_hw=feat * feat,
            mem_dim=int(sam.mem_dim), num_mask_tokens=int(sam.sam_mask_decoder.num_mask_tokens),
            memory_tokens=int(sam.num_maskmem) * feat * feat
            + (int(sam.max_obj_ptrs_in_encoder) * tokens_per_ptr if sam.use_obj_ptrs_in_encoder else 0),
        )
    if policy is not None:
        config = policy.model.config
        text, vision = config.text_config, config.vision_config
        dims.update(
            patch_dim=int(vision.in_channels * vision.temporal_patch_size * vision.patch_size ** 2),
            text_hidden=int(text.hidden_size),
            num_deepstack=len(getattr(vision, "deepstack_visual_indexes", []) or []),
            kv_heads=int(text.num_key_value_heads),
            head_dim=int(getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads),
            num_layers=int(text.num_hidden_layers),
            vocab=int(policy.model.lm_head.weight.shape[0]),
        )
    return dims
