"""Run logs: one JSON line per logged step (``OUTPUT_DIR/log.jsonl``) and TensorBoard events (``OUTPUT_DIR/tb``).

Each row is a flat ``{"step": int, name: float | int | str, ...}``; numbers also go to TensorBoard as
scalars under the same names (``reward/strict_format``, ``loss/total``, ...). A resumed run appends to the
same file after dropping rows past the checkpoint it resumed from, so the file stays one row per step.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

__all__ = ["LOG_FILE", "TB_DIR", "RunLogger", "read_log"]

LOG_FILE = "log.jsonl"
TB_DIR = "tb"


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of ``run_dir/log.jsonl`` (raises naming the file when it is missing or corrupt)."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"Missing training log {path}. Pass a run directory written by training.sft or training.grpo.")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"Invalid JSON on line {number} of {path}: {err.msg}.") from err
    return rows


class RunLogger:
    """Writes metrics rows; only the process that owns the run (rank 0) should create one with ``enabled``."""

    def __init__(self, output_dir: str | Path, report_to: Sequence[str], *, resume_step: int | None = None,
                 enabled: bool = True) -> None:
        self.enabled = enabled and "none" not in report_to
        self.path = Path(output_dir) / LOG_FILE
        self.tb = None
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.is_file():
            kept = [row for row in read_log(self.path.parent) if int(row.get("step", 0)) <= resume_step]
            self.path.write_text("".join(json.dumps(row) + "\n" for row in kept))
        elif self.path.is_file():
            self.path.unlink()
        self.jsonl = "jsonl" in report_to
        if "tensorboard" in report_to:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(Path(output_dir) / TB_DIR), purge_step=resume_step + 1 if resume_step else None)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        if self.jsonl:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(row, allow_nan=True) + "\n")
        if self.tb is not None:
            for name, value in row.items():
                if name != "step" and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self.tb.add_scalar(name, value, global_step=step)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value
