"""The A1111 compatibility layer's *current* registry (and through it the current runtime).

A1111 extensions import ``modules.shared``, ``modules.scripts``, ``modules.script_callbacks``... at module
level and register callbacks as they are imported, with no handle to pass around: the compat modules need one
process-global view of "the registry extensions are loading into / the runtime they run in". That view lives
here, and only here: ``app.plugins.loader.load_extensions`` makes its registry current while extensions load
(and keeps it current unless ``make_current=False``), and the compat modules read it. The engine, the model
manager, the UI and the API never read it: they take the registry of their runtime (``runtime.plugins``,
``manager.plugins``; see ``app.plugins.hooks``). Before any load the current registry is an empty one.
"""

from __future__ import annotations

import threading

from app.plugins.registry import PluginRegistry

_lock = threading.Lock()
_current = PluginRegistry()


def current() -> PluginRegistry:
    """The registry extensions were last loaded into (an empty one before any load)."""
    return _current


def set_current(registry: PluginRegistry | None) -> PluginRegistry:
    """Make ``registry`` current (None → a fresh empty one); returns the previous one."""
    global _current
    with _lock:
        previous, _current = _current, registry if registry is not None else PluginRegistry()
    return previous
