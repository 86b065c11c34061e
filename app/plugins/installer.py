"""Run extensions' installers at launch, as A1111's ``launch.py`` does: ``python -m app.plugins.installer [flags]``
(called by ``./webui.sh`` inside the venv, before the server starts; ``--skip-install`` skips it).

Per enabled extension, in name order: ``requirements.txt`` is installed with pip when a line is not satisfied,
then ``install.py`` runs in a child interpreter with the ``modules`` / ``launch`` compatibility modules importable
and the extension folder as working directory. Every pip call gets a constraints file pinning the installed
torch, transformers, gradio and diffusers (``-c`` for our own pip calls, ``PIP_CONSTRAINT`` for the pip an
``install.py`` runs itself), so an extension can never downgrade (or upgrade) them; a conflict makes that
extension's install fail instead. One log line per extension says what happened; a failure never stops
the launch (the extension's import error shows in the Extensions tab).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.plugins.install_report import PINNED, save_results  # PINNED: the packages an extension never changes

log = logging.getLogger("atelier.extensions")

#: The environment variable that hands the constraints file to ``install.py`` children.
CONSTRAINTS_ENV = "ATELIER_PIP_CONSTRAINTS"
INSTALL_TIMEOUT_S = 1800


def constraints_text() -> str:
    """``name==version`` for each installed pinned distribution."""
    lines = []
    for name in PINNED:
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return "\n".join(lines) + "\n"


def constraints_file() -> Path:
    """The constraints file (from ``ATELIER_PIP_CONSTRAINTS``, else written once to the temp folder)."""
    given = os.environ.get(CONSTRAINTS_ENV)
    if given and Path(given).is_file():
        return Path(given)
    path = Path(tempfile.gettempdir()) / f"atelier-pip-constraints-{os.getuid() if hasattr(os, 'getuid') else 0}.txt"
    text = constraints_text()
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def pip_command(args: list[str]) -> list[str]:
    """``python -m pip <args>``; an ``install`` gets ``--prefer-binary`` and the constraints file."""
    command = [sys.executable, "-m", "pip", *args]
    if args and args[0] == "install":
        command += ["--prefer-binary", "-c", str(constraints_file())]
    return command


def requirements_met(file: Path) -> bool:
    """Whether every requirement line of ``file`` is satisfied by an installed distribution."""
    from packaging.requirements import InvalidRequirement, Requirement

    for raw in file.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            return False  # a URL or something pip understands and we do not: let pip decide
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            return False
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            return False
    return True


@dataclass
class InstallResult:
    """What happened for one extension (``ok`` False: ``message`` says why)."""

    name: str
    ok: bool
    message: str


def _tail(proc: subprocess.CompletedProcess[str]) -> str:
    """pip's own ``ERROR:`` lines (e.g. the pinned package that would have changed) and the last lines."""
    lines = ((proc.stdout or "") + (proc.stderr or "")).strip().splitlines()
    errors = [line.strip()[:300] for line in lines if line.lstrip().startswith("ERROR:")][:3]
    # a constraints conflict: which pinned package and who wanted another version
    causes = [line.strip()[:300] for line in lines if "(constraint)" in line or " depends on " in line][:4]
    return " | ".join(dict.fromkeys([*errors, *causes, *(line.strip()[:300] for line in lines[-3:])]))


def install_extension(path: Path, env: dict[str, str] | None = None) -> InstallResult:
    """Install one extension's ``requirements.txt`` and run its ``install.py``."""
    env = dict(env or os.environ)
    env.setdefault(CONSTRAINTS_ENV, str(constraints_file()))
    # pip reads PIP_CONSTRAINT itself: it also binds installers that call pip directly instead of launch.run_pip
    env["PIP_CONSTRAINT"] = " ".join(p for p in (env.get("PIP_CONSTRAINT", ""), env[CONSTRAINTS_ENV]) if p)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, str(path), env.get("PYTHONPATH", "")) if p)
    done: list[str] = []
    start = time.monotonic()
    req = path / "requirements.txt"
    if req.is_file():
        if requirements_met(req):
            done.append("requirements.txt already met")
        else:
            proc = subprocess.run(pip_command(["install", "-r", str(req)]), capture_output=True, text=True,  # noqa: S603
                                  env=env, cwd=path, timeout=INSTALL_TIMEOUT_S, check=False)
            if proc.returncode != 0:
                return InstallResult(path.name, False, f"requirements.txt failed: {_tail(proc)}")
            done.append("requirements.txt installed")
    if (path / "install.py").is_file():
        code = "from app.plugins.installer import run_install_script; run_install_script()"
        proc = subprocess.run([sys.executable, "-c", code, str(path / "install.py")], capture_output=True,  # noqa: S603
                              text=True, env=env, cwd=path, timeout=INSTALL_TIMEOUT_S, check=False)
        if proc.returncode != 0:
            return InstallResult(path.name, False, f"install.py failed (exit code {proc.returncode}): {_tail(proc)}")
        done.append("install.py ran")
    if not done:
        return InstallResult(path.name, True, "nothing to install")
    return InstallResult(path.name, True, f"{', '.join(done)} ({time.monotonic() - start:.1f} s)")


def run_install_script() -> None:
    """In the child interpreter: make ``modules`` and ``launch`` importable, then run ``install.py`` as
    ``__main__`` (its path is ``sys.argv[1]``)."""
    import runpy

    from app.plugins import compat

    script = Path(sys.argv[1])
    problems = compat.install()
    if problems:
        raise SystemExit("; ".join(problems))
    sys.argv = [str(script)]
    sys.path.insert(0, str(script.parent))
    runpy.run_path(str(script), run_name="__main__")


def _settings_data(config_file: Path) -> dict[str, Any]:
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_installers(args: Any) -> list[InstallResult]:
    """Install every enabled extension of the data dir ``args`` point at; one log line each."""
    from app.paths import paths_from_args
    from app.plugins.loader import disabled_reason, discover

    paths = paths_from_args(args)
    settings = _settings_data(Path(paths.config_file))
    results = []
    for path in discover(paths.extensions_dir):
        if disabled_reason(path.name, settings, args) is not None:
            continue
        if not (path / "requirements.txt").is_file() and not (path / "install.py").is_file():
            continue
        try:
            result = install_extension(path)
        except subprocess.TimeoutExpired:
            result = InstallResult(path.name, False, f"timed out after {INSTALL_TIMEOUT_S} s")
        except OSError as exc:
            result = InstallResult(path.name, False, f"{type(exc).__name__}: {exc}")
        results.append(result)
        if result.ok:
            log.info("extension %s: %s", result.name, result.message)
        else:
            log.warning("extension %s: install FAILED: %s", result.name, result.message)
    save_results(paths.log_dir, results)  # the server's Extensions tab shows a failure (app.plugins.install_report)
    return results


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``./webui.sh``: never fails the launch (returns 0)."""
    from app.cli import parse_args

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    if getattr(args, "skip_install", False) or getattr(args, "disable_all_extensions", False):
        return 0
    run_installers(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
