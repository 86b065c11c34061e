"""The typed core is mypy-clean: `mypy` with the project's settings ([tool.mypy] in pyproject.toml).

The files it checks (``files`` there: params, jobs/, engine/plan.py, plugins/api.py) are held to the
``--strict`` rules; the modules they import are analysed for their types only. The run uses the repository's
``.mypy_cache`` (git-ignored), so after the first run it takes a few seconds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_is_clean_on_the_typed_modules() -> None:
    # A subprocess, not mypy.api.run: mypy's memory and global state stay out of the test worker.
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    if proc.returncode != 0:
        pytest.fail(f"mypy reported errors (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}", pytrace=False)
