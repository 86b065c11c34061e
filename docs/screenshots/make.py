"""Regenerate the screenshots in this folder (txt2img/img2img, light and dark themes, plus an inpaint result).

    python docs/screenshots/make.py

It runs the browser tests that take them (real app on the tiny test models, headless Chromium) with
ATELIER_SCREENSHOTS=1; see tests/browser/test_ui_browser.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

if __name__ == "__main__":
    env = {**os.environ, "ATELIER_SCREENSHOTS": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/browser/test_ui_browser.py",
           "-k", "generate_shows or inpaint"]
    raise SystemExit(subprocess.call(cmd, cwd=ROOT, env=env))
