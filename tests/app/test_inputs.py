"""check_request and AppConfig: every bad input becomes one readable line for the page."""

from __future__ import annotations

from pathlib import Path

import pytest

from videoseg_o3.app import AppConfig, RequestError, check_request, parse_scripted_turns


def test_empty_query_and_missing_video_are_both_reported() -> None:
    """Guards: a request with nothing in it names both missing pieces (not just the first one)."""
    with pytest.raises(RequestError) as info:
        check_request(None, "   ", "", AppConfig())
    assert len(info.value.problems) == 2
    assert info.value.problems[0].startswith("The query is empty.")
    assert info.value.problems[1].startswith("No video.")


def test_non_video_extension_is_refused_before_decoding(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video")
    with pytest.raises(RequestError, match=r"'notes.txt' is not a video file\. Upload one of: .mp4"):
        check_request(notes, "the dog", None, AppConfig())


def test_undecodable_video_names_the_file_not_the_server_path(tmp_path: Path) -> None:
    """Guards: a text file renamed .mp4 gets a decode message with the file's name only (the
    server's temporary path is not shown to the visitor)."""
    fake = tmp_path / "holiday.mp4"
    fake.write_text("this is text, not H.264")
    with pytest.raises(RequestError) as info:
        check_request(fake, "the dog", None, AppConfig())
    (line,) = info.value.problems
    assert line.startswith("'holiday.mp4' could not be read as a video (")
    assert str(tmp_path) not in line


def test_size_limit(clip) -> None:
    size_mb = clip.path.stat().st_size / 1e6
    with pytest.raises(RequestError, match=r"this app accepts at most .* MB \(--max-megabytes\)"):
        check_request(clip.path, "the dog", None, AppConfig(max_megabytes=size_mb / 2))
    request = check_request(clip.path, "the dog", None, AppConfig(max_megabytes=size_mb * 2))
    request.reader.close()


def test_frame_limit_counts_frames_exactly(clip) -> None:
    """Guards the off-by-one: a video of exactly max_frames frames is accepted, one more is refused."""
    with pytest.raises(RequestError, match=rf"The video has {clip.num_frames} frames; this app accepts at most {clip.num_frames - 1}"):
        check_request(clip.path, "q", None, AppConfig(max_frames=clip.num_frames - 1))
    request = check_request(clip.path, "  the dog ", "\n a \n\n b \n", AppConfig(max_frames=clip.num_frames))
    try:
        assert request.query == "the dog"
        assert request.scripted_turns == ["a", "b"]
        assert int(request.reader.num_frames) == clip.num_frames
    finally:
        request.reader.close()


def test_scripted_turns_are_one_per_line() -> None:
    assert parse_scripted_turns(None) is None
    assert parse_scripted_turns(" \n\n ") is None
    assert parse_scripted_turns("<think>x</think>\n<think>y</think>") == ["<think>x</think>", "<think>y</think>"]


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("port", 0, r"Invalid port \(0\)"),
        ("port", 70000, r"Invalid port"),
        ("max_frames", 0, r"Invalid max_frames \(0\)\. Use an int >= 1"),
        ("max_megabytes", 0, r"Invalid max_megabytes"),
        ("examples", -1, r"Invalid examples"),
        ("host", " ", r"Invalid host"),
    ],
)
def test_config_errors_say_how_to_fix(field: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AppConfig(**{field: value})


def test_default_host_is_loopback() -> None:
    """Guards the privacy default: the page is served to this machine only unless asked otherwise."""
    assert AppConfig().host == "127.0.0.1"
