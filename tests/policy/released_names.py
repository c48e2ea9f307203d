"""Parameter names of a released VideoSEG-O3-2B checkpoint, written from the released code's module paths.

Not derived from our state dicts: each pattern below is the attribute path of a module in the released
code, read there. The wrapper (``projects/sa2va/hf/models_qwen3vl/modeling_sa2va_qwen_cotv3_keyframe_withvis.py``,
class ``Sa2VAChatModelQwenCOT``) holds ``self.model`` (transformers' ``Qwen3VLForConditionalGeneration``:
``model.visual``, ``model.language_model``, ``lm_head``), ``self.text_hidden_fcs`` (``Linear, ReLU, Linear,
Dropout``) and ``self.grounding_encoder`` (``projects/sa2va/hf/models_qwen3vl/sam2.py``: ``SAM2`` with
``self.sam2_model``, a SAM2 video predictor built from sam2's Hiera-L modules: Hiera stages [2, 6, 36, 4],
FPN neck of 4 levels, 4 memory-attention layers, mask downsampler of 4 stride-2 layers, fuser of 2
CXBlocks, MLP object-pointer projection, object-score MLP). Layer counts of the 2B model come from
Qwen3-VL-2B-Instruct's config: 28 text layers, 24 vision blocks, deepstack mergers after blocks 5, 11, 17.
"""

from __future__ import annotations

WB = ("weight", "bias")


def _expand(prefix: str, names: list[str]) -> list[str]:
    return [f"{prefix}{n}" for n in names]


def _wb(*modules: str) -> list[str]:
    return [f"{m}.{p}" for m in modules for p in WB]


def _qwen3_vl_2b() -> list[str]:
    visual = ["patch_embed.proj.weight", "patch_embed.proj.bias", "pos_embed.weight"]
    for i in range(24):
        visual += _wb(*(f"blocks.{i}.{m}" for m in ("norm1", "norm2", "attn.qkv", "attn.proj", "mlp.linear_fc1",
                                                    "mlp.linear_fc2")))
    visual += _wb("merger.norm", "merger.linear_fc1", "merger.linear_fc2")
    for j in range(3):
        visual += _wb(*(f"deepstack_merger_list.{j}.{m}" for m in ("norm", "linear_fc1", "linear_fc2")))
    text = ["embed_tokens.weight", "norm.weight"]
    for i in range(28):
        text += [f"layers.{i}.{m}.weight" for m in (
            "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "self_attn.q_norm",
            "self_attn.k_norm", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm",
            "post_attention_layernorm")]
    return (_expand("model.model.visual.", visual) + _expand("model.model.language_model.", text)
            + ["model.lm_head.weight"])


def _attention(prefix: str) -> list[str]:
    return _wb(*(f"{prefix}.{p}" for p in ("q_proj", "k_proj", "v_proj", "out_proj")))


def _sam2_hiera_l() -> list[str]:
    trunk = ["pos_embed", "pos_embed_window"] + _wb("patch_embed.proj")
    for i in range(2 + 6 + 36 + 4):
        trunk += _wb(*(f"blocks.{i}.{m}" for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.layers.0",
                                                   "mlp.layers.1")))
    for i in (2, 8, 44):  # the first block of stages 2-4 projects to the wider dimension
        trunk += _wb(f"blocks.{i}.proj")
    names = _expand("image_encoder.trunk.", trunk)
    names += _wb(*(f"image_encoder.neck.convs.{k}.conv" for k in range(4)))
    for i in range(4):
        layer = f"memory_attention.layers.{i}"
        names += _attention(f"{layer}.self_attn") + _attention(f"{layer}.cross_attn_image")
        names += _wb(*(f"{layer}.{m}" for m in ("linear1", "linear2", "norm1", "norm2", "norm3")))
    names += _wb("memory_attention.norm")
    # stride 2 per layer to a total stride of 16: 4 x (conv, LayerNorm2d, GELU), then a 1x1 conv
    names += _wb(*(f"memory_encoder.mask_downsampler.encoder.{k}" for k in (0, 1, 3, 4, 6, 7, 9, 10, 12)))
    names += _wb("memory_encoder.pix_feat_proj", "memory_encoder.out_proj")
    for i in range(2):
        block = f"memory_encoder.fuser.layers.{i}"
        names += _wb(*(f"{block}.{m}" for m in ("dwconv", "norm", "pwconv1", "pwconv2"))) + [f"{block}.gamma"]
    names += ["sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
              "sam_prompt_encoder.not_a_point_embed.weight", "sam_prompt_encoder.no_mask_embed.weight"]
    names += [f"sam_prompt_encoder.point_embeddings.{k}.weight" for k in range(4)]
    names += _wb(*(f"sam_prompt_encoder.mask_downscaling.{k}" for k in (0, 1, 3, 4, 6)))
    decoder = "sam_mask_decoder"
    for i in range(2):
        layer = f"{decoder}.transformer.layers.{i}"
        names += _attention(f"{layer}.self_attn") + _attention(f"{layer}.cross_attn_token_to_image")
        names += _attention(f"{layer}.cross_attn_image_to_token")
        names += _wb(*(f"{layer}.{m}" for m in ("norm1", "norm2", "norm3", "norm4", "mlp.layers.0", "mlp.layers.1")))
    names += _attention(f"{decoder}.transformer.final_attn_token_to_image")
    names += _wb(f"{decoder}.transformer.norm_final_attn")
    names += [f"{decoder}.{t}.weight" for t in ("iou_token", "mask_tokens", "obj_score_token")]
    names += _wb(*(f"{decoder}.output_upscaling.{k}" for k in (0, 1, 3)))
    names += _wb(f"{decoder}.conv_s0", f"{decoder}.conv_s1")
    for k in range(4):
        names += _wb(*(f"{decoder}.output_hypernetworks_mlps.{k}.layers.{j}" for j in range(3)))
    names += _wb(*(f"{decoder}.iou_prediction_head.layers.{j}" for j in range(3)))
    names += _wb(*(f"{decoder}.pred_obj_score_head.layers.{j}" for j in range(3)))
    names += ["maskmem_tpos_enc", "no_mem_embed", "no_mem_pos_enc", "no_obj_ptr"]
    names += _wb("mask_downsample") + _wb(*(f"obj_ptr_proj.layers.{j}" for j in range(3)))
    return _expand("grounding_encoder.sam2_model.", names)


RELEASED_2B_NAMES: list[str] = (_qwen3_vl_2b() + _wb("text_hidden_fcs.0", "text_hidden_fcs.2") + _sam2_hiera_l())
