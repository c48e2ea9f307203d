"""The checkout's ``kernels`` package and Hugging Face's ``kernels`` distribution share an import name.

Run from the checkout, ours shadows theirs, and transformers (which imports theirs whenever that distribution
is installed) fails with a bare ``cannot import name``. Importing ours must instead say why and what to do.
The installed distribution is simulated by its metadata alone (a ``kernels-<version>.dist-info`` folder on
``sys.path``), which is all ``importlib.metadata`` reads.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _import_kernels(extra_path: Path | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", "import kernels"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_installed_hub_kernels_is_refused_with_its_cause(tmp_path) -> None:
    dist = tmp_path / "kernels-0.19.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kernels\nVersion: 0.19.1\n")
    result = _import_kernels(tmp_path)
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert "Hugging Face's `kernels` package (0.19.1) is installed" in result.stderr
    assert "pip uninstall kernels" in result.stderr


def test_without_hub_kernels_the_package_imports() -> None:
    result = _import_kernels(None)
    assert result.returncode == 0, result.stderr
