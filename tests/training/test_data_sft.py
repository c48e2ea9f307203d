"""SFT and RL data readers: template labels, image order, masks and bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.tiny_models import shared_tiny_policy
from tests.tolerances import TOL
from training.data import IGNORE_INDEX, DataFolder, SftDataset, encode_sft_record, load_rl_prompts, load_sft_records
from videoseg_o3.protocol import ProtocolConfig


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from videoseg_o3.data.synthetic import SynthConfig, generate_split

    root = tmp_path_factory.mktemp("sftdata") / "train"
    generate_split(root, 3, seed=5, cfg=SynthConfig(frames=(6, 10), size=(170, 200), turn_weights=(0.2, 1.0, 1.0)))
    return root


def _multi_turn(folder: DataFolder) -> dict:
    return next(r for r in load_sft_records(folder) if len(r["cot_trace"]) >= 1)


def test_labels_are_exactly_the_assistant_turns_and_their_im_end(synth) -> None:
    """Guards the label mask against the ChatML layout written out by hand: after each
    ``<|im_start|>assistant\\n`` come the turn's tokens and ``<|im_end|>`` (labelled), then ``\\n`` (not)."""
    policy = shared_tiny_policy("qwen3_vl")
    tok = policy.tokenizer
    folder = DataFolder(synth)
    record = _multi_turn(folder)
    example = encode_sft_record(record, folder, policy.processor, policy.seg_token_id, ProtocolConfig.preset("rl"))
    ids, labels = example.input_ids.tolist(), example.labels.tolist()
    gpt = [t["value"].strip() for t in record["conversations"] if t["from"] == "gpt"]
    head = tok.encode("<|im_start|>assistant\n", add_special_tokens=False)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    starts = [i + len(head) for i in range(len(ids)) if ids[i:i + len(head)] == head]
    assert len(starts) == len(gpt) >= 2
    expected = [IGNORE_INDEX] * len(ids)
    for start, text in zip(starts, gpt):
        turn = tok.encode(text, add_special_tokens=False) + [im_end]
        assert ids[start:start + len(turn)] == turn
        expected[start:start + len(turn)] = turn
        assert tok.decode(ids[start + len(turn)]) == "\n"
    assert labels == expected
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")  # no BOS, as the released template


def test_images_follow_text_order_like_the_qwen_processor(synth) -> None:
    """Guards the image order (the released reader put turn-0 spatial frames first while the text has the
    temporal ones first): the Qwen processor itself, given the rendered text and the frames as images in text
    order, must give our input ids, grids and pixel values."""
    from PIL import Image

    from videoseg_o3.agent.frames import policy_image_sizes
    from videoseg_o3.data.vtscot import record_dialogue
    from videoseg_o3.protocol import chat_messages

    policy = shared_tiny_policy("qwen3_vl")
    processor = policy.processor
    folder = DataFolder(synth)
    record = _multi_turn(folder)
    protocol = ProtocolConfig.preset("rl")
    example = encode_sft_record(record, folder, processor, policy.seg_token_id, protocol)
    dialogue = record_dialogue(record, protocol)
    specs = dialogue.frame_specs()
    roles = [s.role for s in specs]
    assert roles.index("spatial") > roles.index("temporal")  # text order: temporal block first
    frames = folder.read_frames(record["video_name"], record["frames"], [s.index for s in specs])
    sizes = policy_image_sizes(frames.shape[1], frames.shape[2], specs, processor.image_processor)
    images = [Image.fromarray(f.numpy()).resize((w, h), Image.BILINEAR) for f, (h, w) in zip(frames, sizes)]
    text = processor.apply_chat_template(chat_messages(dialogue.system, dialogue.observations, dialogue.assistant_texts),
                                         tokenize=False)
    reference = processor(text=[text], images=images, return_tensors="pt")
    assert torch.equal(reference["input_ids"][0], example.input_ids)
    assert torch.equal(reference["image_grid_thw"], example.image_grid_thw)
    assert len(set(example.image_grid_thw[:, 1:].prod(-1).tolist())) > 1  # budgets differ: an order swap shows
    # Our resize differs from PIL's (antialiased bilinear in the frame prep), so pixels agree closely, and a
    # swap of two differently sized images would not even match in shape.
    diff = (reference["pixel_values"].float() - example.pixel_values).abs()
    assert float(diff.mean()) < TOL["sft_image_order_mean_abs"][0]


def test_masks_come_from_the_benchmark_mask_dict(synth) -> None:
    """Guards mask decoding and the union over anno_ids against the benchmark loader (videoseg_o3.data)."""
    from videoseg_o3.data import load_benchmark

    policy = shared_tiny_policy("qwen3_vl")
    folder = DataFolder(synth)
    dataset = {(r.video_id, r.expression): r for r in load_benchmark(synth, "revos")}
    for record in load_sft_records(folder)[:4]:
        example = encode_sft_record(record, folder, policy.processor, policy.seg_token_id, ProtocolConfig.preset("rl"))
        truth = dataset[(record["video_name"], record["exp"])].load_masks()
        assert np.array_equal(example.gt_masks.numpy(), truth[example.mask_frames])
        assert example.sam_frames.shape[:3] == truth[example.mask_frames].shape


def test_seg_supervision_modes(synth) -> None:
    """every_turn: each [SEG] on the spatial frames and its own keyframe; first_seg (released): one [SEG]."""
    policy = shared_tiny_policy("qwen3_vl")
    folder = DataFolder(synth)
    record = _multi_turn(folder)
    protocol = ProtocolConfig.preset("rl")
    every = encode_sft_record(record, folder, policy.processor, policy.seg_token_id, protocol)
    first = encode_sft_record(record, folder, policy.processor, policy.seg_token_id, protocol, seg_supervision="first_seg")
    num_turns = len(record["cot_trace"]) + 1
    assert every.seg_positions.numel() == num_turns
    spatial = sorted(record["sample_frame_indice"])
    assert set(first.seg_pairs[:, 0].tolist()) == {0}
    assert [first.mask_frames[r] for r in first.seg_pairs[:, 1].tolist()][: len(spatial)] == spatial
    assert set(every.seg_pairs[:, 0].tolist()) == set(range(num_turns))
    with pytest.raises(ValueError, match="Invalid seg_supervision"):
        encode_sft_record(record, folder, policy.processor, policy.seg_token_id, protocol, seg_supervision="last")


def test_rl_prompts_and_bad_files(synth, tmp_path) -> None:
    folder = DataFolder(synth)
    prompts = load_rl_prompts(folder)
    first = prompts[0]
    assert len(first.mask_existence) == first.num_frames
    masks = first.load_masks()
    assert [int(m.any()) for m in masks] == first.mask_existence
    assert first.open_video().num_frames == first.num_frames

    with pytest.raises(FileNotFoundError, match="Missing data directory"):
        DataFolder(tmp_path / "nope")
    (tmp_path / "rl_data.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"Invalid JSON in .*rl_data\.json"):
        load_rl_prompts(DataFolder(tmp_path))
    (tmp_path / "rl_data.json").write_text(json.dumps([[{"video_name": "v"}]]))
    with pytest.raises(ValueError, match=r"rl_data\.json \[0\]: missing frames"):
        load_rl_prompts(DataFolder(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"vts_cot\.json"):
        SftDataset([DataFolder(tmp_path)], None, 0, ProtocolConfig())
