"""bench/decode.py runs end to end on a tiny video and reports sparse decoding as cheaper."""

from __future__ import annotations

import json

from bench import decode


def test_decode_bench_smoke(tmp_path, capsys):
    out = tmp_path / "decode.json"
    assert decode.main(["--frames", "60", "--height", "64", "--width", "64", "--gop", "10", "--requested", "6",
                        "--repeats", "1", "--backends", "pyav", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["pattern"] for r in rows} == {"random", "even", "episode"}
    for row in rows:
        assert row["decoded_all"] == 60 and row["decoded"] >= row["requested"]
        if row["pattern"] != "episode":  # one request of 6 frames with GOP 10: far fewer than all 60
            assert row["decoded"] < row["decoded_all"] and row["frames_ratio"] > 1
    assert "x fewer" in capsys.readouterr().out
