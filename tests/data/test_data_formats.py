"""Loaders read back the synthetic task in every layout, and reject escapes and corrupt files clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.data.conftest import NUM_VIDEOS, SEED, TINY
from videoseg_o3.data import FORMATS, load_benchmark
from videoseg_o3.data.synthetic import render_video, video_rng


def _reference_videos():
    return [render_video(video_rng(SEED, "val", i), TINY, f"val_{i:05d}") for i in range(NUM_VIDEOS)]


@pytest.mark.parametrize("layout", ["revos", "mevis", "reasonvos", "refytvos", "davis"])
def test_layout_round_trip(synth_root, layout: str) -> None:
    root = synth_root(layout)
    dataset = load_benchmark(root, layout)
    videos = {v.video_id: v for v in _reference_videos()}
    assert dataset.video_ids == list(videos)
    assert len(dataset) == sum(len(v.queries) for v in videos.values())
    assert dataset.has_ground_truth
    assert dataset.has_types == (layout == "revos")
    assert dataset.has_foreground == (layout == "revos")
    dataset.check_files()
    for record in dataset:
        video = videos[record.video_id]
        query = video.queries[int(record.expression_id)]
        assert record.expression == query.text
        assert record.frame_names == video.frame_names
        assert [p.name for p in record.frame_paths] == [f"{n}.jpg" for n in video.frame_names]
        assert record.object_ids == [str(t) for t in query.targets]
        if layout == "revos":
            assert record.expression_type == query.expression_type
        np.testing.assert_array_equal(record.load_masks(), video.target_masks(query))
        frames = record.load_frames([0, record.num_frames - 1])
        assert frames.shape == (2, *video.frames.shape[1:])
        # JPEG is lossy; the decoded frames stay close to what was rendered.
        assert np.abs(frames.astype(int) - video.frames[[0, -1]].astype(int)).mean() < 6
        if layout == "revos":
            union = np.zeros(video.frames.shape[:3], dtype=np.uint8)
            for obj in video.objects:
                union |= obj.visible
            np.testing.assert_array_equal(record.load_foreground(), union)


def test_open_video_reads_the_record_frames(synth_root) -> None:
    io = pytest.importorskip("videoseg_o3.io", reason="videoseg_o3.io is not in this checkout")
    if not hasattr(io, "open_video"):
        pytest.skip("videoseg_o3.io has no open_video in this checkout")
    record = load_benchmark(synth_root("revos"), "revos")[0]
    reader = record.open_video()
    assert reader.num_frames == record.num_frames
    np.testing.assert_array_equal(np.asarray(reader.get_frames([0, 2])), record.load_frames([0, 2]))


def test_refytvos_meta_in_sibling_folder(tmp_path: Path, synth_root) -> None:
    # The Ref-YouTube-VOS release keeps meta_expressions/<split>/meta_expressions.json beside the split folder.
    root = tmp_path / "ref-youtube-vos" / "valid"
    shutil.copytree(synth_root("refytvos"), root)
    meta_dir = tmp_path / "ref-youtube-vos" / "meta_expressions" / "valid"
    meta_dir.mkdir(parents=True)
    (root / "meta_expressions.json").rename(meta_dir / "meta_expressions.json")
    dataset = load_benchmark(root, "refytvos")
    assert dataset.meta_path == meta_dir / "meta_expressions.json"
    assert dataset[0].load_masks().any()


def test_split_without_ground_truth_loads_records(tmp_path: Path, synth_root) -> None:
    root = tmp_path / "mevis_valid"
    shutil.copytree(synth_root("mevis"), root)
    (root / "mask_dict.json").unlink()
    dataset = load_benchmark(root, "mevis")
    assert not dataset.has_ground_truth
    with pytest.raises(ValueError, match="No ground-truth masks"):
        dataset[0].load_masks()


# ------------------------------------------------------------------------------------ bad input


def _copy(synth_root, layout: str, tmp_path: Path) -> Path:
    root = tmp_path / layout
    shutil.copytree(synth_root(layout), root)
    return root


def _edit_meta(root: Path, edit) -> None:
    path = root / "meta_expressions.json"
    meta = json.loads(path.read_text())
    edit(meta["videos"])
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda v: v.update({"../../etc": v.pop(next(iter(v)))}), r"Invalid video id \('\.\./\.\./etc'\)"),
        (lambda v: v.update({"/abs": v.pop(next(iter(v)))}), r"Invalid video id \('/abs'\)"),
        (lambda v: next(iter(v.values()))["frames"].__setitem__(0, "../x"), r"Invalid frame name \('\.\./x'\)"),
        (lambda v: next(iter(v.values()))["frames"].__setitem__(0, "a/b"), r"Invalid frame name \('a/b'\)"),
        (lambda v: next(iter(v.values()))["expressions"].update({"..": {"exp": "x", "anno_id": [0], "type_id": 0}}), r"Invalid expression id \('\.\.'\)"),
    ],
)
def test_path_escapes_are_rejected(tmp_path: Path, synth_root, edit, match: str) -> None:
    root = _copy(synth_root, "revos", tmp_path)
    _edit_meta(root, edit)
    with pytest.raises(ValueError, match=match) as info:
        load_benchmark(root, "revos")
    assert "meta_expressions.json" in str(info.value)


def test_nested_video_ids_stay_inside_root(tmp_path: Path, synth_root) -> None:
    root = _copy(synth_root, "revos", tmp_path)
    first = sorted((root / "JPEGImages").iterdir())[0].name
    (root / "JPEGImages" / "src").mkdir()
    (root / "JPEGImages" / first).rename(root / "JPEGImages" / "src" / first)
    _edit_meta(root, lambda v: v.update({f"src/{first}": v.pop(first)}))
    record = next(r for r in load_benchmark(root, "revos") if r.video_id == f"src/{first}")
    assert record.frame_paths[0] == root / "JPEGImages" / "src" / first / "00000.jpg"
    assert record.load_frames([0]).shape[0] == 1


def test_corrupt_json_names_the_file(tmp_path: Path, synth_root) -> None:
    root = _copy(synth_root, "revos", tmp_path)
    (root / "mask_dict.json").write_text('{"0": [')
    with pytest.raises(ValueError, match=r"Invalid JSON in .*mask_dict\.json: .* line 1 column"):
        load_benchmark(root, "revos")
    (root / "meta_expressions.json").write_text('{"videos": []}')
    with pytest.raises(ValueError, match=r"Invalid expression file .*meta_expressions\.json"):
        load_benchmark(root, "revos")


def test_corrupt_rle_names_file_and_key(tmp_path: Path, synth_root) -> None:
    root = _copy(synth_root, "revos", tmp_path)
    masks = json.loads((root / "mask_dict.json").read_text())
    key = next(k for k, frames in masks.items() if frames[0] is not None)
    masks[key][0]["counts"] = masks[key][0]["counts"][:-2]
    (root / "mask_dict.json").write_text(json.dumps(masks))
    record = next(r for r in load_benchmark(root, "revos") if key in r.annotation_ids)
    with pytest.raises(ValueError, match=rf"mask_dict\.json \[{key}\]\[0\]"):
        record.load_masks()


def test_missing_annotation_key_and_wrong_length(tmp_path: Path, synth_root) -> None:
    root = _copy(synth_root, "mevis", tmp_path)
    records = load_benchmark(root, "mevis").records
    short_key = records[0].annotation_ids[0]
    absent_key = next(r.annotation_ids[0] for r in records if short_key not in r.annotation_ids)
    masks = json.loads((root / "mask_dict.json").read_text())
    masks[short_key] = masks[short_key][:-1]
    del masks[absent_key]
    (root / "mask_dict.json").write_text(json.dumps(masks))
    dataset = load_benchmark(root, "mevis")
    short = next(r for r in dataset if short_key in r.annotation_ids)
    with pytest.raises(ValueError, match=rf"annotation {short_key} .*expected a list of {short.num_frames}"):
        short.load_masks()
    absent = next(r for r in dataset if absent_key in r.annotation_ids)
    with pytest.raises(ValueError, match=rf"annotation id {absent_key}: it is not a key of .*mask_dict\.json"):
        absent.load_masks()


def test_missing_frame_and_png_are_named(tmp_path: Path, synth_root) -> None:
    root = _copy(synth_root, "davis", tmp_path)
    record = load_benchmark(root, "davis")[0]
    record.frame_paths[1].unlink()
    with pytest.raises(FileNotFoundError, match=rf"Missing frame .*{record.video_id}/00001\.jpg"):
        record.load_frames([1])
    with pytest.raises(FileNotFoundError, match="Missing frame"):
        load_benchmark(root, "davis").check_files()
    png = root / "Annotations" / record.video_id / "00002.png"
    png.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=rf"Invalid PNG .*{record.video_id}/00002\.png"):
        record.load_masks()
    png.unlink()
    with pytest.raises(FileNotFoundError, match=rf"Missing mask file .*{record.video_id}/00002\.png"):
        record.load_masks()


def test_bad_format_and_type_id(tmp_path: Path, synth_root) -> None:
    with pytest.raises(ValueError, match="Supported values are " + ", ".join(FORMATS)):
        load_benchmark(synth_root("revos"), "ytvos")
    root = _copy(synth_root, "revos", tmp_path)
    _edit_meta(root, lambda v: next(iter(next(iter(v.values()))["expressions"].values())).update({"type_id": 2}))
    with pytest.raises(ValueError, match=r"Invalid type_id \(2\).*0 \(referring\), 1 \(reasoning\)"):
        load_benchmark(root, "revos")
    with pytest.raises(FileNotFoundError, match="Missing dataset root"):
        load_benchmark(tmp_path / "nowhere", "mevis")


def test_absent_target_takes_the_video_size_and_sizes_must_agree(tmp_path: Path, synth_root) -> None:
    root = _copy(synth_root, "mevis", tmp_path)
    record = load_benchmark(root, "mevis")[0]
    (key,) = record.annotation_ids[:1]
    masks = json.loads((root / "mask_dict.json").read_text())
    frames = masks[key]
    masks[key] = [None] * len(frames)
    (root / "mask_dict.json").write_text(json.dumps(masks))
    absent = load_benchmark(root, "mevis")[0]
    assert absent.annotation_ids == [key]  # the fixture's first expression has one target
    gt = absent.load_masks()
    assert gt.shape == (absent.num_frames, *absent.frame_size()) and not gt.any()
    from videoseg_o3.data.masks import encode_rle

    masks[key] = frames
    first = next(i for i, rle in enumerate(frames) if rle is not None)
    masks[key][first] = encode_rle(np.zeros((3, 3), dtype=bool))
    second = next(i for i, rle in enumerate(frames) if rle is not None and i != first)
    (root / "mask_dict.json").write_text(json.dumps(masks))
    with pytest.raises(ValueError, match=rf"Invalid RLE size .*\[{key}\]\[{second}\]"):
        load_benchmark(root, "mevis")[0].load_masks()
