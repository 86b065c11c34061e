"""The Extensions tab's A1111-style management, without gradio: the extension index (A1111's ``index.json``
read from a URL or a local file, the ``extensions_index_url`` setting) and update checks of installed
extensions (``git fetch`` + commits behind the upstream branch, ``git pull --ff-only`` to apply).

Everything that runs git is for the Extensions tab, which allows it only when
``runtime.extension_install_allowed`` (loopback server, or ``--enable-insecure-extension-access``: A1111's rule).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

#: A1111's default index (the setting ``extensions_index_url`` overrides it; a local path works offline).
DEFAULT_INDEX_URL = "https://raw.githubusercontent.com/AUTOMATIC1111/stable-diffusion-webui-extensions/master/index.json"
GIT_TIMEOUT_S = 120
MAX_INDEX_BYTES = 32 * 1024 * 1024


class IndexError_(ValueError):  # noqa: N801 - not the builtin IndexError
    """The index could not be read or is not A1111's format (the message says which)."""


@dataclass
class IndexEntry:
    """One extension of the index."""

    name: str
    url: str
    description: str = ""
    tags: tuple[str, ...] = ()
    added: str = ""
    stars: int = 0


def read_index(source: str) -> list[IndexEntry]:
    """The entries of an A1111 ``index.json`` at ``source`` (http(s) URL, ``file://`` URL or a path)."""
    source = (source or "").strip()
    if not source:
        raise IndexError_("no extension index URL or file given (setting extensions_index_url)")
    parsed = urlparse(source)
    try:
        if parsed.scheme in ("http", "https"):
            with urllib.request.urlopen(source, timeout=20) as response:  # noqa: S310 - http(s) only
                raw = response.read(MAX_INDEX_BYTES + 1)
        else:
            path = Path(parsed.path if parsed.scheme == "file" else source).expanduser()
            raw = path.read_bytes()[:MAX_INDEX_BYTES + 1]
    except OSError as exc:
        raise IndexError_(f"cannot read the extension index from {source}: {exc}") from None
    if len(raw) > MAX_INDEX_BYTES:
        raise IndexError_(f"the extension index at {source} is larger than {MAX_INDEX_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise IndexError_(f"the extension index at {source} is not JSON: {exc}") from None
    items = data.get("extensions") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise IndexError_(f"the extension index at {source} has no \"extensions\" list (A1111's index.json format)")
    entries = []
    for item in items:
        if not isinstance(item, dict) or not item.get("url") or not item.get("name"):
            continue
        tags = item.get("tags") if isinstance(item.get("tags"), list) else []
        stars = item.get("stars")
        entries.append(IndexEntry(str(item["name"]), str(item["url"]), str(item.get("description") or ""),
                                  tuple(str(t) for t in tags), str(item.get("added") or ""),
                                  int(stars) if isinstance(stars, int) else 0))
    return entries


def _norm(url: str | None) -> str:
    return (url or "").strip().rstrip("/").removesuffix(".git").lower()


def installed_urls(extensions: list[Any]) -> set[str]:
    """Normalised remotes of the installed extensions (objects with ``remote``)."""
    return {_norm(getattr(e, "remote", None)) for e in extensions if getattr(e, "remote", None)}


def filter_index(entries: list[IndexEntry], installed: set[str], search: str = "", hide_installed: bool = False,
                 sort: str = "name") -> list[tuple[IndexEntry, bool]]:
    """``(entry, is_installed)`` matching ``search`` (name, description, tags), sorted by name/stars/added."""
    needle = search.strip().lower()
    rows = []
    for entry in entries:
        done = _norm(entry.url) in installed
        if hide_installed and done:
            continue
        if needle and needle not in f"{entry.name} {entry.description} {' '.join(entry.tags)}".lower():
            continue
        rows.append((entry, done))
    keys = {"stars": lambda r: -r[0].stars, "added": lambda r: r[0].added, "name": lambda r: r[0].name.lower()}
    rows.sort(key=keys.get(sort, keys["name"]))
    if sort == "added":
        rows.reverse()
    return rows


# -- updates ------------------------------------------------------------------------------------------
def _git(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    git = shutil.which("git")
    if git is None:
        raise FileNotFoundError("git is not installed")
    return subprocess.run([git, "-C", str(path), *args], capture_output=True, text=True,  # noqa: S603
                          timeout=GIT_TIMEOUT_S, check=False)


def check_for_update(path: Path) -> str:
    """``"up to date"``, ``"behind N commit(s)"``, or why it cannot be checked (not a git checkout, no
    upstream, the fetch failed)."""
    if not (Path(path) / ".git").exists():
        return "not a git checkout: update it by hand"
    try:
        fetch = _git(path, "fetch", "--quiet")
        if fetch.returncode != 0:
            return f"fetch failed: {fetch.stderr.strip()[-300:]}"
        count = _git(path, "rev-list", "--count", "HEAD..@{upstream}")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot check: {exc}"
    if count.returncode != 0:
        return f"no upstream branch to compare with: {count.stderr.strip()[-200:]}"
    behind = int(count.stdout.strip() or 0)
    return "up to date" if behind == 0 else f"behind {behind} commit{'s' if behind != 1 else ''}"


def update(path: Path) -> str:
    """``git pull --ff-only`` (a local change or a diverged branch is refused, never overwritten)."""
    try:
        proc = _git(path, "pull", "--ff-only", "--quiet")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"update failed: {exc}"
    if proc.returncode != 0:
        return f"update failed: {proc.stderr.strip()[-300:]}"
    head = _git(path, "rev-parse", "--short", "HEAD").stdout.strip()
    return f"updated to {head}"
