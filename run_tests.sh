#!/usr/bin/env bash
# Sets up everything the test suite needs (venv, packages, headless chromium) and runs it.
# Usage: ./run_tests.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")"
VENV_DIR="${VENV_DIR:-venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV_DIR/bin/python" ]; then
    "$PYTHON" -m venv "$VENV_DIR"
fi
# Install (or update) the project with its test extra; quick when already satisfied.
stamp="$VENV_DIR/.atelier-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$VENV_DIR/bin/python" -m pip install --upgrade pip >/dev/null
    "$VENV_DIR/bin/python" -m pip install -e ".[test]"
    touch "$stamp"
fi
# Headless chromium for the browser tests (Debian package; Playwright never downloads a browser here).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null \
            || echo "warning: could not install chromium; browser tests will fail" >&2
    else
        echo "warning: chromium is not installed; browser tests will fail (apt-get install chromium)" >&2
    fi
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
exec "$VENV_DIR/bin/python" -m pytest -p no:cacheprovider -n "${TEST_WORKERS:-2}" "$@"
