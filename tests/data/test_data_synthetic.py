"""The synthetic task: determinism, exact masks, queries whose answers re-derive from the masks alone,
and VTS-CoT / RL records that parse under the protocol and state true facts."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from tests.data.conftest import SEED, TINY
from videoseg_o3.data import load_benchmark
from videoseg_o3.data.synthetic import COLOURS, SHAPES, SynthConfig, SynthVideo, generate_split, render_video, video_rng
from videoseg_o3.data.vtscot import region_name


def _videos(count: int, split: str = "val", seed: int = SEED, cfg: SynthConfig = TINY) -> list[SynthVideo]:
    return [render_video(video_rng(seed, split, i), cfg, f"{split}_{i:05d}") for i in range(count)]


def test_same_seed_same_video_and_splits_differ() -> None:
    a = render_video(video_rng(5, "train", 3), TINY, "x")
    b = render_video(video_rng(5, "train", 3), TINY, "x")
    np.testing.assert_array_equal(a.frames, b.frames)
    assert [(q.text, q.targets) for q in a.queries] == [(q.text, q.targets) for q in b.queries]
    for oa, ob in zip(a.objects, b.objects):
        np.testing.assert_array_equal(oa.visible, ob.visible)
    c = render_video(video_rng(5, "val", 3), TINY, "x")
    assert a.frames.shape != c.frames.shape or not np.array_equal(a.frames, c.frames)
    with pytest.raises(ValueError, match="Supported values are train, val, test"):
        video_rng(0, "dev", 0)


def test_generate_split_is_byte_identical_per_seed(tmp_path: Path) -> None:
    for name in ("a", "b"):
        generate_split(tmp_path / name, 3, seed=9, split="test", cfg=TINY)
    for file in ("meta_expressions.json", "mask_dict.json", "mask_dict_foreground.json", "vts_cot.json", "rl_data.json"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file
    frame = "JPEGImages/test_00001/00002.jpg"
    assert (tmp_path / "a" / frame).read_bytes() == (tmp_path / "b" / frame).read_bytes()
    meta = json.loads((tmp_path / "a" / "meta_expressions.json").read_text())
    assert all(v.startswith("test_") for v in meta["videos"])


def test_masks_are_exact_visible_regions() -> None:
    for video in _videos(8):
        covered = np.zeros(video.frames.shape[:3], dtype=int)
        for obj in video.objects:
            assert obj.visible.any()
            covered += obj.visible
            # Every visible pixel of an object shows exactly its colour (frames are rendered before JPEG).
            assert (video.frames[obj.visible] == COLOURS[obj.colour]).all()
        assert covered.max() <= 1  # visible masks are disjoint: occluded parts belong to the front object


# ------------------------------------------------------------------- answers re-derived from masks


def _first(obj) -> int:
    return int(np.flatnonzero(obj.visible.any(axis=(1, 2)))[0])


def _last(obj) -> int:
    return int(np.flatnonzero(obj.visible.any(axis=(1, 2)))[-1])


def _centroid(obj, frame: int):
    ys, xs = np.nonzero(obj.visible[frame])
    return (ys.mean(), xs.mean()) if ys.size else None


def _matching(video: SynthVideo, words: list[str]) -> list:
    out = []
    for obj in video.objects:
        attrs = {obj.size, obj.colour, obj.shape, "object"}
        if all(w in attrs for w in words) and (words[-1] == "object" or words[-1] == obj.shape):
            out.append(obj)
    return out


def _stop_is_real(obj) -> bool:
    """Frame f is a stop: the object moved into frame f - 1 and has not moved since (f is its first still frame)."""
    f = obj.stop_frame
    return f is not None and f >= 2 and np.allclose(obj.centres[f - 1 :], obj.centres[f - 1]) and not np.allclose(obj.centres[f - 2], obj.centres[f - 1])


def _rederive(video: SynthVideo, text: str) -> list[int] | None:
    """Answer a query from the masks (and the trajectories for 'stop'), independently of the generator."""
    m = re.fullmatch(r"all the (\w+) objects", text)
    if m:
        return sorted(o.object_id for o in video.objects if o.colour == m.group(1))
    m = re.fullmatch(r"all the (\w+)s", text)
    if m:
        return sorted(o.object_id for o in video.objects if o.shape == m.group(1))
    m = re.fullmatch(r"the (?:shape|object) that appears after the ([\w ]+) leaves", text)
    if m:
        (ref,) = _matching(video, m.group(1).split())
        later = [o for o in video.objects if _first(o) > _last(ref)]
        return [min(later, key=_first).object_id]
    if text == "the object that appears last":
        return [max(video.objects, key=_first).object_id]
    if text == "the object that stops moving first":
        stoppers = [o for o in video.objects if _stop_is_real(o) and o.visible[o.stop_frame].any()]
        return [min(stoppers, key=lambda o: o.stop_frame).object_id]
    m = re.fullmatch(r"the (leftmost|rightmost|highest|lowest) object in the (first|last) frame", text)
    if m:
        f = 0 if m.group(2) == "first" else video.num_frames - 1
        seen = [(o, _centroid(o, f)) for o in video.objects if _centroid(o, f) is not None]
        key = {"leftmost": lambda c: c[1], "rightmost": lambda c: -c[1], "highest": lambda c: c[0], "lowest": lambda c: -c[0]}[m.group(1)]
        return [min(seen, key=lambda oc: key(oc[1]))[0].object_id]
    m = re.fullmatch(r"the object nearest the (top|bottom)-(left|right) corner when the ([\w ]+) stops", text)
    if m:
        (ref,) = _matching(video, m.group(3).split())
        assert _stop_is_real(ref)
        f = ref.stop_frame
        cy = 0.0 if m.group(1) == "top" else video.frames.shape[1]
        cx = 0.0 if m.group(2) == "left" else video.frames.shape[2]
        seen = [(o, _centroid(o, f)) for o in video.objects if o is not ref and _centroid(o, f) is not None]
        return [min(seen, key=lambda oc: math.hypot(oc[1][0] - cy, oc[1][1] - cx))[0].object_id]
    m = re.fullmatch(r"the object closest to the ([\w ]+) when the \1 first appears", text)
    if m:
        (ref,) = _matching(video, m.group(1).split())
        f = _first(ref)
        rc = _centroid(ref, f)
        seen = [(o, _centroid(o, f)) for o in video.objects if o is not ref and _centroid(o, f) is not None]
        return [min(seen, key=lambda oc: math.hypot(oc[1][0] - rc[0], oc[1][1] - rc[1]))[0].object_id]
    m = re.fullmatch(r"the object that is still moving when the ([\w ]+) stops", text)
    if m:
        (ref,) = _matching(video, m.group(1).split())
        assert _stop_is_real(ref)
        f = ref.stop_frame
        movers = [o for o in video.objects if o is not ref and o.visible[f].any() and not np.allclose(o.centres[f], o.centres[f - 1])]
        assert len(movers) == 1
        return [movers[0].object_id]
    m = re.fullmatch(r"the ([\w ]+)", text)
    if m:
        matches = _matching(video, m.group(1).split())
        assert len(matches) == 1, text
        return [matches[0].object_id]
    return None


def test_every_query_has_the_answer_the_masks_imply() -> None:
    cfg = SynthConfig(frames=(8, 24), size=(40, 64), objects=(2, 5), queries_per_video=4)
    kinds = set()
    for video in _videos(60, split="train", seed=1, cfg=cfg):
        for query in video.queries:
            answer = _rederive(video, query.text)
            assert answer is not None, f"query outside the grammar: {query.text!r}"
            assert sorted(query.targets) == answer, (video.video_id, query.text)
            kinds.add(query.kind)
            words = query.text.split()
            assert all(w.strip(",") for w in words)
    assert kinds == {"referring", "multi", "temporal", "spatial"}


# ------------------------------------------------------------------------- VTS-CoT and RL records


def test_vts_cot_records_parse_and_state_true_facts(synth_root) -> None:
    protocol = pytest.importorskip("videoseg_o3.protocol")
    root = synth_root("revos")
    sft = json.loads((root / "vts_cot.json").read_text())
    rl = json.loads((root / "rl_data.json").read_text())
    dataset = load_benchmark(root, "revos")
    by_key = {(r.video_id, r.expression_id): r for r in dataset}
    assert len(sft) == len(rl) == len(dataset)
    turn_counts = set()
    for record, rl_item in zip(sft, rl):
        assert set(record) >= {"video_name", "frames", "exp", "anno_id", "sample_frame_indice", "cot_trace", "conversations"}
        gt_record = by_key[(record["video_name"], record["exp_id"])]
        assert record["exp"] == gt_record.expression and record["frames"] == gt_record.frame_names
        assert [str(a) for a in record["anno_id"]] == gt_record.annotation_ids
        masks = gt_record.load_masks()
        areas = masks.sum(axis=(1, 2))
        present = np.flatnonzero(areas)
        first, last = int(present[0]), int(present[-1])

        turns = record["conversations"]
        assert [t["from"] for t in turns[:2]] == ["system", "human"]
        assert turns[0]["value"] == protocol.system_prompt(protocol.ProtocolConfig())
        gpt = [t["value"] for t in turns if t["from"] == "gpt"]
        assert [t["from"] for t in turns[2:]] == ["gpt", "human"] * (len(gpt) - 1) + ["gpt"]
        turn_counts.add(len(gpt))
        parses = [protocol.parse_turn(text) for text in gpt]
        assert all(p.error is None for p in parses), [p.error for p in parses]
        assert [p.action for p in parses] == ["select"] * (len(gpt) - 1) + ["answer"]
        assert all(p.steps_present == (True, True, True) and p.has_action and p.has_seg for p in parses)
        assert record["cot_trace"] == [{"start_frame": p.start, "end_frame": p.end, "key_frame": p.keyframe} for p in parses[:-1]]

        answer = parses[-1]
        assert (answer.start, answer.end) == (first, last)
        assert areas[answer.keyframe] == areas.max()
        assert f"visible from frame {first} to frame {last}" in answer.think
        hidden = int((areas[first : last + 1] == 0).sum())
        assert (f"hidden in {hidden} frame" in answer.think) if hidden else ("hidden" not in answer.think)
        ys, xs = np.nonzero(masks[answer.keyframe])
        region = region_name(ys.mean(), xs.mean(), masks.shape[1], masks.shape[2])
        assert f"at frame {answer.keyframe}, in the {region} part of the frame, covering {int(areas.max())} pixels" in answer.think
        previous = (0, len(areas) - 1)
        for select in parses[:-1]:
            assert previous[0] <= select.start <= first and last <= select.end <= previous[1]
            assert areas[select.keyframe] > 0
            assert f"visible only within frames {select.start} to {select.end}" in select.think
            previous = (select.start, select.end)

        (rl_record,) = rl_item
        assert {k: rl_record[k] for k in ("video_name", "frames", "exp", "anno_id")} == {k: record[k] for k in ("video_name", "frames", "exp", "anno_id")}
        assert rl_record["mask_existence"] == [int(a > 0) for a in areas]
    assert turn_counts <= {1, 2, 3} and len(turn_counts) >= 2


def test_terse_think_states_the_same_facts_and_keeps_everything_else(tmp_path: Path) -> None:
    """Guards ``think_style="terse"``: the records parse as protocol turns with the three steps, each terse step
    names the turn's span, keyframe region and query kind (checked against the masks), and everything but the think
    text (turn count, intervals, keyframes, human turns, frames) equals the full-style records of the same seed."""
    protocol = pytest.importorskip("videoseg_o3.protocol")
    full_root, terse_root = tmp_path / "full", tmp_path / "terse"
    generate_split(full_root, 3, seed=SEED, cfg=TINY)
    generate_split(terse_root, 3, seed=SEED, cfg=SynthConfig(**{**TINY.__dict__, "think_style": "terse"}))
    full = json.loads((full_root / "vts_cot.json").read_text())
    terse = json.loads((terse_root / "vts_cot.json").read_text())
    assert len(full) == len(terse) > 0
    dataset = {(r.video_id, r.expression_id): r for r in load_benchmark(terse_root, "revos")}
    for a, b in zip(full, terse):
        assert {k: v for k, v in a.items() if k != "conversations"} == {k: v for k, v in b.items() if k != "conversations"}
        assert [t["from"] for t in a["conversations"]] == [t["from"] for t in b["conversations"]]
        assert [t["value"] for t in a["conversations"] if t["from"] != "gpt"] == [t["value"] for t in b["conversations"] if t["from"] != "gpt"]
        masks = dataset[(b["video_name"], b["exp_id"])].load_masks()
        kind = "referring" if re.search(r"referring expression", a["conversations"][2]["value"]) else None
        for full_text, terse_text in zip([t["value"] for t in a["conversations"] if t["from"] == "gpt"],
                                         [t["value"] for t in b["conversations"] if t["from"] == "gpt"]):
            pf, pt = protocol.parse_turn(full_text), protocol.parse_turn(terse_text)
            assert pt.error is None and pt.steps_present == (True, True, True)
            assert (pt.action, pt.start, pt.end, pt.keyframe) == (pf.action, pf.start, pf.end, pf.keyframe)
            assert len(terse_text) < len(full_text)
            ys, xs = np.nonzero(masks[pt.keyframe])
            region = region_name(ys.mean(), xs.mean(), masks.shape[1], masks.shape[2])
            assert f"Step 1: frames {pt.start}-{pt.end}." in pt.think
            assert f"Step 2: frame {pt.keyframe}, {region}." in pt.think
            if kind:
                assert "Step 3: referring." in pt.think
    with pytest.raises(ValueError, match="think_style"):
        SynthConfig(think_style="verbose")


def test_adaptive_traces_look_closer_only_when_turn_0_misses_the_best_anchor(tmp_path: Path) -> None:
    """Guards ``turn_plan="adaptive"`` against the masks and hand-computed turn-0 frames (4 spread evenly with both
    ends, as ``np.linspace`` floors them, plus the first and last at high resolution): a trace answers at once
    exactly when turn 0 shows the frame where the target is largest; otherwise its select is keyed on that frame
    (the mask's anchor, shown at high resolution next), its interval is 5 frames holding it, the follow-up shows
    every frame of the interval, and the answer names the target's span and the same frame."""
    import dataclasses

    from videoseg_o3.data.vtscot import plan_adaptive_turns, record_dialogue
    from videoseg_o3.protocol import ProtocolConfig, parse_turn

    cfg = ProtocolConfig(turn0_temporal_frames=4, turn0_spatial_frames=2)
    counts = set()
    for style in ("full", "terse"):
        root = tmp_path / style
        generate_split(root, 6, seed=SEED, cfg=dataclasses.replace(TINY, turn_plan="adaptive", think_style=style),
                       protocol=cfg)
        sft = json.loads((root / "vts_cot.json").read_text())
        dataset = {(r.video_id, r.expression_id): r for r in load_benchmark(root, "revos")}
        for record in sft:
            areas = dataset[(record["video_name"], record["exp_id"])].load_masks().sum(axis=(1, 2))
            present = np.flatnonzero(areas)
            best, num_frames = int(np.argmax(areas)), len(areas)
            shown = {int(i) for i in np.linspace(0, num_frames - 1, 4).astype(int)} | {0, num_frames - 1}
            parses = [parse_turn(t["value"]) for t in record["conversations"] if t["from"] == "gpt"]
            assert all(p.error is None for p in parses)
            assert len(parses) == (1 if best in shown else 2), (record["video_name"], best, shown)
            counts.add(len(parses))
            assert (parses[-1].action, parses[-1].start, parses[-1].end, parses[-1].keyframe) == \
                ("answer", int(present[0]), int(present[-1]), best)
            if len(parses) == 2:
                select = parses[0]
                assert select.action == "select" and select.keyframe == best
                assert select.start <= best <= select.end and select.end - select.start + 1 == min(5, num_frames)
                if style == "full":
                    assert "not all seen yet" in select.think and "visible only within" not in select.think
                dialogue = record_dialogue(record, cfg)
                followup = [spec for spec in dialogue.observations[1].parts if not isinstance(spec, str)]
                assert set(range(select.start, select.end + 1)) <= {spec.index for spec in followup}
                assert any(spec.index == best and spec.role == "keyframe" for spec in followup)
    assert counts == {1, 2}
    # hand-worked: the target is in frames 1-3, largest at 2; turn 0 shows 0, 3, 5 -> look at 1-3 keyed on 2
    mask = np.zeros((6, 4, 4), dtype=bool)
    mask[1, 0, 0] = mask[3, 0, :2] = True
    mask[2, :2, :2] = True
    assert plan_adaptive_turns(mask, [0, 3, 5], window=3) == [(1, 3, 2), (1, 3, 2)]
    assert plan_adaptive_turns(mask, [0, 3, 5], window=2) == [(1, 2, 2), (1, 3, 2)]
    assert plan_adaptive_turns(mask, [0, 2, 5], window=3) == [(1, 3, 2)]
    assert plan_adaptive_turns(mask, [0, 3], window=10) == [(0, 5, 2), (1, 3, 2)]  # window clipped into the video
    with pytest.raises(ValueError, match="turn_plan"):
        SynthConfig(turn_plan="sometimes")


def test_config_errors_say_how_to_fix() -> None:
    with pytest.raises(ValueError, match=r"Invalid frames \(\(10, 5\)\)"):
        SynthConfig(frames=(10, 5))
    with pytest.raises(ValueError, match="At most 12 objects"):
        SynthConfig(objects=(2, 13))
    with pytest.raises(ValueError, match="Keys are referring, multi, temporal, spatial"):
        SynthConfig(query_weights={"count": 1.0})
    with pytest.raises(ValueError, match=r"Invalid p_stop \(1.5\)"):
        SynthConfig(p_stop=1.5)
    assert len(SHAPES) * len(COLOURS) * 2 >= 12


def test_synth_command_arguments(tmp_path: Path) -> None:
    from videoseg_o3.cli import main

    with pytest.raises(SystemExit):
        main(["synth", "--out", str(tmp_path), "--frames", "a-b"])
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(tmp_path), "--split", "dev"])
    assert main(["synth", "--out", str(tmp_path), "--videos", "0"]) == 2
    assert main(["synth", "--out", str(tmp_path), "--videos", "2", "--frames", "6", "--size", "40-48", "--layout", "davis", "--no-progress"]) == 0
    dataset = load_benchmark(tmp_path / "train", "davis")
    assert all(r.num_frames == 6 for r in dataset)
    assert not (tmp_path / "train" / "vts_cot.json").exists()  # records need mask_dict layouts
