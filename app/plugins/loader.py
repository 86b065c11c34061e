"""Discover and load ``extensions/<NAME>/`` folders into a ``PluginRegistry``.

Per enabled extension, in name order: ``preload.py`` (its ``preload(parser)`` adds flag defaults to
``shared.cmd_opts``), ``atelier_plugin.py`` (native ``Plugin`` subclasses), then ``scripts/*.py``
(A1111 ``Script`` subclasses, with the ``modules`` compatibility package installed). Each file is
imported under a unique module name with the extension folder on ``sys.path`` only while it is
imported; any exception (SyntaxError, a missing dependency...) is recorded on the extension and the
next file is loaded. ``install.py`` / ``requirements.txt`` are run at launch by ``./webui.sh``
(``app.plugins.installer``), not here.
"""

from __future__ import annotations

import argparse
import configparser
import importlib.util
import logging
import re
import sys
import traceback
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

from app.plugins.api import API_VERSION, Plugin
from app.plugins.compat import current as compat_current
from app.plugins.install_report import install_failures
from app.plugins.registry import ExtensionInfo, PluginRegistry, SelectableScript

log = logging.getLogger(__name__)

INSTALL_NOTE = "install.py runs at launch from ./webui.sh (python -m app.plugins.installer; --skip-install skips it)"
_module_counter = 0


# -- discovery and metadata --------------------------------------------------------------------------
def discover(extensions_dir: Path | str) -> list[Path]:
    """The extension folders (hidden ones and plain files skipped), sorted by name."""
    folder = Path(extensions_dir)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def read_metadata(path: Path) -> tuple[configparser.ConfigParser | None, str | None]:
    """``metadata.ini`` parsed (None when absent), and an error message when it is unreadable."""
    file = path / "metadata.ini"
    if not file.is_file():
        return None, None
    parser = configparser.ConfigParser()
    try:
        parser.read(file, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError, OSError) as exc:
        return None, f"metadata.ini: {type(exc).__name__}: {exc}"
    return parser, None


def git_info(path: Path) -> dict[str, Any]:
    """remote, branch, commit_hash, commit_date of ``path/.git``, read as files (git is never run)."""
    git = path / ".git"
    info: dict[str, Any] = {"remote": None, "branch": None, "commit_hash": None, "commit_date": None}
    if git.is_file():  # a worktree/submodule: "gitdir: <path>"
        text = _read(git) or ""
        if text.startswith("gitdir:"):
            target = Path(text.split(":", 1)[1].strip())
            git = target if target.is_absolute() else (path / target)
    if not git.is_dir():
        return info
    head = (_read(git / "HEAD") or "").strip()
    if head.startswith("ref:"):
        ref = head[4:].strip()
        info["branch"] = ref.removeprefix("refs/heads/")
        info["commit_hash"] = (_read(git / ref) or "").strip() or _packed_ref(git, ref)
    elif re.fullmatch(r"[0-9a-f]{40}", head):
        info["commit_hash"] = head
    info["remote"] = _remote_url(_read(git / "config") or "")
    if info["commit_hash"]:
        info["commit_date"] = _commit_date(git, info["commit_hash"])
    return info


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _packed_ref(git: Path, ref: str) -> str | None:
    for line in (_read(git / "packed-refs") or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == ref:
            return parts[0]
    return None


def _remote_url(config: str) -> str | None:
    """The url of remote "origin" (else the first remote) in a git config file."""
    section, urls = "", {}
    for raw in config.splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif line.startswith("url") and "=" in line and section.startswith("[remote"):
            urls.setdefault(section, line.split("=", 1)[1].strip())
    return urls.get('[remote "origin"]') or next(iter(urls.values()), None)


def _commit_date(git: Path, commit: str) -> int | None:
    """Committer time of a loose commit object (None when packed or unreadable)."""
    obj = git / "objects" / commit[:2] / commit[2:]
    try:
        data = zlib.decompress(obj.read_bytes())
    except (OSError, zlib.error):
        return None
    for line in data.split(b"\0", 1)[-1].split(b"\n"):
        if line.startswith(b"committer "):
            match = re.search(rb" (\d+) [+-]\d{4}$", line)
            return int(match.group(1)) if match else None
        if not line:
            break
    return None


def disabled_reason(name: str, settings: Any, args: Any) -> str | None:
    """Why extension ``name`` is not loaded (None: it is enabled). There are no built-in extensions,
    so "extra" disables every extension, like "all"."""
    if getattr(args, "disable_all_extensions", False):
        return "--disable-all-extensions"
    if getattr(args, "disable_extra_extensions", False):
        return "--disable-extra-extensions"
    mode = str(_setting(settings, "disable_all_extensions", "none") or "none")
    if mode in ("all", "extra"):
        return f"disable_all_extensions setting is {mode!r}"
    if name in (_setting(settings, "disabled_extensions", []) or []):
        return "disabled in settings"
    return None


def _setting(settings: Any, key: str, default: Any) -> Any:
    if settings is None:
        return default
    try:
        return settings.get(key, default)
    except Exception:  # noqa: BLE001 - a settings object without this key
        return default


# -- loading ---------------------------------------------------------------------------------------
def load_extensions(runtime: Any = None, *, extensions_dir: Path | str | None = None, settings: Any = None,
                    args: Any = None, make_current: bool = True, registry: PluginRegistry | None = None) -> PluginRegistry:
    """Load every enabled extension into ``registry`` (the Runtime passes its ``runtime.plugins``; None: a new
    one) and return it; never raises for an extension's fault. While they load, and afterwards with
    ``make_current``, the registry is the A1111 compatibility layer's current one
    (``app.plugins.compat.current``: what ``modules.shared``/``script_callbacks`` see). With a runtime,
    ``registry.run_app_started`` is registered through ``runtime.on_app_started`` (routes are added when
    the app is built) and the extensions' ``on_ui_settings`` options are registered in its settings; their
    ``on_before_ui`` callbacks run last."""
    folder = Path(extensions_dir) if extensions_dir is not None else Path(runtime.paths.extensions_dir)
    settings = settings if settings is not None else getattr(runtime, "settings", None)
    args = args if args is not None else getattr(runtime, "args", None)
    if registry is None:
        registry = PluginRegistry(runtime, settings)
    previous = compat_current.set_current(registry)  # extensions register into it while they load
    _forget_extension_modules()
    try:
        for path in discover(folder):
            _load_one(registry, path, settings, args)
        # A1111 runs on_ui_settings while building the UI; here at once, so the options extensions add
        # exist before their hooks read them (and for the API, without a UI).
        registry.run_callbacks("ui_settings")
        # A1111 runs on_before_ui once its scripts are loaded, with or without a UI (--nowebui too): extensions
        # add their X/Y/Z plot axes there (ADetailer); here in both processes, so the worker has them as well.
        registry.run_callbacks("before_ui")
        _report_install_failures(registry, runtime)
    finally:
        registry.loading = ""
        if not make_current:
            compat_current.set_current(previous)
    if runtime is not None and hasattr(runtime, "on_app_started"):
        runtime.on_app_started(registry.run_app_started)  # plugin routes + on_app_started(demo, app)
    loaded = [e.name for e in registry.extensions if e.enabled and not e.errors]
    failed = [e.name for e in registry.extensions if e.errors]
    if registry.extensions:
        log.info("extensions: %d loaded%s", len(loaded), f", with errors: {', '.join(failed)}" if failed else "")
    return registry


def _report_install_failures(registry: PluginRegistry, runtime: Any) -> None:
    """A failed install at the last launch (``./webui.sh`` runs the installers in their own process, which
    records the results under the data dir's log folder) is an error on its extension, with pip's reason."""
    log_dir = getattr(getattr(runtime, "paths", None), "log_dir", None)
    failures = install_failures(log_dir, [e.name for e in registry.extensions if e.enabled])
    for info in registry.extensions:
        if info.name in failures:
            info.errors.append(failures[info.name])


def _load_one(registry: PluginRegistry, path: Path, settings: Any, args: Any) -> None:
    name = path.name
    info = ExtensionInfo(name=name, path=str(path), **git_info(path))
    info.version = (info.commit_hash or "")[:8]
    registry.extensions.append(info)
    metadata, error = read_metadata(path)
    if error:
        info.errors.append(error)
    if metadata is not None and metadata.has_option("Extension", "Name"):
        info.display_name = metadata.get("Extension", "Name")
    reason = disabled_reason(name, settings, args)
    if reason is not None:
        info.enabled = False
        info.notes.append(f"not loaded: {reason}")
        return
    if (path / "install.py").is_file():
        info.notes.append(INSTALL_NOTE)
    registry.loading = name
    before = set(sys.modules)
    try:
        if (path / "preload.py").is_file():
            _run_preload(registry, info, path)
        if (path / "atelier_plugin.py").is_file():
            module = _import_file(info, path, path / "atelier_plugin.py")
            if module is not None:
                _register_native(registry, info, module)
        scripts = sorted((path / "scripts").glob("*.py")) if (path / "scripts").is_dir() else []
        if scripts:
            from app.plugins import compat

            problems = compat.install()
            if problems:
                info.errors += problems
                return
            for file in scripts:
                module = _import_file(info, path, file)
                if module is not None:
                    _register_scripts(registry, info, module, file.relative_to(path).as_posix())
    finally:
        registry.loading = ""
        _remember_extension_modules(path, set(sys.modules) - before)


#: Modules imported from extension folders (their own packages, e.g. ``sd_dynamic_prompts``) by the last load.
_extension_modules: set[str] = set()


def _remember_extension_modules(root: Path, names: set[str]) -> None:
    base = str(root.resolve())
    for name in names:
        file = getattr(sys.modules.get(name), "__file__", None)
        if file and str(Path(file).resolve()).startswith(base + "/"):
            _extension_modules.add(name)


def _forget_extension_modules() -> None:
    """Drop the extension packages an earlier load imported, so this load imports them afresh from its own folders
    and what they register at import (``script_callbacks.on_ui_tabs``...) goes into the new registry."""
    for name in _extension_modules:
        sys.modules.pop(name, None)
    _extension_modules.clear()


def _import_file(info: ExtensionInfo, root: Path, file: Path) -> ModuleType | None:
    """Import ``file`` under a unique module name with ``root`` on sys.path meanwhile; None on error."""
    global _module_counter
    from app.plugins.compat import scripts as compat_scripts

    _module_counter += 1
    slug = re.sub(r"\W", "_", f"{info.name}__{file.stem}")
    module_name = f"atelier_ext_{_module_counter}_{slug}"
    rel = file.relative_to(root).as_posix()
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        info.errors.append(f"{rel}: cannot be imported")
        return None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(root))
    sys.modules[module_name] = module
    compat_scripts.push_basedir(str(root))
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # noqa: BLE001 - SyntaxError, ImportError, SystemExit... all reported
        if isinstance(exc, KeyboardInterrupt):
            raise
        sys.modules.pop(module_name, None)
        info.errors.append(f"{rel}: {_describe(exc)}")
        if info.errors[-1].startswith(f"{rel}: unsupported:"):
            log.warning("extension %s: %s", info.name, info.errors[-1])
        log.debug("extension %s: %s failed:\n%s", info.name, rel, traceback.format_exc())
        return None
    finally:
        compat_scripts.pop_basedir()
        try:
            sys.path.remove(str(root))
        except ValueError:
            pass
    info.scripts.append(rel)
    return module


def _describe(exc: BaseException) -> str:
    """A load error as users read it: A1111 module names (``modules.shared``, not Atelier's package path), and
    "unsupported: <reason>" for A1111 internals Atelier's engine does not have."""
    from app.plugins.compat import unsupported_reason

    missing = exc.name if isinstance(exc, ImportError) else None
    reason = unsupported_reason(missing)
    if reason is not None or str(exc).startswith("unsupported:"):
        text = f"unsupported: {reason}" if reason is not None else str(exc)
        return f"{text} ({type(exc).__name__}: {exc})" if reason is not None else text
    text = re.sub(r"\s*\([^()]*app[/\\]plugins[/\\]compat[^()]*\)", "", f"{type(exc).__name__}: {exc}")
    text = text.replace("app.plugins.compat.launch_utils", "launch").replace("app.plugins.compat", "modules")
    top = (missing or "").split(".")[0]
    if isinstance(exc, ImportError) and (top == "modules" or (missing or "").startswith("app.plugins.compat")):
        text += " (Atelier's A1111 compatibility layer does not provide this; see docs/EXTENSIONS.md)"
    elif isinstance(exc, ModuleNotFoundError) and top != "launch":
        text += (" (a dependency is missing: run ./webui.sh, which installs extensions' requirements, "
                 "or pip install it into Atelier's venv)")
    return text


def _run_preload(registry: PluginRegistry, info: ExtensionInfo, path: Path) -> None:
    module = _import_file(info, path, path / "preload.py")
    fn = getattr(module, "preload", None) if module is not None else None
    if fn is None:
        return
    parser = argparse.ArgumentParser(add_help=False)
    try:
        fn(parser)
        defaults = vars(parser.parse_known_args([])[0])
    except BaseException as exc:  # noqa: BLE001 - argparse exits on errors
        if isinstance(exc, KeyboardInterrupt):
            raise
        info.errors.append(f"preload.py: {_describe(exc)}")
        return
    for key, value in defaults.items():
        registry.cmd_defaults.setdefault(key, value)


def _register_native(registry: PluginRegistry, info: ExtensionInfo, module: ModuleType) -> None:
    classes = [c for c in vars(module).values()
               if isinstance(c, type) and issubclass(c, Plugin) and c is not Plugin and c.__module__ == module.__name__]
    if not classes:
        info.errors.append("atelier_plugin.py: defines no Plugin subclass")
    for cls in classes:
        where = f"atelier_plugin.py: {cls.__name__}"
        if int(getattr(cls, "api_version", API_VERSION)) > API_VERSION:
            info.errors.append(f"{where}: needs plugin API version {cls.api_version}, this Atelier has {API_VERSION}")
            continue
        try:
            plugin = cls()
            registry.add_plugin(plugin, info.name)
            plugin.setup(registry)
        except Exception as exc:  # noqa: BLE001
            info.errors.append(f"{where}: {_describe(exc)}")


def _register_scripts(registry: PluginRegistry, info: ExtensionInfo, module: ModuleType, rel: str) -> None:
    from app.plugins.compat.adapter import ScriptPlugin
    from app.plugins.compat.scripts import AlwaysVisible, Script

    # every Script subclass the module exposes, also one it re-exports from a package (as A1111 does)
    classes = list(dict.fromkeys(c for c in vars(module).values()
                                 if isinstance(c, type) and issubclass(c, Script) and c is not Script))
    for cls in classes:
        for is_img2img in (False, True):
            try:
                script = cls()
                script.filename = str(Path(info.path) / rel)
                script.is_img2img, script.is_txt2img = is_img2img, not is_img2img
                script.tabname = "img2img" if is_img2img else "txt2img"
                visible = script.show(is_img2img)
                if visible is AlwaysVisible:
                    script.alwayson = True
                    registry.add_plugin(ScriptPlugin(script, info.name, rel, is_img2img, registry), info.name)
                elif visible:
                    registry.add_script(SelectableScript(str(script.title()), info.name, is_img2img, script))
                if visible:
                    registry.a1111_scripts.append((info.name, script))
            except Exception as exc:  # noqa: BLE001
                info.errors.append(f"{rel}: {cls.__name__}: {_describe(exc)}")
                break
