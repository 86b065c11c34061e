"""The Extensions tab's per-extension report: what each extension registered (scripts by title and kind,
callbacks by event, native plugins), the JavaScript/CSS files it ships, its errors and notes. An enabled extension
that loaded files but registered nothing is flagged: it would otherwise look healthy while doing nothing."""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path
from typing import Any


def extension_files(path: str | Path) -> list[str]:
    """``javascript/*.js`` (sorted, as A1111 loads them) and ``style.css`` of an extension folder."""
    root = Path(path)
    files = sorted(f"javascript/{p.name}" for p in (root / "javascript").glob("*.js") if p.is_file())
    if (root / "style.css").is_file():
        files.append("style.css")
    return files


def extension_report(registry: Any) -> list[dict[str, Any]]:
    """One dict per extension folder: name, enabled, scripts ("title (always-on|selectable: txt2img, img2img)"),
    callbacks ({event: count}), plugins, files, errors, notes, idle (loaded but registered nothing)."""
    out = []
    for ext in getattr(registry, "extensions", []):
        tabs: dict[tuple[str, str], list[str]] = {}
        for owner, script in getattr(registry, "a1111_scripts", []):
            if owner == ext.name:
                kind = "always-on" if getattr(script, "alwayson", False) else "selectable"
                tabs.setdefault((str(script.title()), kind), []).append("img2img" if script.is_img2img else "txt2img")
        scripts = [f"{title} ({kind}: {', '.join(where)})" for (title, kind), where in tabs.items()]
        callbacks = Counter(cb.name for cbs in getattr(registry, "callbacks", {}).values() for cb in cbs
                            if cb.extension == ext.name)
        plugins = [p.title or p.id for owner, p in getattr(registry, "plugins", [])
                   if owner == ext.name and type(p).__name__ != "ScriptPlugin"]
        idle = bool(ext.enabled and ext.scripts and not scripts and not callbacks and not plugins and not ext.errors)
        out.append({"name": ext.name, "enabled": ext.enabled, "scripts": scripts, "callbacks": dict(callbacks),
                    "plugins": plugins, "files": extension_files(ext.path), "errors": list(ext.errors),
                    "notes": list(ext.notes), "idle": idle})
    return out


def _list(items: list[str]) -> str:
    return "<br>".join(html.escape(i) for i in items) if items else "<span class='atelier-dim'>none</span>"


def extension_report_html(registry: Any) -> str:
    """The report as a table (``#extensions_report``)."""
    rows = []
    for e in extension_report(registry):
        state = "enabled" if e["enabled"] else "disabled"
        callbacks = [f"{name} ×{n}" if n > 1 else name for name, n in sorted(e["callbacks"].items())]
        problems = [f'<span class="atelier-error">{html.escape(x)}</span>' for x in e["errors"]]
        if e["idle"]:
            problems.append('<span class="atelier-error">loaded, but registered no script, callback or plugin: '
                            "it does nothing here</span>")
        problems += [f'<span class="atelier-comment">{html.escape(x)}</span>' for x in e["notes"]]
        rows.append(f'<tr data-extension="{html.escape(e["name"])}"><td>{html.escape(e["name"])}</td><td>{state}</td>'
                    f"<td>{_list(e['scripts'] + e['plugins'])}</td><td>{_list(callbacks)}</td>"
                    f"<td>{_list(e['files'])}</td><td>{'<br>'.join(problems)}</td></tr>")
    if not rows:
        return '<p id="extensions_report_empty">No extension was loaded.</p>'
    return ('<table id="extensions_report_table"><tr><th>Extension</th><th>State</th><th>Scripts</th>'
            "<th>Callbacks</th><th>JavaScript / CSS</th><th>Errors and notes</th></tr>" + "".join(rows) + "</table>")
