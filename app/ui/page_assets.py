"""What the page carries besides gradio's own bundle: atelier.js with its boot data, every enabled extension's
`javascript/*.js` (then `*.mjs`) and `style.css`, and `user.css`, in A1111's order (spec: A1111 serves them from
`modules/ui_gradio_extensions.py`).

A1111 writes `<script src="file=...">` tags into the served HTML's `<head>` and `<link rel=stylesheet>` tags before
`</body>`, so extension scripts run while the page is parsed: before `DOMContentLoaded` (State and Aspect Ratio
Helper register their start-up there) and after the page helpers (`onUiLoaded`, `gradioApp`, ...) exist. Gradio 6
adds its own `head` option to the page from JavaScript after it started, too late for that, so `app.web.page`
inserts what `head_html` / `body_end_html` return into the HTML response instead, and serves the files through
`file=<path>` (`PageAssets.resolve`), as A1111's gradio 3 did.

Order (A1111): extensions by folder name (the loader's order); inside one, `javascript/` files sorted by name
(Python's code-point order: `__globals.js` < `_utils.js` < `ext_x.js` < `tagAutocomplete.js`), every `.js` of every
extension before any `.mjs` (loaded as modules); `style.css` of each extension root in the same order, then
`<data dir>/user.css`. Only files inside an enabled extension's folder, `<data dir>/tmp` (where A1111 extensions
leave files for their JavaScript to fetch) and `user.css` are served; hidden paths (`.git`, ...) never are.
This module is pure: no gradio, no FastAPI.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Served media types: A1111 extensions fetch their own data files (CSV, JSON, text) through `file=` too.
MEDIA_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".json": "application/json",
               ".csv": "text/csv", ".txt": "text/plain", ".html": "text/html", ".svg": "image/svg+xml",
               ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
               ".gif": "image/gif", ".yaml": "text/plain", ".yml": "text/plain"}


@dataclass
class PageAssets:
    """The enabled extensions' page files, found once per page (cheap: a directory listing per extension)."""

    data_dir: Path
    extension_roots: list[Path] = field(default_factory=list)
    scripts: list[Path] = field(default_factory=list)  # classic scripts, A1111 order
    module_scripts: list[Path] = field(default_factory=list)  # *.mjs, after every .js
    styles: list[Path] = field(default_factory=list)  # style.css per extension, then user.css

    def webpath(self, path: Path) -> str:
        """A1111's `file=<path>?<mtime>`: relative to the data dir when inside it, else absolute; the mtime makes a
        browser fetch an edited file again."""
        try:
            rel = path.relative_to(self.data_dir).as_posix()
        except ValueError:
            rel = path.as_posix()
        try:
            mtime = path.stat().st_mtime
        except OSError:
            mtime = 0
        return f"file={rel}?{mtime}"

    def resolve(self, raw: str) -> Path | None:
        """The file a `file=<raw>` request may read, or None: inside an enabled extension's folder, `<data dir>/tmp`,
        or `<data dir>/user.css`; relative paths are taken from the data dir (A1111's working directory); no
        hidden component; symlinked extension folders are followed."""
        if not raw or "\0" in raw:
            return None
        candidate = Path(raw)
        if not candidate.is_absolute():
            candidate = self.data_dir / candidate
        try:
            real = candidate.resolve()
        except (OSError, RuntimeError):
            return None
        if not real.is_file():
            return None
        if real == (self.data_dir / "user.css").resolve():
            return real
        for root in [*self.extension_roots, self.data_dir / "tmp"]:
            try:
                rel = real.relative_to(root.resolve())
            except (ValueError, OSError):
                continue
            if any(part.startswith(".") for part in rel.parts):
                return None
            return real
        return None


def collect_assets(extensions: Iterable[Any], data_dir: Path | str) -> PageAssets:
    """The page files of `extensions` (the registry's `ExtensionInfo`s, in load order; disabled ones skipped, an
    extension whose Python failed still has its JavaScript served, as in A1111)."""
    data = Path(data_dir).resolve()
    assets = PageAssets(data_dir=data)
    modules: list[Path] = []
    for ext in extensions:
        if not getattr(ext, "enabled", True):
            continue
        root = Path(ext.path)
        assets.extension_roots.append(root)
        js_dir = root / "javascript"
        names = sorted(p.name for p in js_dir.iterdir()) if js_dir.is_dir() else []
        for name in names:
            file = js_dir / name
            if not file.is_file():
                continue
            suffix = file.suffix.lower()
            if suffix == ".js":
                assets.scripts.append(file)
            elif suffix == ".mjs":
                modules.append(file)
        if (root / "style.css").is_file():
            assets.styles.append(root / "style.css")
    assets.module_scripts = modules
    if (data / "user.css").is_file():
        assets.styles.append(data / "user.css")
    return assets


def boot_script(boot: Mapping[str, Any]) -> str:
    """`window.atelierBoot = {...}` as an inline script (a `</` inside a value cannot close the tag)."""
    text = json.dumps(dict(boot), default=str).replace("</", "<\\/")
    return f"<script>window.atelierBoot = {text};</script>"


def inline_script(source: str) -> str:
    return "<script>\n" + source.replace("</script", "<\\/script") + "\n</script>"


def head_html(assets: PageAssets, boot: Mapping[str, Any], atelier_js: str) -> str:
    """What goes before `</head>`: the boot data, atelier.js (the A1111 page helpers extensions call), then the
    extensions' scripts in A1111's order."""
    parts = [boot_script(boot), inline_script(atelier_js)]
    parts += [f'<script type="text/javascript" src="{html.escape(assets.webpath(p))}"></script>' for p in assets.scripts]
    parts += [f'<script type="module" src="{html.escape(assets.webpath(p))}"></script>' for p in assets.module_scripts]
    return "\n".join(parts) + "\n"


def body_end_html(assets: PageAssets) -> str:
    """What goes before `</body>`: the extensions' `style.css` and `user.css` (after gradio's styles, so they win)."""
    return "".join(f'<link rel="stylesheet" property="stylesheet" href="{html.escape(assets.webpath(p))}">'
                   for p in assets.styles)


class PageSource:
    """The UI's page additions for `app.web.page` (built by `app.ui.build_ui`, read per request): `head()`,
    `body_end()`, and `resolve(raw)` / `media_types` for `file=` requests. `extensions()` returns the registry's
    extensions (read each time: the Extensions tab can change what is enabled); `boot()` the data atelier.js starts
    from (settings as `opts`, hover texts, `--theme`)."""

    media_types = MEDIA_TYPES

    def __init__(self, extensions: Any, data_dir: Path | str, boot: Any, atelier_js: str) -> None:
        self._extensions = extensions
        self.data_dir = Path(data_dir)
        self._boot = boot
        self.atelier_js = atelier_js

    def assets(self) -> PageAssets:
        return collect_assets(self._extensions(), self.data_dir)

    def head(self) -> str:
        assets = self.assets()
        boot = {**self._boot(), "extension_scripts": len(assets.scripts) + len(assets.module_scripts)}
        return head_html(assets, boot, self.atelier_js)

    def body_end(self) -> str:
        return body_end_html(self.assets())

    def resolve(self, raw: str) -> Path | None:
        return self.assets().resolve(raw)
