"""VTS-CoT records in the released convention: what ``videoseg-o3 synth`` writes and what the reader rebuilds."""

from __future__ import annotations

import dataclasses
import json

import pytest

from videoseg_o3.data.vtscot import IMAGE_PLACEHOLDER, followup_human_value, record_dialogue
from videoseg_o3.protocol import ProtocolConfig, followup_observation, initial_observation, parse_turn

SELECT = ('<think>Step 1: a. Step 2: b. Step 3: c. Action: look.</think>'
          '<select><VTG>{"start": 2, "end": 5, "keyframe": 4}</VTG><RefSeg>[SEG]</RefSeg></select>')
ANSWER = ('<think>Step 1: a. Step 2: b. Step 3: c. Action: done.</think>'
          '<answer><VTG>{"start": 3, "end": 5, "keyframe": 4}</VTG><RefSeg>[SEG]</RefSeg></answer>')


def _released_record(**changes) -> dict:
    """A record written by hand the way the released files are: question only, then ``<image>`` + instruction."""
    record = {
        "video_name": "v", "frames": [f"{i:05d}" for i in range(8)], "exp": "the red ball", "anno_id": [3],
        "sample_frame_indice": [6, 1],
        "cot_trace": [{"start_frame": 2, "end_frame": 5, "key_frame": 4}],
        "conversations": [
            {"from": "system", "value": "SYS"},
            {"from": "human", "value": "The query is \"the red ball\". This video has 8 frames."},
            {"from": "gpt", "value": SELECT + "\n"},
            {"from": "human", "value": "<image>.\n Continue your reasoning."},
            {"from": "gpt", "value": ANSWER},
        ],
    }
    record.update(changes)
    return record


def test_released_record_expands_like_the_released_reader() -> None:
    """Guards the reader against the released COTRefVOSv3 text layout, written out by hand here: turn 0 gets
    the low-resolution block + its index line + the (sorted) sample frames + theirs before the question; a
    later turn's <image> becomes the interval's frames, the keyframe, their lines and the query line."""
    dialogue = record_dialogue(_released_record(), ProtocolConfig.preset("eval"), source="x.json")
    assert dialogue.system == "SYS"
    img = "<image>"
    turn0 = (img * 8 + "\nHere are 8 low-resolution frames in this video (frame indice is [0, 1, 2, 3, 4, 5, 6, 7])\n"
             + img * 2 + "Here are 2 high-resolution frames in this video (frame indice:[1, 6]).\n"
             + "The query is \"the red ball\". This video has 8 frames.")
    turn1 = (img * 4 + "\nHere are 4 low-resolution frames in this video (frame indices are [2, 3, 4, 5])\n"
             + img + "Here is key frames (frame indice:4).\n" + "The text query is 'the red ball'"
             + ".\n Continue your reasoning.")
    assert [o.text(img) for o in dialogue.observations] == [turn0, turn1]
    roles = [s.role for s in dialogue.frame_specs()]
    assert roles == ["temporal"] * 8 + ["spatial"] * 2 + ["temporal"] * 4 + ["keyframe"]
    assert [s.index for s in dialogue.observations[0].frames()][8:] == [1, 6]
    assert dialogue.assistant_texts == [SELECT, ANSWER]  # stripped, as the released reader does
    assert dialogue.turn_keyframes == [4, 4] and dialogue.spatial_frames == [1, 6]


@pytest.mark.parametrize("protocol", [ProtocolConfig.preset("rl"), ProtocolConfig(prompt_style="default")],
                         ids=["videoseg-o3-rl", "default"])
def test_synth_records_read_back_to_the_protocol_observations(synth_root, protocol) -> None:
    """Guards the writer/reader pair: a synthetic record written for ``protocol`` reads back to exactly the
    observations the protocol's own builders give at inference (so SFT trains on what rollouts show)."""
    from videoseg_o3.data.synthetic import SynthConfig, generate_split  # noqa: F401  (fixture builds with defaults)
    from videoseg_o3.data import vtscot

    root = synth_root("revos")
    records = json.loads((root / "vts_cot.json").read_text())
    multi = 0
    for record in records:
        # Rewrite the human turns for ``protocol`` (the fixture wrote the eval preset's wording).
        conversations = [dict(t) for t in record["conversations"]]
        humans = [i for i, t in enumerate(conversations) if t["from"] == "human"]
        num_frames = len(record["frames"])
        conversations[humans[0]]["value"] = vtscot.initial_human_value(record["exp"], num_frames, protocol)
        for i in humans[1:]:
            conversations[i]["value"] = followup_human_value(record["exp"], protocol)
        from videoseg_o3.protocol import turn0_frame_indices

        record = {**record, "conversations": conversations,
                  "sample_frame_indice": turn0_frame_indices(num_frames, protocol)[1]}
        dialogue = record_dialogue(record, protocol)
        gpt = [t["value"] for t in conversations if t["from"] == "gpt"]
        expected = [initial_observation(record["exp"], num_frames, protocol)]
        for text in gpt[:-1]:
            expected.append(followup_observation(record["exp"], num_frames, parse_turn(text), protocol))
        assert [o.text("<image>") for o in dialogue.observations] == [o.text("<image>") for o in expected]
        assert [o.frames() for o in dialogue.observations] == [o.frames() for o in expected]
        multi += len(gpt) > 1
    assert multi > 0


def test_synth_writes_the_released_convention(synth_root) -> None:
    """Guards divergence from the released files: the first human turn holds the question only, later ones
    hold one <image> placeholder, and no frame index line is stored in the record."""
    records = json.loads((synth_root("revos") / "vts_cot.json").read_text())
    seen_followup = False
    for record in records:
        humans = [t["value"] for t in record["conversations"] if t["from"] == "human"]
        assert IMAGE_PLACEHOLDER not in humans[0] and "Here are" not in humans[0] and record["exp"] in humans[0]
        for value in humans[1:]:
            seen_followup = True
            assert value.startswith(IMAGE_PLACEHOLDER) and value.count(IMAGE_PLACEHOLDER) == 1
            assert "Here is key frames" not in value and record["exp"] not in value
    assert seen_followup


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"cot_trace": [{"start_frame": 2, "end_frame": 6, "key_frame": 4}]}, r"cot_trace\[0\]"),
        ({"sample_frame_indice": [1, 9]}, "outside 0..7"),
        ({"exp": ""}, "'exp'"),
        ({"conversations": [{"from": "human", "value": "q"}]}, "alternate human/gpt"),
    ],
)
def test_bad_records_name_the_file_and_the_problem(changes, message) -> None:
    with pytest.raises(ValueError, match=r"Invalid VTS-CoT record in data/x\.json \[0\]: .*" + message):
        record_dialogue(_released_record(**changes), ProtocolConfig(), source="data/x.json [0]")
    bad = _released_record()
    bad["conversations"] = [dict(t) for t in bad["conversations"]]
    bad["conversations"][3]["value"] = "no placeholder"
    with pytest.raises(ValueError, match="exactly one <image>"):
        record_dialogue(bad, dataclasses.replace(ProtocolConfig()), source="x")
