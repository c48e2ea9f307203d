"""``python -m training.plot RUN_DIR``: reward and loss curves of a run (from ``RUN_DIR/log.jsonl``) as PNG files.

Writes ``RUN_DIR/plots/loss.png`` (every ``loss*`` / ``*_loss`` column) and, for GRPO runs,
``RUN_DIR/plots/reward.png`` (the total reward and each reward term).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

__all__ = ["main", "plot_run"]


def _series(rows: list[dict], keys: list[str]) -> dict[str, tuple[list[int], list[float]]]:
    out = {}
    for key in keys:
        points = [(int(r["step"]), float(r[key])) for r in rows if isinstance(r.get(key), (int, float))]
        if points:
            out[key] = ([p[0] for p in points], [p[1] for p in points])
    return out


def _figure(path: Path, title: str, series: dict[str, tuple[list[int], list[float]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, (steps, values) in series.items():
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None, label=name)
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write the PNG files of ``run_dir``; returns their paths."""
    from training.logging import read_log

    run = Path(run_dir)
    rows = read_log(run)
    if not rows:
        raise ValueError(f"Invalid training log {run / 'log.jsonl'}: it has no rows yet.")
    keys = sorted({k for r in rows for k in r})
    out_dir = run / "plots"
    out_dir.mkdir(exist_ok=True)
    written = []
    loss_keys = [k for k in keys if k == "loss" or k.endswith("_loss") or k.startswith("loss/")]
    if loss_keys:
        _figure(out_dir / "loss.png", f"loss ({run.name})", _series(rows, loss_keys))
        written.append(out_dir / "loss.png")
    reward_keys = [k for k in keys if k.startswith("reward/") and k != "reward/std"]
    if reward_keys:
        _figure(out_dir / "reward.png", f"reward ({run.name})", _series(rows, reward_keys))
        written.append(out_dir / "reward.png")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m training.plot", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", metavar="RUN_DIR", help="A training output directory holding log.jsonl.")
    args = parser.parse_args(argv)
    try:
        paths = plot_run(args.run_dir)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
