"""Score predicted masks against a benchmark, in memory or from a predictions folder.

``evaluate(dataset, predictions)`` takes either a folder laid out as the benchmarks' evaluation scripts
expect (``PRED/<video>/<expression_id>/<frame>.png``, 0 = background, nonzero = foreground) or a callable
``predict(record) -> (T, H, W) bool`` (the model's own evaluation plugs in here), and returns an
:class:`EvalResult` with one row per expression, one row per subset and the benchmark's overall score.

Aggregation follows the official scripts:

- per expression: J, F (and ReVOS A, R) averaged over all frames of the video;
- MeViS / Ref-YouTube-VOS / Ref-DAVIS17 / ReasonVOS: J and F averaged over expressions, J&F = (J + F) / 2
  (``tools/eval_mevis.py``);
- ReVOS: the same inside the referring (``type_id`` 0) and reasoning (``type_id`` 1) subsets, and
  "overall" = the mean of the two subsets, not of all expressions (``eval_revos.py``). The ReVOS script
  rounds each expression to 0.01 % before averaging; we average unrounded values (differences <= 0.005 %).

:func:`write_submission` packs predictions in the server formats: MeViS (zip root =
``<video>/<expression_id>/<frame>.png``, MeViS README "CodaLab Evaluation Submission Guideline") and
Ref-YouTube-VOS (``Annotations/<video>/<expression_id>/<frame>.png``, ReferFormer ``docs/Ref-Youtube-VOS.md``).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from videoseg_o3 import metrics
from videoseg_o3.data.masks import read_mask_png
from videoseg_o3.data.paths import check_component, safe_join
from videoseg_o3.data.records import ExpressionRecord

__all__ = [
    "MISSING_POLICIES",
    "MissingPredictionError",
    "SUBMISSION_FORMATS",
    "EvalResult",
    "ExpressionScore",
    "PredictionsDir",
    "PredictFn",
    "SubsetScore",
    "evaluate",
    "score_expression",
    "write_predictions",
    "write_submission",
]

PredictFn = Callable[[ExpressionRecord], np.ndarray]
"""``predict(record) -> (T, H, W) bool`` masks at the video's resolution."""

MISSING_POLICIES = ("error", "empty", "zero")
"""What a missing prediction PNG means: an error, an empty mask, or (as the official MeViS/ReVOS scripts
do for a missing video) a score of 0 on every metric for that expression."""
SUBMISSION_FORMATS = ("mevis", "refytvos")


class MissingPredictionError(FileNotFoundError):
    """A prediction PNG is missing (raised by :class:`PredictionsDir` unless ``missing="empty"``)."""


class PredictionsDir:
    """Predicted masks stored as ``ROOT/<video>/<expression_id>/<frame>.png``."""

    def __init__(self, root: str | Path, *, missing: str = "error") -> None:
        if missing not in MISSING_POLICIES:
            raise ValueError(f"Invalid missing ({missing}). Supported values are {', '.join(MISSING_POLICIES)}.")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"Missing predictions folder {self.root}.")
        self.missing = missing
        self.num_missing_frames = 0

    def path(self, record: ExpressionRecord, frame_name: str) -> Path:
        return safe_join(self.root, *record.video_id.split("/"), record.expression_id, f"{frame_name}.png")

    def load(self, record: ExpressionRecord, shape: tuple[int, int]) -> np.ndarray:
        """``(T, H, W)`` bool for ``record``; ``shape`` is the ground truth's ``(H, W)``."""
        out = np.zeros((record.num_frames, *shape), dtype=bool)
        for index, name in enumerate(record.frame_names):
            path = self.path(record, name)
            if not path.is_file():
                if self.missing != "empty":
                    raise MissingPredictionError(f"Missing prediction {path} (video {record.video_id}, expression {record.expression_id}, frame {name}).")
                self.num_missing_frames += 1
                continue
            mask = read_mask_png(path)
            if mask.shape != tuple(shape):
                raise ValueError(f"Invalid prediction {path}: size {mask.shape[0]}x{mask.shape[1]} (HxW), the ground truth is {shape[0]}x{shape[1]}.")
            out[index] = mask
        return out

    def __call__(self, record: ExpressionRecord) -> np.ndarray:
        return self.load(record, record.frame_size())


@dataclass(frozen=True)
class ExpressionScore:
    """Scores of one expression (fractions in [0, 1], averaged over the video's frames)."""

    video_id: str
    expression_id: str
    expression: str
    expression_type: str | None
    num_frames: int
    J: float
    F: float
    A: float | None = None
    R: float | None = None

    @property
    def JF(self) -> float:
        return (self.J + self.F) / 2.0


@dataclass(frozen=True)
class SubsetScore:
    """Means over the expressions of a subset (or of the whole benchmark)."""

    name: str
    num_expressions: int
    J: float
    F: float
    JF: float
    A: float | None = None
    R: float | None = None


@dataclass
class EvalResult:
    """Per-expression rows, per-subset rows and the benchmark's overall score."""

    benchmark: str
    expressions: list[ExpressionScore]
    subsets: list[SubsetScore]
    overall: SubsetScore

    def to_dict(self) -> dict:
        """JSON-ready: values as fractions (multiply by 100 for the papers' tables)."""
        return {
            "benchmark": self.benchmark,
            "overall": asdict(self.overall),
            "subsets": [asdict(s) for s in self.subsets],
            "expressions": [{**asdict(e), "JF": e.JF} for e in self.expressions],
        }

    def save_json(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    def format_table(self) -> str:
        """A plain-text table of the subsets and the overall row, in percent."""
        with_ar = self.overall.A is not None
        header = ["subset", "#exp", "J&F", "J", "F"] + (["A", "R"] if with_ar else [])
        rows = []
        for score in [*self.subsets, self.overall]:
            row = [score.name, str(score.num_expressions), *(f"{100 * v:.2f}" for v in (score.JF, score.J, score.F))]
            if with_ar:
                row += [("-" if v is None else f"{100 * v:.2f}") for v in (score.A, score.R)]
            rows.append(row)
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
        return "\n".join(lines)


def score_expression(
    pred: np.ndarray, gt: np.ndarray, foreground: np.ndarray | None = None, *, bound_th: float = metrics.DEFAULT_BOUND_TH
) -> tuple[float, float, float, float | None]:
    """Frame-averaged ``(J, F, A, R)`` of one expression.

    Args:
        pred, gt: ``(T, H, W)`` bool.
        foreground: ``(T, H, W)`` ReVOS foreground, or None (R is then None).
    """
    j = float(metrics.jaccard_video(pred, gt).mean())
    f = float(metrics.boundary_f_video(pred, gt, bound_th).mean())
    a = float(metrics.accuracy_video(pred, gt).mean())
    r = None if foreground is None else float(metrics.robustness_video(pred, gt, foreground).mean())
    return j, f, a, r


def _mean_subset(name: str, rows: Sequence[ExpressionScore], with_ar: bool) -> SubsetScore:
    j = float(np.mean([r.J for r in rows]))
    f = float(np.mean([r.F for r in rows]))
    a = float(np.mean([r.A for r in rows])) if with_ar else None
    r_ = float(np.mean([r.R for r in rows])) if with_ar else None
    return SubsetScore(name, len(rows), j, f, (j + f) / 2.0, a, r_)


def _as_predict_fn(predictions: PredictFn | str | Path | PredictionsDir, missing: str) -> PredictFn:
    if isinstance(predictions, (str, Path)):
        return PredictionsDir(predictions, missing=missing)
    if isinstance(predictions, PredictionsDir) or callable(predictions):
        return predictions
    raise ValueError(f"Invalid predictions ({type(predictions).__name__}). Supported values are a folder path or a callable predict(record) -> (T, H, W) bool.")


def _predict(fn: PredictFn, record: ExpressionRecord, shape: tuple[int, int]) -> np.ndarray:
    if isinstance(fn, PredictionsDir):
        return fn.load(record, shape)
    pred = np.asarray(fn(record))
    expected = (record.num_frames, *shape)
    if pred.shape != expected:
        raise ValueError(f"Invalid prediction for video {record.video_id} expression {record.expression_id}: shape {pred.shape}, expected {expected} (T, H, W).")
    return pred.astype(bool, copy=False)


def evaluate(
    dataset: Iterable[ExpressionRecord],
    predictions: PredictFn | str | Path | PredictionsDir,
    *,
    benchmark: str | None = None,
    missing: str = "error",
    progress: bool = False,
    bound_th: float = metrics.DEFAULT_BOUND_TH,
) -> EvalResult:
    """Score predictions on every record of ``dataset``.

    Args:
        dataset: a :class:`~videoseg_o3.data.BenchmarkDataset` or any iterable of records with ground truth.
        predictions: ``PRED_DIR`` path, a :class:`PredictionsDir`, or ``predict(record) -> (T, H, W) bool``.
        benchmark: the aggregation rule ("revos" averages its two subsets); default: ``dataset.format``,
            else the records' ``benchmark``.
        missing: for a folder, what a missing PNG is: "error" (default), "empty" (scored as an empty mask)
            or "zero" (the expression scores 0 on every metric, as the official scripts score a missing video).
        progress: show a tqdm progress bar.
        bound_th: boundary tolerance (see :func:`videoseg_o3.metrics.boundary_f`).
    Returns:
        :class:`EvalResult`.
    """
    records = list(dataset)
    if not records:
        raise ValueError("Invalid dataset: it has no expressions to score.")
    name = benchmark or getattr(dataset, "format", None) or records[0].benchmark or "unknown"
    fn = _as_predict_fn(predictions, missing)
    iterator: Iterable[ExpressionRecord] = records
    if progress:
        from tqdm import tqdm

        iterator = tqdm(records, desc=f"eval {name}", unit="exp")

    with_r = name == "revos"
    rows: list[ExpressionScore] = []
    zero_missing = isinstance(fn, PredictionsDir) and fn.missing == "zero"
    for record in iterator:
        gt = record.load_masks()
        try:
            pred = _predict(fn, record, gt.shape[1:])
        except MissingPredictionError:
            if not zero_missing:
                raise
            zero = 0.0 if with_r else None
            rows.append(ExpressionScore(record.video_id, record.expression_id, record.expression, record.expression_type, record.num_frames, 0.0, 0.0, zero, zero))
            continue
        foreground = record.load_foreground() if with_r else None
        if with_r and foreground is None:
            raise ValueError(
                f"Missing ReVOS foreground for video {record.video_id}: the R metric needs mask_dict_foreground.json in the dataset root."
            )
        j, f, a, r = score_expression(pred, gt, foreground, bound_th=bound_th)
        rows.append(
            ExpressionScore(
                record.video_id, record.expression_id, record.expression, record.expression_type, record.num_frames, j, f,
                a if with_r else None, r,
            )
        )

    types = [t for t in ("referring", "reasoning") if any(r.expression_type == t for r in rows)]
    subsets = [_mean_subset(t, [r for r in rows if r.expression_type == t], with_r) for t in types]
    if name == "revos":
        if not subsets:
            raise ValueError("Invalid ReVOS data: no expression has a type_id; ReVOS overall needs the referring and reasoning subsets.")
        fields = {k: float(np.mean([getattr(s, k) for s in subsets])) for k in ("J", "F", "A", "R")}
        overall = SubsetScore("overall", len(rows), fields["J"], fields["F"], (fields["J"] + fields["F"]) / 2.0, fields["A"], fields["R"])
    else:
        overall = _mean_subset("overall", rows, False)
    return EvalResult(name, rows, subsets, overall)


def write_submission(
    dataset: Iterable[ExpressionRecord],
    predictions: PredictFn | str | Path | PredictionsDir,
    zip_path: str | Path,
    *,
    format: str,
    progress: bool = False,
) -> int:
    """Pack predictions as a server submission zip; returns the number of PNGs written.

    Args:
        format: "mevis" (``<video>/<exp_id>/<frame>.png`` at the zip root) or "refytvos"
            (``Annotations/<video>/<exp_id>/<frame>.png``). Masks are written as 0/255 PNGs.
    """
    if format not in SUBMISSION_FORMATS:
        raise ValueError(f"Invalid submission format ({format}). Supported values are {', '.join(SUBMISSION_FORMATS)}.")
    import io

    from PIL import Image

    records = list(dataset)
    fn = _as_predict_fn(predictions, "error")
    prefix = "Annotations/" if format == "refytvos" else ""
    iterator: Iterable[ExpressionRecord] = records
    if progress:
        from tqdm import tqdm

        iterator = tqdm(records, desc=f"submission {format}", unit="exp")
    zip_path = Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for record in iterator:
            masks = fn(record) if not isinstance(fn, PredictionsDir) else fn.load(record, record.frame_size())
            masks = np.asarray(masks)
            if masks.ndim != 3 or masks.shape[0] != record.num_frames:
                raise ValueError(f"Invalid prediction for video {record.video_id} expression {record.expression_id}: shape {masks.shape}, expected ({record.num_frames}, H, W).")
            exp_id = check_component(record.expression_id, "expression id", "the dataset")
            for name, mask in zip(record.frame_names, masks):
                buffer = io.BytesIO()
                Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(buffer, format="PNG")
                archive.writestr(f"{prefix}{record.video_id}/{exp_id}/{name}.png", buffer.getvalue())
                count += 1
    return count



def write_predictions(
    dataset: Iterable[ExpressionRecord], predict: PredictFn, out_dir: str | Path, *, progress: bool = False
) -> int:
    """Save ``predict(record)`` masks as ``OUT/<video>/<expression_id>/<frame>.png`` (0/255); returns the PNG count.

    The folder is what :func:`evaluate` (and the official scripts) read, so a model's predictions can be
    stored once and scored or packed for a server later.
    """
    from videoseg_o3.output import write_mask_folder

    out = Path(out_dir)
    iterator: Iterable[ExpressionRecord] = list(dataset)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="predictions", unit="exp")
    count = 0
    for record in iterator:
        masks = np.asarray(predict(record))
        if masks.ndim != 3 or masks.shape[0] != record.num_frames:
            raise ValueError(f"Invalid prediction for video {record.video_id} expression {record.expression_id}: shape {masks.shape}, expected ({record.num_frames}, H, W).")
        folder = safe_join(out, *record.video_id.split("/"), check_component(record.expression_id, "expression id", "the dataset"))
        count += write_mask_folder(folder, masks, record.frame_names)
    return count
