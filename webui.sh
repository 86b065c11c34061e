#!/usr/bin/env bash
# Atelier launcher for Linux and macOS.
#   ./webui.sh [flags]        e.g. ./webui.sh --api --listen --gradio-auth me:secret
# Persistent flags go in webui-user.sh (export COMMANDLINE_ARGS="..."). Atelier reads COMMANDLINE_ARGS itself
# (shell-quoted, placed before the flags given here), so paths with spaces work when quoted inside it.
# First run: creates the virtual environment venv/, installs the torch build that fits this machine (the CPU
# build when there is no NVIDIA or AMD GPU; see app/devtools/torch_select.py) and Atelier (pip install -e .);
# it reinstalls when pyproject.toml is newer than the last install (an installed torch is kept).
set -euo pipefail

install_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$install_dir"

if [[ -f webui-user.sh ]]; then
    # shellcheck source=webui-user.sh
    source ./webui-user.sh
fi

python_cmd="${python_cmd:-python3}"
venv_dir="${venv_dir:-venv}"
export COMMANDLINE_ARGS="${COMMANDLINE_ARGS:-}"
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"

if [[ "$(id -u)" == "0" ]]; then
    echo "warning: running Atelier as root is not recommended" >&2
fi

if [[ "$venv_dir" == "-" ]]; then
    python="$python_cmd"            # venv_dir="-": use the given Python as is, install nothing
else
    if [[ ! -x "$venv_dir/bin/python" ]]; then
        echo "Creating the virtual environment in $venv_dir ..."
        "$python_cmd" -m venv "$venv_dir"
    fi
    python="$venv_dir/bin/python"
    stamp="$venv_dir/.atelier-app-installed"
    if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
        echo "Installing Atelier and its packages into $venv_dir (first run or updated pyproject.toml) ..."
        "$python" -m pip install --upgrade pip
        # The torch build for this machine (CPU wheel without an NVIDIA/AMD GPU, CUDA, ROCm, MPS on macOS; it says
        # which): app/devtools/torch_select.py. TORCH_COMMAND or TORCH_INDEX_URL (webui-user.sh) override it.
        "$python" -m app.devtools.torch_select --install
        "$python" -m pip install -e .
        touch "$stamp"
    fi
fi

# Extensions' requirements.txt and install.py (A1111 runs them on every start); --skip-install skips them. pip
# gets a constraints file, so an extension never changes torch, transformers, gradio or diffusers.
"$python" -m app.plugins.installer "$@" || echo "warning: extension installers failed (see above)" >&2

exec "$python" -m app "$@"
