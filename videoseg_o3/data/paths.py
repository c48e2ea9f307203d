"""Turning ids and names read from annotation JSON into paths that cannot leave the dataset root.

Benchmark JSON is data from elsewhere: a video id like ``../../etc`` or ``/abs/path`` must not make a loader
read (or a writer write) outside the folder the user pointed at. Ids may contain ``/`` (some releases nest
videos one folder deeper), but every component must be a plain name.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["safe_join", "check_component"]

_FORBIDDEN_CHARS = ("\\", "\x00", ":")


def check_component(value: object, what: str, source: str, *, allow_nested: bool = False) -> str:
    """Validate an id or a name from annotation data and return it as a string.

    Args:
        value: the value read from JSON (str, or int for numeric ids).
        what: what it names, for the error ("video id", "frame name", ...).
        source: the file it came from, for the error.
        allow_nested: accept ``a/b`` made of plain components.
    Raises:
        ValueError: naming the value, the file, and what is allowed.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"Invalid {what} ({value!r}) in {source}: expected a string.")
    text = str(value)
    parts = text.split("/") if allow_nested else [text]
    bad = (
        not text
        or text.startswith("/")
        or any(ch in text for ch in _FORBIDDEN_CHARS)
        or any(part in ("", ".", "..") for part in parts)
        or (not allow_nested and "/" in text)
    )
    if bad:
        nested = "plain names joined by '/'" if allow_nested else "a single plain name"
        raise ValueError(
            f"Invalid {what} ({text!r}) in {source}: it must be {nested} "
            "(no '..', no leading '/', no '\\', ':' or NUL), so that it stays inside the dataset root."
        )
    return text


def safe_join(root: Path, *parts: str) -> Path:
    """``root / parts...`` after checking that the result stays lexically inside ``root``."""
    path = root.joinpath(*parts)
    root_abs = Path(_normalise(root))
    path_abs = Path(_normalise(path))
    if path_abs != root_abs and root_abs not in path_abs.parents:
        raise ValueError(f"Invalid path {path}: it leaves the dataset root {root}.")
    return path


def _normalise(path: Path) -> str:
    import os.path

    return os.path.normpath(os.path.abspath(path))
