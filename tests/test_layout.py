"""The package layout contracts of docs/architecture.md#dependency-direction."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("kernels", "training", "export", "bench", "tests")


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value.split(".")[0])
    return names


def test_library_never_imports_checkout_packages() -> None:
    offenders = []
    for path in sorted((REPO_ROOT / "videoseg_o3").rglob("*.py")):
        bad = _imported_top_levels(path) & set(FORBIDDEN)
        if bad:
            offenders.append(f"{path.relative_to(REPO_ROOT)} imports {sorted(bad)}")
    assert not offenders, "videoseg_o3 must not import checkout-only packages:\n" + "\n".join(offenders)


def test_device_name_lives_in_one_module() -> None:
    """Device checks with a "cuda" literal live only in device.py (CONTRIBUTING.md#code-style); tier names like impl="cuda" are fine."""
    import re

    pattern = re.compile(r"""(==|!=|device\(|\.to\(|device=|type=)\s*["']cuda""")
    offenders = []
    for path in sorted((REPO_ROOT / "videoseg_o3").rglob("*.py")):
        if path.name == "device.py":
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if pattern.search(code):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{lineno}: {line.strip()}")
    assert not offenders, "use videoseg_o3.device instead of a 'cuda' literal:\n" + "\n".join(offenders)


def test_our_kernels_folder_is_not_mistaken_for_the_pypi_kernels_package() -> None:
    """transformers probes for the PyPI package `kernels`; our checkout folder must not look like it."""
    code = (
        "import sys; sys.path.insert(0, {root!r});"
        "import kernels, transformers.utils.import_utils as iu;"
        "assert kernels.__file__.startswith({root!r}), kernels.__file__;"
        "print(iu.is_kernels_available())"
    ).format(root=str(REPO_ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout


def test_an_installed_pypi_kernels_package_is_refused_with_its_cause(tmp_path) -> None:
    """With the PyPI `kernels` installed (a transformers requirement from 5.25 on) the clash cannot be avoided:
    our folder shadows it and transformers fails with a bare `cannot import name`. Importing our folder must say
    why and what to do. The distribution is simulated by its metadata, all that `importlib.metadata` reads."""
    dist = tmp_path / "kernels-0.19.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kernels\nVersion: 0.19.1\n")
    code = f"import sys; sys.path[:0] = [{str(REPO_ROOT)!r}, {str(tmp_path)!r}]; import kernels"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert out.returncode != 0
    assert "ImportError: Hugging Face's `kernels` package (0.19.1) is installed" in out.stderr, out.stderr
    assert "pip uninstall kernels" in out.stderr


def test_cli_info_reports_extension() -> None:
    from videoseg_o3.cli.info import collect_info

    info = collect_info()
    for key in ("version", "extension", "cuda_extension", "cuda_available", "decoders", "torch_version", "transformers_version", "sam2_version"):
        assert key in info, key
    assert isinstance(info["decoders"], list)
    ext = importlib.import_module("videoseg_o3._ext")
    assert info["extension"] is ext.HAS_C


def test_extension_built_when_required() -> None:
    """CI sets VIDEOSEG_REQUIRE_EXT=1: then the compiled module must be loaded."""
    import os

    ext = importlib.import_module("videoseg_o3._ext")
    if os.environ.get("VIDEOSEG_REQUIRE_EXT") == "1":
        assert ext.HAS_C, ext.C_ERROR
    else:
        # Without the requirement the flag must still agree with reality.
        assert ext.HAS_C == (ext.C is not None)


def test_ops_exports_frame_prep_lazily() -> None:
    import videoseg_o3.ops as ops
    from videoseg_o3.ops import frame_prep

    assert ops.prepare_frames is frame_prep.prepare_frames
    assert ops.qwen_resize_hw is frame_prep.qwen_resize_hw
    import pytest

    with pytest.raises(AttributeError, match="no_such_op"):
        ops.no_such_op  # noqa: B018
