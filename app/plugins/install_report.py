"""What the last launch's extension installers did, kept for the Extensions tab.

``python -m app.plugins.installer`` runs in its own process before the server starts (``./webui.sh``), so its
results are written to ``<data dir>/log/extension-installs.json`` (one entry per extension, the latest run
replacing that extension's entry). When extensions load, ``install_failures`` gives each extension whose last
install failed one line for its errors (Extensions tab, log): pip's reason, and in plain words when pip refused
because the extension asks for another version of a package Atelier pins (the constraints file never lets an
extension change torch, transformers, gradio or diffusers). Such an extension may still load when what it needs
is installed by hand; docs/EXTENSIONS.md has the known cases (sd-dynamic-prompts' extras).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RESULTS_NAME = "extension-installs.json"
#: Distributions an extension may never change (the installer's constraints file pins them).
PINNED = ("torch", "transformers", "gradio", "diffusers")


def results_file(log_dir: Path | str) -> Path:
    return Path(log_dir) / RESULTS_NAME


def load_results(log_dir: Path | str) -> dict[str, dict[str, Any]]:
    """``{extension: {"ok", "message", "when"}}`` of the last runs; empty when none was recorded (or unreadable)."""
    try:
        data = json.loads(results_file(log_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def save_results(log_dir: Path | str, results: Iterable[Any]) -> None:
    """Record ``InstallResult``-like objects (``name``, ``ok``, ``message``); a write failure is not an error of
    the launch (the log already has each line)."""
    data = load_results(log_dir)
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    for r in results:
        data[str(r.name)] = {"ok": bool(r.ok), "message": str(r.message), "when": when}
    try:
        path = results_file(log_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    except OSError:
        pass


def pinned_conflict(message: str) -> str | None:
    """The pinned package pip's message shows a constraints refusal for (``The user requested (constraint)
    transformers==5.2 ... depends on transformers<5``, ``ResolutionImpossible``), else None."""
    lower = message.lower()
    if not any(k in lower for k in ("(constraint)", "conflict", "resolutionimpossible")):
        return None
    for name in PINNED:
        if re.search(rf"\(constraint\)\s+{name}\b", lower) or re.search(rf"depends on {name}\s*[<>=!~]", lower):
            return name
    return None


def failure_line(entry: dict[str, Any]) -> str:
    """One line for the Extensions tab about a failed install."""
    message = str(entry.get("message", ""))
    when = entry.get("when", "the last launch")
    pinned = pinned_conflict(message)
    if pinned:
        lead = (f"install at {when} refused: it asks for a {pinned} version other than the one Atelier pins "
                "(pip constraints), so nothing was installed; the extension works only if what it needs is "
                "installed by hand without changing " + pinned)
    else:
        lead = f"install at {when} FAILED; the extension may miss what it needs"
    return f"{lead}. pip said: {message}"


def install_failures(log_dir: Path | str | None, names: Iterable[str]) -> dict[str, str]:
    """``{extension: failure_line}`` for the given extensions whose last recorded install failed."""
    if log_dir is None:
        return {}
    results = load_results(log_dir)
    return {n: failure_line(results[n]) for n in names if n in results and not results[n].get("ok", True)}
