"""Training data: VTS-CoT conversations for SFT and RL prompts for GRPO, read from benchmark folders.

A data folder is a benchmark split in the mask_dict layout (what ``videoseg-o3 synth`` writes, and how the
released VideoSEG-O3 data sits beside ReVOS / MeViS)::

    DIR/JPEGImages/<video_name>/<frame>.jpg
    DIR/mask_dict.json           {anno_id: [RLE or null per frame]}
    DIR/vts_cot.json             SFT records (released convention, videoseg_o3.data.vtscot)
    DIR/rl_data.json             RL records: [[{video_name, frames, exp, anno_id, mask_existence}], ...]

SFT encoding (:func:`encode_sft_record`): the record becomes the protocol's dialogue
(:func:`videoseg_o3.data.vtscot.record_dialogue`), rendered with the policy's own chat template through
its processor. Images enter ``pixel_values`` in the order their placeholders appear in the text, which is
the order Qwen-VL scatters image features (the released SFT reader concatenates the turn-0 spatial frames
before the temporal ones while the text has them the other way round; that misassignment is not copied).
Labels are the assistant tokens of every turn plus each turn's ``<|im_end|>``; everything else (system,
user, image tokens, the template's newline after ``<|im_end|>``) is ``-100``. Ground-truth masks come from
``mask_dict.json`` (the union over the record's ``anno_id``), decoded with :mod:`videoseg_o3.data.masks`.

Deliberately simple: frames are decoded per example (no cross-example cache); one example is one sequence
(no packing), so a micro-batch is a list of examples whose losses the trainer averages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from videoseg_o3.data import read_json
from videoseg_o3.data.masks import decode_rle

__all__ = [
    "SEG_SUPERVISION",
    "IGNORE_INDEX",
    "DataFolder",
    "RlPrompt",
    "SftExample",
    "encode_sft_record",
    "label_spans",
    "load_rl_prompts",
    "load_sft_records",
]

IGNORE_INDEX = -100
SEG_SUPERVISION = ("every_turn", "first_seg")
"""Which ``[SEG]`` tokens get a mask loss in SFT: ``every_turn`` (each turn's ``[SEG]`` on the spatial frames
and the keyframe that turn names) or ``first_seg`` (the released recipe: only the sample's first ``[SEG]``,
on the spatial frames and every select's keyframe)."""


# ---------------------------------------------------------------------------------------- folders


@dataclass
class DataFolder:
    """One benchmark split on disk; masks are read once and kept (they are RLE strings, not pixels)."""

    root: Path
    image_dir: str = "JPEGImages"
    mask_file: str = "mask_dict.json"
    _mask_dict: dict[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"Missing data directory {self.root}. Pass a folder holding {self.image_dir}/ and "
                                    f"{self.mask_file} (e.g. one written by `videoseg-o3 synth`).")

    @property
    def mask_dict(self) -> dict[str, Any]:
        if self._mask_dict is None:
            data = read_json(self.root / self.mask_file)
            if not isinstance(data, dict):
                raise ValueError(f"Invalid {self.root / self.mask_file}: expected an object {{anno_id: [RLE per frame]}}.")
            self._mask_dict = data
        return self._mask_dict

    def frame_paths(self, video_name: str, frames: Sequence[str]) -> list[Path]:
        from videoseg_o3.data.paths import check_component, safe_join

        video = check_component(video_name, "video_name", str(self.root))
        return [safe_join(self.root, self.image_dir, video, f"{check_component(f, 'frame', str(self.root))}.jpg")
                for f in frames]

    def read_frames(self, video_name: str, frames: Sequence[str], indices: Sequence[int]) -> torch.Tensor:
        """``(n, H, W, 3)`` uint8 frames ``indices`` (any order, repeats allowed) of a video."""
        from videoseg_o3.io import open_video

        paths = self.frame_paths(video_name, frames)
        wanted = sorted(set(int(i) for i in indices))
        for i in wanted:
            if not paths[i].is_file():
                raise FileNotFoundError(f"Missing frame {paths[i]} (video {video_name}, frame {i}).")
        with open_video([paths[i] for i in wanted]) as reader:
            decoded = torch.as_tensor(reader.get_frames(list(range(len(wanted)))))
        row = {index: r for r, index in enumerate(wanted)}
        return decoded[[row[int(i)] for i in indices]]

    def read_masks(self, anno_ids: Sequence[Any], indices: Sequence[int], num_frames: int, size: tuple[int, int],
                   source: str) -> torch.Tensor:
        """``(n, H, W)`` bool ground truth at frames ``indices``: the union over ``anno_ids``."""
        out = np.zeros((len(indices), *size), dtype=bool)
        path = self.root / self.mask_file
        for anno in anno_ids:
            per_frame = self.mask_dict.get(str(anno))
            if not isinstance(per_frame, list) or len(per_frame) != num_frames:
                raise ValueError(f"Invalid anno_id {anno} in {source}: {path} has no list of {num_frames} RLEs under it.")
            for row, index in enumerate(indices):
                rle = per_frame[int(index)]
                if rle is None:
                    continue
                mask = decode_rle(rle, f"{path} [{anno}][{index}]")
                if mask.shape != tuple(size):
                    raise ValueError(f"Invalid RLE size {list(mask.shape)} in {path} [{anno}][{index}]: the frames are "
                                     f"{list(size)}.")
                out[row] |= mask.astype(bool)
        return torch.from_numpy(out)


def _load_list(path: Path, what: str) -> list[Any]:
    data = read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"Invalid {what} file {path}: expected a JSON list of records.")
    return data


def load_sft_records(folder: DataFolder, file_name: str = "vts_cot.json") -> list[dict[str, Any]]:
    """The VTS-CoT records of a folder (the file is a JSON list)."""
    return _load_list(folder.root / file_name, "VTS-CoT")


# ------------------------------------------------------------------------------------------- SFT


@dataclass
class SftExample:
    """One encoded VTS-CoT conversation.

    Attributes:
        input_ids: ``(L,)`` long, the whole dialogue with image placeholders expanded.
        labels: ``(L,)`` long, ``input_ids`` on assistant tokens (incl. each turn's ``<|im_end|>``), else -100.
        mm_token_type_ids: ``(L,)`` int32, 1 at image placeholder tokens.
        pixel_values: ``(P, D)`` float32 patches of every image in text order; image_grid_thw ``(n, 3)`` long.
        seg_positions: ``(S,)`` long, positions of the supervised ``[SEG]`` tokens in ``input_ids``.
        mask_frames: video frame indices with ground truth; sam_frames ``(F, H, W, 3)`` uint8 of them and
            gt_masks ``(F, H, W)`` bool.
        seg_pairs: ``(K, 2)`` long, (row of ``seg_positions``, row of ``mask_frames``) per supervised mask.
    """

    input_ids: torch.Tensor
    labels: torch.Tensor
    mm_token_type_ids: torch.Tensor
    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor
    seg_positions: torch.Tensor
    mask_frames: list[int]
    sam_frames: torch.Tensor
    gt_masks: torch.Tensor
    seg_pairs: torch.Tensor
    source: str = ""
    frame_keys: list[str] = field(default_factory=list)
    """One key per ``mask_frames`` entry (folder, video, frame): frozen SAM2 features can be cached by it."""

    @property
    def num_label_tokens(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())


def _expanded_offset(text: str, position: int, num_tokens: Sequence[int], image_token: str) -> int:
    """Where character ``position`` of ``text`` lands once the i-th ``image_token`` is repeated ``num_tokens[i]`` times."""
    before = text[:position].count(image_token)
    return position + sum(int(n) - 1 for n in num_tokens[:before]) * len(image_token)


def label_spans(processor: Any, messages: list[dict[str, Any]], eos: str = "<|im_end|>") -> tuple[str, list[tuple[int, int]]]:
    """The chat-template rendering of ``messages`` and the character span of each assistant turn's label.

    A span is the assistant content plus ``eos`` (the template's closing ``<|im_end|>``), found as the text the
    template adds after the prefix rendered with a generation prompt. Raises when the template does not
    render a dialogue as a prefix of its continuation (multi-turn training needs that).
    """
    full = processor.apply_chat_template(messages, tokenize=False)
    spans = []
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prefix = processor.apply_chat_template(messages[:k], tokenize=False, add_generation_prompt=True)
        content = "".join(c["text"] for c in message["content"] if c.get("type") == "text") \
            if isinstance(message["content"], list) else str(message["content"])
        if not full.startswith(prefix) or not full[len(prefix):].startswith(content + eos):
            raise RuntimeError("The policy's chat template does not render assistant turn "
                               f"{len(spans)} as prefix + content + {eos}; SFT labels need a ChatML-style template.")
        spans.append((len(prefix), len(prefix) + len(content) + len(eos)))
    return full, spans


def _seg_pairs(dialogue: Any, seg_turns: list[int], supervision: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Frames with ground truth and (seg row, frame row) pairs, by ``supervision``."""
    frames: list[int] = []

    def row(frame: int) -> int:
        if frame not in frames:
            frames.append(frame)
        return frames.index(frame)

    pairs: list[tuple[int, int]] = []
    if supervision == "every_turn":
        for s, turn in enumerate(seg_turns):
            targets = list(dialogue.spatial_frames)
            if dialogue.turn_keyframes[turn] is not None:
                targets.append(int(dialogue.turn_keyframes[turn]))
            for frame in dict.fromkeys(targets):
                pairs.append((s, row(frame)))
    elif supervision == "first_seg":
        if seg_turns:
            selects = [k for k, p in zip(dialogue.turn_keyframes, dialogue.parses) if p.action == "select" and k is not None]
            for frame in dict.fromkeys([*dialogue.spatial_frames, *selects]):
                pairs.append((0, row(frame)))
    else:
        raise ValueError(f"Invalid seg_supervision ({supervision}). Supported values are {', '.join(SEG_SUPERVISION)}.")
    return frames, pairs


def encode_sft_record(
    record: dict[str, Any],
    folder: DataFolder,
    processor: Any,
    seg_token_id: int,
    protocol: Any,
    *,
    seg_supervision: str = "every_turn",
    max_length: int | None = None,
    source: str = "record",
) -> SftExample:
    """Encode one VTS-CoT record for SFT with the policy's ``processor`` (see the module docstring).

    Raises:
        ValueError / FileNotFoundError: a malformed record or a missing frame/mask file (named).
    """
    from videoseg_o3.agent.frames import prepare_policy_images
    from videoseg_o3.data.vtscot import record_dialogue
    from videoseg_o3.protocol import chat_messages

    if seg_supervision not in SEG_SUPERVISION:
        raise ValueError(f"Invalid seg_supervision ({seg_supervision}). Supported values are {', '.join(SEG_SUPERVISION)}.")
    dialogue = record_dialogue(record, protocol, source=source)
    for key in ("video_name", "anno_id"):
        if key not in record:
            raise ValueError(f"Invalid VTS-CoT record in {source}: missing '{key}'.")
    anno_ids = record["anno_id"] if isinstance(record["anno_id"], list) else [record["anno_id"]]
    messages = chat_messages(dialogue.system, dialogue.observations, dialogue.assistant_texts)
    text, spans = label_spans(processor, messages)

    specs = dialogue.frame_specs()
    image_token = getattr(processor, "image_token", "<|image_pad|>")
    frames = folder.read_frames(record["video_name"], record["frames"], [s.index for s in specs])
    images = prepare_policy_images(frames, specs, processor.image_processor)  # text order, one row block per image
    expanded = text
    if specs:
        from videoseg_o3.agent.frames import expand_image_placeholders

        expanded = expand_image_placeholders(text, images.num_tokens, image_token)
    spans = [(_expanded_offset(text, a, images.num_tokens, image_token), _expanded_offset(text, b, images.num_tokens, image_token))
             for a, b in spans]
    encoded = processor.tokenizer(expanded, add_special_tokens=False, return_offsets_mapping=True)
    ids = torch.tensor(encoded["input_ids"], dtype=torch.long)
    labels = torch.full_like(ids, IGNORE_INDEX)
    turn_of = torch.full_like(ids, -1)
    for turn, (a, b) in enumerate(spans):
        for t, (start, end) in enumerate(encoded["offset_mapping"]):
            if start >= a and end <= b and end > start:
                labels[t] = ids[t]
                turn_of[t] = turn
            elif start < b and end > a:
                raise RuntimeError(f"Token {t} straddles the label span of assistant turn {turn} in {source}.")
    if max_length is not None and ids.numel() > max_length:
        raise ValueError(f"Invalid example in {source}: {ids.numel()} tokens exceed max_length ({max_length}); raise "
                         "max_length or lower the protocol's frame budgets.")
    seg_positions = ((ids == seg_token_id) & (labels != IGNORE_INDEX)).nonzero().flatten()
    seg_turns = [int(turn_of[p]) for p in seg_positions]
    mask_frames, pairs = _seg_pairs(dialogue, seg_turns, seg_supervision)
    if mask_frames:
        sam_frames = folder.read_frames(record["video_name"], record["frames"], mask_frames)
        size = (int(sam_frames.shape[1]), int(sam_frames.shape[2]))
        gt = folder.read_masks(anno_ids, mask_frames, dialogue.num_frames, size, source)
    else:
        sam_frames = torch.zeros(0, 1, 1, 3, dtype=torch.uint8)
        gt = torch.zeros(0, 1, 1, dtype=torch.bool)
    image_token_id = processor.tokenizer.convert_tokens_to_ids(image_token)
    return SftExample(
        input_ids=ids,
        labels=labels,
        mm_token_type_ids=(ids == image_token_id).to(torch.int32),
        pixel_values=images.pixel_values.float(),
        image_grid_thw=images.image_grid_thw,
        seg_positions=seg_positions,
        mask_frames=mask_frames,
        sam_frames=sam_frames,
        gt_masks=gt,
        seg_pairs=torch.tensor(pairs, dtype=torch.long).reshape(-1, 2),
        source=source,
        frame_keys=[f"{folder.root}/{record['video_name']}/{i}" for i in mask_frames],
    )


class SftDataset:
    """Every VTS-CoT record of one or more data folders, encoded on access for one policy and protocol."""

    def __init__(self, folders: Sequence[DataFolder], processor: Any, seg_token_id: int, protocol: Any, *,
                 file_name: str = "vts_cot.json", seg_supervision: str = "every_turn",
                 max_length: int | None = None) -> None:
        self.items: list[tuple[DataFolder, dict[str, Any], str]] = []
        for folder in folders:
            records = load_sft_records(folder, file_name)
            path = folder.root / file_name
            self.items += [(folder, record, f"{path} [{i}]") for i, record in enumerate(records)]
        if not self.items:
            raise ValueError(f"No VTS-CoT records in {', '.join(str(f.root / file_name) for f in folders)}.")
        self.processor, self.seg_token_id, self.protocol = processor, seg_token_id, protocol
        self.seg_supervision, self.max_length = seg_supervision, max_length

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> SftExample:
        folder, record, source = self.items[index]
        return encode_sft_record(record, folder, self.processor, self.seg_token_id, self.protocol,
                                 seg_supervision=self.seg_supervision, max_length=self.max_length, source=source)


# -------------------------------------------------------------------------------------------- RL


@dataclass
class RlPrompt:
    """One RL prompt (record 0 of an ``rl_data.json`` item) with access to its frames and masks.

    Attributes:
        video_name, frames, exp, anno_id, mask_existence: the record's fields.
        folder: where its frames and masks live.
        source: ``file [index]`` for error messages.
    """

    video_name: str
    frames: list[str]
    exp: str
    anno_id: list[Any]
    mask_existence: list[int]
    folder: DataFolder
    source: str

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def query(self) -> str:
        return self.exp

    def open_video(self) -> Any:
        """A ``videoseg_o3.io`` reader over the JPEG frames (what ``run_episodes`` takes)."""
        from videoseg_o3.io import open_video

        return open_video(self.folder.frame_paths(self.video_name, self.frames))

    def load_masks(self, indices: Sequence[int] | None = None, size: tuple[int, int] | None = None) -> torch.Tensor:
        """``(n, H, W)`` bool ground truth at ``indices`` (all frames when None): the union over ``anno_id``."""
        chosen = list(range(self.num_frames)) if indices is None else [int(i) for i in indices]
        if size is None:
            first = self.folder.read_frames(self.video_name, self.frames, [0])
            size = (int(first.shape[1]), int(first.shape[2]))
        return self.folder.read_masks(self.anno_id, chosen, self.num_frames, size, self.source)


def load_rl_prompts(folder: DataFolder, file_name: str = "rl_data.json") -> list[RlPrompt]:
    """The RL prompts of a folder: record 0 of each item (the released reader's rule), validated."""
    path = folder.root / file_name
    items = _load_list(path, "RL")
    prompts = []
    for i, item in enumerate(items):
        source = f"{path} [{i}]"
        record = item[0] if isinstance(item, list) and item else item
        if not isinstance(record, dict):
            raise ValueError(f"Invalid RL record in {source}: expected a list whose first entry is an object.")
        missing = [k for k in ("video_name", "frames", "exp", "anno_id", "mask_existence") if k not in record]
        if missing:
            raise ValueError(f"Invalid RL record in {source}: missing {', '.join(missing)}.")
        frames, existence = record["frames"], record["mask_existence"]
        if not isinstance(frames, list) or not frames or not isinstance(existence, list) or len(existence) != len(frames):
            raise ValueError(f"Invalid RL record in {source}: 'frames' must be a non-empty list and 'mask_existence' "
                             "hold one value per frame.")
        if not isinstance(record["exp"], str) or not record["exp"].strip():
            raise ValueError(f"Invalid RL record in {source}: 'exp' must be a non-empty string.")
        anno = record["anno_id"] if isinstance(record["anno_id"], list) else [record["anno_id"]]
        prompts.append(RlPrompt(str(record["video_name"]), [str(f) for f in frames], record["exp"], anno,
                                [int(v) for v in existence], folder, source))
    if not prompts:
        raise ValueError(f"No RL records in {path}.")
    return prompts
