"""COCO RLE and PNG mask I/O: round trips and clear errors on corrupt input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from videoseg_o3.data.masks import decode_rle, encode_rle, read_id_png, read_mask_png, write_id_png, write_mask_png


def test_rle_round_trip_odd_shapes() -> None:
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (1, 9), (7, 1), (13, 17), (64, 33)]:
        for density in (0.0, 0.3, 1.0):
            mask = rng.random(shape) < density
            rle = encode_rle(mask)
            assert isinstance(rle["counts"], str) and rle["size"] == list(shape)
            np.testing.assert_array_equal(decode_rle(rle, "test"), mask)


def test_rle_uncompressed_counts_are_accepted() -> None:
    # Column-major runs: 2 background, 3 foreground, 15 background in a 4x5 mask.
    mask = decode_rle({"size": [4, 5], "counts": [2, 3, 15]}, "test")
    expected = np.zeros(20, dtype=bool)
    expected[2:5] = True
    np.testing.assert_array_equal(mask, expected.reshape(5, 4).T)


@pytest.mark.parametrize(
    "rle, match",
    [
        ({"size": [4, 5], "counts": "52"}, "summing to 7"),  # too short: pycocotools would read garbage
        ({"size": [4, 5], "counts": "522000300"}, "summing to"),  # too long
        ({"size": [4, 5], "counts": "5\x7f"}, "malformed"),
        ({"size": [4, 5], "counts": "5b"}, "malformed"),  # a continuation bit with nothing after it
        ({"size": [4, 5], "counts": [1, 2]}, "summing to height"),
        ({"size": [4, -5], "counts": "52"}, "Invalid RLE size"),
        ({"size": [4, 5]}, "'size' and 'counts'"),
        ({"size": [4, 5], "counts": 7}, "string or a list"),
        ([1, 2, 3], "expected an object"),
    ],
)
def test_corrupt_rle_is_a_clear_error(rle, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        decode_rle(rle, "mask_dict.json [7][3]")
    assert "mask_dict.json [7][3]" in str(info.value)


def test_palette_and_mask_png_round_trip(tmp_path: Path) -> None:
    ids = np.zeros((5, 7), dtype=np.uint8)
    ids[1:3, 2:5] = 1
    ids[4, :] = 3
    write_id_png(tmp_path / "a.png", ids)
    np.testing.assert_array_equal(read_id_png(tmp_path / "a.png"), ids)
    np.testing.assert_array_equal(read_mask_png(tmp_path / "a.png"), ids > 0)
    write_mask_png(tmp_path / "b.png", ids == 1)
    np.testing.assert_array_equal(read_mask_png(tmp_path / "b.png"), ids == 1)


def test_rgb_prediction_png_reads_as_nonzero(tmp_path: Path) -> None:
    from PIL import Image

    rgb = np.zeros((3, 4, 3), dtype=np.uint8)
    rgb[1, 2] = (0, 0, 255)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    expected = np.zeros((3, 4), dtype=bool)
    expected[1, 2] = True
    np.testing.assert_array_equal(read_mask_png(tmp_path / "c.png"), expected)


def test_corrupt_and_missing_png_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ValueError, match=r"Invalid PNG .*bad\.png"):
        read_id_png(bad)
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        read_mask_png(tmp_path / "missing.png")
    from PIL import Image

    Image.fromarray(np.zeros((2, 2, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="Supported modes are P"):
        read_id_png(tmp_path / "rgb.png")
