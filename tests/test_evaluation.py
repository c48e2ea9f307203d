"""The evaluator and the eval/synth commands: hand-computed aggregation, ground truth scores 1, empty
predictions score exactly what the ground truth implies, missing/misshapen predictions are clear errors."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.tolerances import TOL
from videoseg_o3 import metrics
from videoseg_o3.cli import main
from videoseg_o3.data import ExpressionSpec, VideoAnnotation, load_benchmark, write_dataset
from videoseg_o3.evaluation import PredictionsDir, evaluate, write_predictions, write_submission

ATOL = TOL["metrics"][0]
H, W, T = 6, 8, 2


def _box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((T, H, W), dtype=bool)
    mask[:, y0 : y1 + 1, x0 : x1 + 1] = True
    return mask


OBJ = {1: _box(0, 1, 0, 1), 2: _box(0, 2, 4, 6), 3: _box(4, 5, 2, 5)}  # 4, 9 and 8 px; 21 px of foreground


@pytest.fixture()
def hand_dataset(tmp_path: Path):
    def build(layout: str) -> Path:
        video = VideoAnnotation(
            "v0",
            ["00000", "00001"],
            np.full((T, H, W, 3), 100, dtype=np.uint8),
            OBJ,
            [
                ExpressionSpec("0", "first", [1], "referring"),
                ExpressionSpec("1", "second", [2], "referring"),
                ExpressionSpec("2", "third", [3], "reasoning"),
            ],
        )
        write_dataset(tmp_path / layout, layout, [video])
        return tmp_path / layout

    return build


def _hand_predict(record):
    gt = record.load_masks()
    if record.expression_id == "0":
        return gt  # J = F = A = R = 1
    if record.expression_id == "1":
        return np.zeros_like(gt)  # J = F = 0, A = 39/48, R = 1
    return gt | OBJ[1]  # J = 8/12, A = 44/48, R = 1 - 4/21


def test_revos_overall_is_the_mean_of_its_two_subsets(hand_dataset) -> None:
    result = evaluate(load_benchmark(hand_dataset("revos"), "revos"), _hand_predict)
    f_third = float(metrics.boundary_f_video(OBJ[3] | OBJ[1], OBJ[3]).mean())
    referring, reasoning = result.subsets
    assert (referring.name, referring.num_expressions, reasoning.name, reasoning.num_expressions) == ("referring", 2, "reasoning", 1)
    assert referring.J == pytest.approx(0.5, abs=ATOL)
    assert referring.F == pytest.approx(0.5, abs=ATOL)
    assert referring.A == pytest.approx((1 + 39 / 48) / 2, abs=ATOL)
    assert referring.R == pytest.approx(1.0, abs=ATOL)
    assert reasoning.J == pytest.approx(2 / 3, abs=ATOL)
    assert reasoning.F == pytest.approx(f_third, abs=ATOL)
    assert reasoning.A == pytest.approx(44 / 48, abs=ATOL)
    assert reasoning.R == pytest.approx(1 - 4 / (21 + 1e-6), abs=ATOL)
    # Overall = mean of the subsets (7/12), not of the three expressions (5/9).
    assert result.overall.J == pytest.approx(7 / 12, abs=ATOL)
    assert result.overall.JF == pytest.approx((7 / 12 + (0.5 + f_third) / 2) / 2, abs=ATOL)
    assert [round(r.J, 6) for r in result.expressions] == [1.0, 0.0, round(2 / 3, 6)]


def test_mevis_overall_is_the_mean_over_expressions(hand_dataset) -> None:
    result = evaluate(load_benchmark(hand_dataset("mevis"), "mevis"), _hand_predict)
    assert result.subsets == []
    assert result.overall.J == pytest.approx(5 / 9, abs=ATOL)
    assert result.overall.A is None and result.overall.R is None


def test_folder_and_callable_give_the_same_result(hand_dataset, tmp_path: Path) -> None:
    dataset = load_benchmark(hand_dataset("davis"), "davis")
    assert write_predictions(dataset, _hand_predict, tmp_path / "pred") == 3 * T
    from_dir = evaluate(dataset, tmp_path / "pred")
    from_fn = evaluate(dataset, _hand_predict)
    assert from_dir.to_dict() == from_fn.to_dict()


def test_missing_and_misshapen_predictions(hand_dataset, tmp_path: Path) -> None:
    dataset = load_benchmark(hand_dataset("mevis"), "mevis")
    write_predictions(dataset, lambda r: r.load_masks(), tmp_path / "pred")
    missing = tmp_path / "pred" / "v0" / "1" / "00001.png"
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=r"Missing prediction .*v0/1/00001\.png"):
        evaluate(dataset, tmp_path / "pred")
    lenient = PredictionsDir(tmp_path / "pred", missing="empty")
    result = evaluate(dataset, lenient)
    assert lenient.num_missing_frames == 1
    assert result.expressions[1].J == pytest.approx(0.5, abs=ATOL)
    zeroed = evaluate(dataset, PredictionsDir(tmp_path / "pred", missing="zero"))
    assert (zeroed.expressions[1].J, zeroed.expressions[1].F) == (0.0, 0.0)
    assert zeroed.overall.J == pytest.approx(2 / 3, abs=ATOL)
    from videoseg_o3.data.masks import write_mask_png

    write_mask_png(missing, np.zeros((H + 1, W), dtype=bool))
    with pytest.raises(ValueError, match=r"Invalid prediction .*00001\.png: size 7x8 .*ground truth is 6x8"):
        evaluate(dataset, tmp_path / "pred")
    with pytest.raises(ValueError, match=r"shape \(2, 6, 7\), expected \(2, 6, 8\)"):
        evaluate(dataset, lambda r: np.zeros((T, H, W - 1), dtype=bool))
    with pytest.raises(ValueError, match="Supported values are error, empty, zero"):
        PredictionsDir(tmp_path / "pred", missing="skip")


def test_submission_zip_layouts(hand_dataset, tmp_path: Path) -> None:
    mevis = load_benchmark(hand_dataset("mevis"), "mevis")
    assert write_submission(mevis, _hand_predict, tmp_path / "m.zip", format="mevis") == 6
    with zipfile.ZipFile(tmp_path / "m.zip") as archive:
        names = sorted(archive.namelist())
        assert names[0] == "v0/0/00000.png"
        from PIL import Image
        import io

        png = np.asarray(Image.open(io.BytesIO(archive.read("v0/2/00001.png"))))
        np.testing.assert_array_equal(png, np.where((OBJ[3] | OBJ[1])[1], 255, 0))
    ytvos = load_benchmark(hand_dataset("refytvos"), "refytvos")
    write_submission(ytvos, _hand_predict, tmp_path / "y.zip", format="refytvos")
    with zipfile.ZipFile(tmp_path / "y.zip") as archive:
        assert "Annotations/v0/1/00000.png" in archive.namelist()
    with pytest.raises(ValueError, match="Supported values are mevis, refytvos"):
        write_submission(ytvos, _hand_predict, tmp_path / "z.zip", format="revos")


# ------------------------------------------------------------------------------ synth then eval


def _expected_empty_scores(dataset) -> dict[str, dict[str, float]]:
    """Scores of all-empty predictions, from the ground truth alone.

    Per frame: J = F = 1 where the ground truth is empty (both empty) else 0; A = 1 - |G| / (H W);
    R = 1 (no false positives). Per expression: frame means. Per subset: expression means.
    """
    rows: dict[str, list[tuple[float, float, float]]] = {}
    for record in dataset:
        gt = record.load_masks()
        empty = ~gt.any(axis=(1, 2))
        rows.setdefault(record.expression_type, []).append((empty.mean(), empty.mean(), 1 - gt.mean(axis=(1, 2)).mean()))
    return {k: {"J": np.mean([r[0] for r in v]), "F": np.mean([r[1] for r in v]), "A": np.mean([r[2] for r in v])} for k, v in rows.items()}


def test_synth_then_eval_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synth"
    args = ["synth", "--out", str(out), "--videos", "5", "--seed", "3", "--split", "val", "--frames", "6-10", "--size", "40-56", "--no-progress"]
    assert main(args) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["videos"] == 5 and info["path"] == str(out / "val")
    root = out / "val"
    dataset = load_benchmark(root, "revos")
    assert {r.expression_type for r in dataset} == {"referring", "reasoning"}

    write_predictions(dataset, lambda r: r.load_masks(), tmp_path / "gt_pred")
    assert main(["eval", "--format", "revos", "--root", str(root), "--pred", str(tmp_path / "gt_pred"), "--out", str(tmp_path / "gt.json"), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "overall" in table and "100.00" in table
    gt_result = json.loads((tmp_path / "gt.json").read_text())
    for key in ("J", "F", "JF", "A", "R"):
        assert gt_result["overall"][key] == 1.0

    write_predictions(dataset, lambda r: np.zeros_like(r.load_masks()), tmp_path / "empty_pred")
    assert main(["eval", "--format", "revos", "--root", str(root), "--pred", str(tmp_path / "empty_pred"), "--out", str(tmp_path / "empty.json"), "--no-progress"]) == 0
    empty = json.loads((tmp_path / "empty.json").read_text())
    expected = _expected_empty_scores(dataset)
    subsets = {s["name"]: s for s in empty["subsets"]}
    for name, values in expected.items():
        for key, value in values.items():
            assert subsets[name][key] == pytest.approx(value, abs=ATOL), (name, key)
        assert subsets[name]["R"] == pytest.approx(1.0, abs=ATOL)
    for key in ("J", "F", "A"):
        assert empty["overall"][key] == pytest.approx(np.mean([expected[n][key] for n in expected]), abs=ATOL)


def test_eval_command_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--format", "mevis", "--root", str(tmp_path / "none"), "--pred", str(tmp_path)]) == 2
    assert "Missing dataset root" in capsys.readouterr().err
