"""Every tracked file speaks of this repository alone: no pointer into files that a clone does not have.

A reader who meets "see notes.md §3" or "/home/me/project/..." in a docstring follows it into nothing.
The rules, applied line by line to every text file that ``git ls-files`` lists (binary files, i.e.
files with a NUL byte in their first 8000 bytes as git decides, are skipped; so is this file, which
has to spell the patterns out):

1. Private notes by name. ``design.md``, ``style.md``, ``pitfalls.md``, ``reference-videoseg-o3.md``
   and ``reference-training-spec.md`` are design notes that never lived in the repository. Naming one
   (bare, or as the last part of a path) is an offence unless that exact path is a tracked file, so
   a future ``docs/design.md`` in the repository may be cited. The design is in docs/architecture.md.
2. The word "digest" (whole word, any case) meant a digest of the reference code. It is allowed only
   as hashing vocabulary: right after a dot (``h.digest()``; ``hexdigest`` is not a whole word anyway)
   or on a line that also says hashlib, sha<N>, md5, blake2, checksum or hash.
3. Absolute paths into a machine: ``/work/``, ``/root/``, ``/home/``, ``/Users/`` and ``/tmp/`` where
   the slash run starts a path (not preceded by a letter, digit, ``_``, ``.``, ``~``, ``-`` or ``/``,
   so ``runs/tmp/x``, ``a/home/b`` and URLs such as ``https://host/home/`` are fine). ``/tmp/`` is in
   the list because code that needs a scratch place asks ``tempfile``/``mktemp``/pytest's
   ``tmp_path`` (which honour ``TMPDIR`` and never collide between concurrent runs); a bare ``/tmp``
   fallback without a trailing slash (``${TMPDIR:-/tmp}``) names no file and is allowed.

A second test checks that every ``<file>.md#anchor`` cited in a tracked file names a heading of that
file when the file is tracked (code comments cite sections as docs/architecture.md#the-model).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
THIS_FILE = Path(__file__).resolve().relative_to(REPO_ROOT).as_posix()

PRIVATE_NOTES = re.compile(
    r"[\w./-]*(?<![\w-])(?:design|style|pitfalls|reference-videoseg-o3|reference-training-spec)\.md(?![\w-])",
    re.IGNORECASE,
)
DIGEST = re.compile(r"(?<![\w.])digest\b", re.IGNORECASE)
HASH_CONTEXT = re.compile(r"hashlib|sha\d|md5|blake2|checksum|hash", re.IGNORECASE)
ABSOLUTE_PATH = re.compile(r"(?<![\w.~/-])/+(?:work|root|home|Users|tmp)/")
DOC_ANCHOR = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)#([\w-]+)")


def tracked_text_files() -> dict[str, str]:
    """``{path: text}`` of every tracked text file (repository-relative POSIX paths)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout (git ls-files failed: {exc}); the rule is about tracked files")
    files = {}
    for name in out.stdout.decode().split("\0"):
        path = REPO_ROOT / name
        if not name or not path.is_file():  # deleted in the work tree but still in the index
            continue
        data = path.read_bytes()
        if b"\0" in data[:8000]:
            continue
        files[name] = data.decode("utf-8", errors="replace")
    return files


def pointer_offences(name: str, text: str, tracked: set[str]) -> list[str]:
    """``"path:line: reason: text"`` for every line of ``text`` that points outside the repository."""
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        reasons = []
        for match in PRIVATE_NOTES.finditer(line):
            if match.group(0).removeprefix("./") not in tracked:
                reasons.append(f"names {match.group(0)!r}, not a file of this repository")
        if DIGEST.search(line) and not HASH_CONTEXT.search(line):
            reasons.append("cites a 'digest' (cite the public source or docs/ instead)")
        for match in ABSOLUTE_PATH.finditer(line):
            reasons.append(f"absolute path {match.group(0)!r}...")
        found += [f"{name}:{lineno}: {reason}: {line.strip()[:160]}" for reason in reasons]
    return found


def test_no_pointer_outside_the_repository() -> None:
    """Guards the rules of the module docstring on every tracked text file."""
    files = tracked_text_files()
    assert "README.md" in files and len(files) > 50, "git ls-files returned too little to be this repository"
    offences = [o for name, text in sorted(files.items()) if name != THIS_FILE for o in pointer_offences(name, text, set(files))]
    assert not offences, (
        "tracked files point outside the repository; cite docs/architecture.md#<section>, "
        "docs/reference-compat.md or the public source instead:\n" + "\n".join(offences)
    )


@pytest.mark.parametrize(
    "line, bad",
    [
        ("see design.md §3", True),
        ("(DESIGN.md section 2)", True),
        ("measured in /work/shared/pitfalls.md", True),
        ("reference digest §5.2", True),
        ("x = Path('/root/ckpt')", True),
        ("open('/home/user/video.mp4')", True),
        ("--out /tmp/preds", True),
        ("file:///work/x", True),
        ('"/Users/me/data"', True),
        ("docs/architecture.md#the-model", False),
        ("ReferFormer docs/data.md", False),
        ("h = hashlib.sha256(b).hexdigest()", False),
        ("key = h.digest()", False),
        ('tmp = os.environ.get("TMPDIR", "/tmp")', False),
        ("runs/tmp/x and a/home/b and https://github.com/home/", False),
        ("my_design.md or design.mdx", False),
    ],
)
def test_rules_on_hand_written_lines(line: str, bad: bool) -> None:
    """The rules catch each kind of pointer and leave look-alikes alone (no false positives)."""
    assert bool(pointer_offences("x.py", line, tracked=set())) is bad


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_cited_doc_sections_exist() -> None:
    """A comment citing docs/architecture.md#<section> (or any tracked .md) names a real heading of it."""
    files = tracked_text_files()
    anchors = {
        name: {github_anchor(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.MULTILINE)}
        for name, text in files.items() if name.endswith(".md")
    }
    missing = []
    for name, text in sorted(files.items()):
        if name == THIS_FILE:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            for match in DOC_ANCHOR.finditer(line):
                target, anchor = match.groups()
                if target in anchors and anchor not in anchors[target]:
                    missing.append(f"{name}:{lineno}: {target} has no heading for #{anchor}")
    assert not missing, "cited sections that do not exist:\n" + "\n".join(missing)
