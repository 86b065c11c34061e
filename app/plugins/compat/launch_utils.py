"""``launch`` / ``modules.launch_utils``: the helpers extensions' ``install.py`` and scripts call - ``is_installed``,
``run_pip``, ``run``, ``run_python``, ``git_clone``, ``args`` (the parsed flags), ``python``, ``git``.

``run_pip`` installs into the running interpreter's environment (the venv of ``./webui.sh``) with Atelier's
constraints file (``app.plugins.installer.constraints_file``) so an extension never changes torch,
transformers, gradio or diffusers; with ``--skip-install`` it does nothing, as A1111's does.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from app.plugins.compat.current import current

log = logging.getLogger("atelier.extensions")

python = sys.executable
git = os.environ.get("GIT", "git")
index_url = os.environ.get("INDEX_URL", "")
dir_repos = "repositories"
default_command_live = os.environ.get("WEBUI_LAUNCH_LIVE_OUTPUT") == "1"


def _args() -> Any:
    runtime = current().runtime
    if runtime is not None and getattr(runtime, "args", None) is not None:
        return runtime.args
    from app.cli import build_parser, env_args

    return build_parser().parse_known_args(env_args() + sys.argv[1:])[0]


def is_installed(package: str) -> bool:
    """Whether a distribution (``pip`` name) or an importable module of that name is present."""
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


class ExtensionInstallError(RuntimeError):
    """A command an extension's installer ran failed (the message holds its output's tail)."""


def run(command: str | list[str], desc: str | None = None, errdesc: str | None = None,
        custom_env: dict[str, str] | None = None, live: bool = default_command_live) -> str:
    """Run a command (a shell string, as A1111 passes it); returns its output, raises on failure."""
    if desc:
        log.info("%s", desc)
    shell = isinstance(command, str)
    proc = subprocess.run(command, shell=shell, env=custom_env or os.environ, check=False,  # noqa: S603 - extension installer
                          capture_output=not live, text=True)
    if proc.returncode != 0:
        tail = ((proc.stdout or "") + (proc.stderr or ""))[-2000:]
        raise ExtensionInstallError(f"{errdesc or 'Error running command'} (exit code {proc.returncode}): "
                                    f"{command if shell else shlex.join(command)}\n{tail}")
    return proc.stdout or ""


def run_pip(command: str, desc: str | None = None, live: bool = default_command_live) -> str:
    """``pip <command>`` in this environment, never changing the packages Atelier pins."""
    if getattr(_args(), "skip_install", False):
        return ""
    from app.plugins.installer import pip_command

    return run(pip_command(shlex.split(command)), desc=f"Installing {desc}" if desc else None,
               errdesc=f"Couldn't install {desc or command}", live=live)


def run_python(code: str, live: bool = False) -> str:
    return run([python, "-c", code], live=live)


def check_run_python(code: str) -> bool:
    return subprocess.run([python, "-c", code], capture_output=True, check=False).returncode == 0  # noqa: S603


def repo_dir(name: str) -> str:
    """A1111's ``repositories/<name>`` folder, under the data dir."""
    return str(Path(_data_dir()) / dir_repos / name)


def _data_dir() -> str:
    runtime = current().runtime
    data = getattr(getattr(runtime, "paths", None), "data_dir", None)
    return str(data) if data is not None else os.getcwd()


def git_clone(url: str, dir: str, name: str, commithash: str | None = None) -> None:  # noqa: A002 - A1111's name
    """Clone ``url`` into ``dir`` (when missing) and check out ``commithash``."""
    if not os.path.exists(dir):
        run([git, "clone", "--", url, dir], f"Cloning {name} into {dir}...", f"Couldn't clone {name}")
    if commithash:
        run([git, "-C", dir, "checkout", commithash], None, f"Couldn't checkout {name}'s hash: {commithash}")


def commit_hash() -> str:
    """Atelier's commit (``<none>`` outside a git checkout)."""
    try:
        return subprocess.check_output([git, "-C", str(Path(__file__).parents[3]), "rev-parse", "HEAD"],  # noqa: S603
                                       text=True, stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return "<none>"


def git_tag() -> str:
    """Atelier's version (the package version; A1111 extensions show it as the webui version)."""
    try:
        return "v" + importlib.metadata.version("atelier")
    except importlib.metadata.PackageNotFoundError:
        return "<none>"


def requirements_met(requirements_file: str) -> bool:
    """Whether every ``name==version`` / ``name>=version`` line of a requirements file is installed."""
    from app.plugins.installer import requirements_met as met

    return met(Path(requirements_file))


def __getattr__(name: str) -> Any:
    if name == "args":
        return _args()
    raise AttributeError(f"module 'launch' has no attribute {name!r}")
