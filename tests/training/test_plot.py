"""``python -m training.plot RUN_DIR``: curves from log.jsonl, and errors naming the file."""

from __future__ import annotations

import json

import pytest

from training.plot import main, plot_run


def test_plot_writes_reward_and_loss_pngs(tmp_path) -> None:
    rows = [{"step": s, "loss": 1.0 / s, "kl": 0.01 * s, "reward/total": -3.0 + s, "reward/strict_format_cot": -1.0 + s / 2}
            for s in range(1, 5)]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    paths = plot_run(tmp_path)
    assert [p.name for p in paths] == ["loss.png", "reward.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_plot_errors_name_the_file(tmp_path, capsys) -> None:
    assert main([str(tmp_path)]) == 2
    assert "Missing training log" in capsys.readouterr().err
    (tmp_path / "log.jsonl").write_text('{"step": 1}\n{bad\n')
    with pytest.raises(ValueError, match=r"Invalid JSON on line 2 of .*log\.jsonl"):
        plot_run(tmp_path)
