"""Manual check (not collected by pytest): load the extensions of a data dir the way the app does and print, per
extension, its loaded scripts, plugins, selectable scripts and errors. Real extensions are put into a temporary
data dir by hand (never into the repository):

    python tests/manual/try_extension_imports.py /tmp/data      # /tmp/data/extensions/<name>/...
"""

from __future__ import annotations

import sys
from pathlib import Path

from app.cli import parse_args
from app.runtime import Runtime


def main(data_dir: str) -> int:
    runtime = Runtime(parse_args(["--data-dir", str(Path(data_dir).resolve())], environ={}))
    from app.plugins import load_extensions

    registry = load_extensions(runtime, registry=runtime.plugins)
    for ext in registry.extensions:
        plugins = sorted({p.title for owner, p in registry.plugins if owner == ext.name and hasattr(p, "title")})
        selectable = sorted({s.title for s in registry.scripts if s.extension == ext.name})
        print(f"== {ext.name} ({ext.version or 'no git'}) enabled={ext.enabled}")
        print(f"   scripts:    {ext.scripts}")
        print(f"   always-on:  {plugins}")
        print(f"   selectable: {selectable}")
        for note in ext.notes:
            print(f"   note:       {note}")
        for error in ext.errors:
            print(f"   ERROR:      {error}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
