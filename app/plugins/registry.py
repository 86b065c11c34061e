"""PluginRegistry: the loaded extensions, their plugins, callbacks and scripts, and the isolated hook calls.

Every call into extension code goes through ``_guard``: an exception becomes a warning naming the
extension, the plugin and the hook, and the plugin is skipped for the rest of that job (job state is
keyed by the job's ``GenerationParams`` object). Nothing an extension does can fail a job.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.plugins.api import ExtraField, ImageInfo, JobInfo, Plugin, PluginError, SaveInfo, StepInfo, UpscalerSpec

log = logging.getLogger(__name__)


@dataclass
class ExtensionInfo:
    """One folder of ``extensions/`` as the UI tab and ``/sdapi/v1/extensions`` show it."""

    name: str
    path: str
    enabled: bool = True
    remote: str | None = None
    branch: str | None = None
    commit_hash: str | None = None
    commit_date: int | None = None
    version: str = ""
    display_name: str = ""
    scripts: list[str] = field(default_factory=list)  # loaded script files, relative to the folder
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def error(self) -> str:
        return "; ".join(self.errors)

    def api_item(self) -> dict[str, Any]:
        """The A1111 ``/sdapi/v1/extensions`` item."""
        return {"name": self.name, "remote": self.remote, "branch": self.branch, "commit_hash": self.commit_hash,
                "commit_date": self.commit_date, "version": self.version, "enabled": self.enabled}


@dataclass
class SelectableScript:
    """A script listed in the Script dropdown (A1111 ``show`` returned True)."""

    title: str
    extension: str
    is_img2img: bool
    script: Any  # compat Script instance
    args: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.title.lower()


@dataclass
class Callback:
    extension: str
    name: str
    fn: Callable[..., Any]


@dataclass
class _JobState:
    failed: set[str] = field(default_factory=set)
    pending_warnings: list[str] = field(default_factory=list)


class PluginRegistry:
    """What ``load_extensions`` produced: one per Runtime (``runtime.plugins``, ``manager.plugins``); the engine
    calls it through ``app.plugins.hooks``, the UI and API read it with ``app.plugins.registry_for(runtime)``."""

    def __init__(self, runtime: Any = None, settings: Any = None) -> None:
        self.runtime = runtime
        #: The settings extensions see as ``shared.opts`` (the runtime's by default).
        self.settings = settings if settings is not None else getattr(runtime, "settings", None)
        self.extensions: list[ExtensionInfo] = []
        self.plugins: list[tuple[str, Plugin]] = []  # (extension name, plugin)
        self.callbacks: dict[str, list[Callback]] = {}
        self.scripts: list[SelectableScript] = []
        #: Every A1111 ``Script`` instance (one per tab), in load order, with its extension: the tabs' runners.
        self.a1111_scripts: list[tuple[str, Any]] = []
        #: is_img2img → ``app.plugins.compat.script_layout.ScriptLayout`` (made by the UI or on first use).
        self.script_layouts: dict[bool, Any] = {}
        self.upscalers: dict[str, tuple[str, UpscalerSpec]] = {}
        #: Defaults of the flags extensions add in preload.py (``shared.cmd_opts`` falls back to them).
        self.cmd_defaults: dict[str, Any] = {}
        #: The X/Y/Z plot's A1111 ``axis_options`` list extensions extend (``app.plugins.compat.xyz_grid``; None until
        #: the compat layer first hands it out). Entries past the built-in ones are the extensions' axes.
        self.xyz_axis_options: list[Any] | None = None
        self._jobs: dict[int, _JobState] = {}
        self._lock = threading.RLock()
        self.loading: str = ""  # extension being loaded (owner of registrations made meanwhile)

    # -- registration ---------------------------------------------------------------------------
    def add_plugin(self, plugin: Plugin, extension: str = "") -> None:
        if not isinstance(plugin, Plugin):
            raise PluginError(f"{extension}: {plugin!r} is not an app.plugins.api.Plugin")
        owner = extension or self.loading
        if not plugin.id:
            plugin.id = f"{owner}/{type(plugin).__name__}" if owner else type(plugin).__name__
        if any(p.id == plugin.id for _, p in self.plugins):
            raise PluginError(f"{owner}: a plugin with id {plugin.id!r} is already registered")
        self.plugins.append((owner, plugin))

    def register_upscaler(self, spec: UpscalerSpec) -> None:
        if spec.name in self.upscalers:
            raise PluginError(f"upscaler {spec.name!r} is already registered by {self.upscalers[spec.name][0]!r}")
        self.upscalers[spec.name] = (self.loading, spec)

    def add_callback(self, name: str, fn: Callable[..., Any], extension: str | None = None) -> None:
        """A1111 ``script_callbacks.on_<name>(fn)`` (the compat layer registers ``image_saving``/``image_saved``
        callbacks that take a ``SaveInfo``, and ``model_loaded`` ones that take the model)."""
        if not callable(fn):
            raise PluginError(f"script_callbacks.on_{name}: {fn!r} is not callable")
        self.callbacks.setdefault(name, []).append(Callback(extension or self.loading, name, fn))

    def remove_callbacks_of(self, extension: str) -> None:
        for name in list(self.callbacks):
            self.callbacks[name] = [c for c in self.callbacks[name] if c.extension != extension]

    def add_script(self, script: SelectableScript) -> None:
        self.scripts.append(script)

    def extension(self, name: str) -> ExtensionInfo | None:
        return next((e for e in self.extensions if e.name == name), None)

    def note_error(self, extension: str, message: str) -> None:
        log.error("extension %s: %s", extension, message)
        ext = self.extension(extension)
        if ext is not None:
            ext.errors.append(message)

    # -- job-scoped isolation -------------------------------------------------------------------
    def _state(self, params: Any) -> _JobState:
        key = id(params)
        with self._lock:
            state = self._jobs.get(key)
            if state is None:
                state = self._jobs[key] = _JobState()
                try:
                    weakref.finalize(params, self._jobs.pop, key, None)
                except TypeError:  # not weak-referenceable: kept until the registry goes
                    pass
            return state

    def _guard(self, owner: str, plugin_id: str, hook: str, params: Any, warn: Callable[[str], None] | None,
               fn: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
        """Call ``fn(*args)`` unless this plugin already failed in this job; (ok, result)."""
        state = self._state(params)
        if plugin_id in state.failed:
            return False, None
        try:
            return True, fn(*args)
        except Exception as exc:  # noqa: BLE001 - isolation is the point
            state.failed.add(plugin_id)
            message = (f"extension {owner or '?'}: {plugin_id} failed in {hook} ({type(exc).__name__}: {exc}); "
                       "it is skipped for the rest of this job")
            log.warning(message, exc_info=True)
            if warn is not None:
                warn(message)
            else:
                state.pending_warnings.append(message)
            return False, None

    def take_warnings(self, params: Any) -> list[str]:
        """Warnings of hooks that ran before the job had a place to report them (``run_adjust_params``)."""
        state = self._state(params)
        out, state.pending_warnings = state.pending_warnings, []
        return out

    def _active(self, kind: str) -> list[tuple[str, Plugin]]:
        return [(owner, p) for owner, p in self.plugins if kind in p.kinds]

    # -- hooks the engine calls -----------------------------------------------------------------
    def run_adjust_params(self, params: Any, kind: str = "txt2img", warn: Callable[[str], None] | None = None) -> Any:
        """Each plugin's ``adjust_params`` in load order; returns the (possibly replaced) params."""
        for owner, plugin in self._active(kind):
            ok, result = self._guard(owner, plugin.id, "adjust_params", params, warn, plugin.adjust_params, params)
            if ok and result is not None and result is not params:
                if type(result) is not type(params):
                    self._guard(owner, plugin.id, "adjust_params", params, warn, _raise,
                                TypeError(f"returned {type(result).__name__}, expected {type(params).__name__}"))
                    continue
                old_state = self._state(params)
                params = result
                self._state(params).failed |= old_state.failed
                self._state(params).pending_warnings += old_state.pending_warnings
                old_state.pending_warnings = []
        return params

    def run_job_start(self, info: JobInfo, warn: Callable[[str], None] | None = None) -> JobInfo:
        for owner, plugin in self._active(info.kind):
            self._guard(owner, plugin.id, "on_job_start", info.params, warn, plugin.on_job_start, info)
        return info

    def run_on_step(self, info: StepInfo, warn: Callable[[str], None] | None = None) -> bool:
        """Each plugin's ``on_step``; True when one asked to interrupt the job."""
        for owner, plugin in self._active(info.kind):
            self._guard(owner, plugin.id, "on_step", info.params, warn, plugin.on_step, info)
        return info.interrupt_requested

    def run_after_image(self, info: ImageInfo, warn: Callable[[str], None] | None = None) -> Any:
        """Each plugin's ``after_image`` in load order (each sees the previous one's image); the final image."""
        for owner, plugin in self._active(info.kind):
            ok, result = self._guard(owner, plugin.id, "after_image", info.params, warn, plugin.after_image, info)
            if ok and result is not None:
                if not (hasattr(result, "size") and hasattr(result, "mode")):
                    self._guard(owner, plugin.id, "after_image", info.params, warn, _raise,
                                TypeError(f"returned {type(result).__name__}, expected a PIL image or None"))
                    continue
                info.image = result
        return info.image

    def run_job_end(self, info: JobInfo, result: Any, warn: Callable[[str], None] | None = None) -> Any:
        for owner, plugin in self._active(info.kind):
            self._guard(owner, plugin.id, "on_job_end", info.params, warn, plugin.on_job_end, info, result)
        return result

    def run_image_saving(self, info: SaveInfo, warn: Callable[[str], None] | None = None) -> SaveInfo:
        """Each plugin's ``on_image_saving``, then the ``image_saving`` callbacks, in load order (each sees the
        image and infotext the previous one left in ``info``)."""
        for owner, plugin in self._active(info.kind):
            self._guard(owner, plugin.id, "on_image_saving", info.params, warn, plugin.on_image_saving, info)
        self.run_callbacks("image_saving", info)
        return info

    def run_image_saved(self, info: SaveInfo, warn: Callable[[str], None] | None = None) -> None:
        """Each plugin's ``on_image_saved``, then the ``image_saved`` callbacks."""
        for owner, plugin in self._active(info.kind):
            self._guard(owner, plugin.id, "on_image_saved", info.params, warn, plugin.on_image_saved, info)
        self.run_callbacks("image_saved", info)

    def run_model_loaded(self, model: Any) -> list[str]:
        """Each plugin's ``on_model_loaded``, then the ``model_loaded`` callbacks; failures are recorded on their
        extension and returned (the load itself stands)."""
        errors: list[str] = []
        for owner, plugin in self.plugins:
            errors += self._call_startup(owner, f"{plugin.id}.on_model_loaded", plugin.on_model_loaded, model)
        self.run_callbacks("model_loaded", model)
        return errors

    # -- start-up hooks -------------------------------------------------------------------------
    def run_app_started(self, app: Any, demo: Any = None) -> list[str]:
        """Plugins' ``register_routes(app)`` and A1111 ``on_app_started(demo, app)`` callbacks; errors
        are recorded on their extension and returned (the server still starts)."""
        errors: list[str] = []
        for owner, plugin in self.plugins:
            errors += self._call_startup(owner, f"{plugin.id}.register_routes", plugin.register_routes, app)
        for cb in list(self.callbacks.get("app_started", ())):
            errors += self._call_startup(cb.extension, "on_app_started callback", cb.fn, demo, app)
        return errors

    def run_callbacks(self, name: str, *args: Any) -> list[Any]:
        """Call every ``on_<name>`` callback (A1111 script_callbacks); failures are logged and recorded."""
        results = []
        for cb in list(self.callbacks.get(name, ())):
            try:
                results.append(cb.fn(*args))
            except Exception as exc:  # noqa: BLE001
                self.note_error(cb.extension, f"on_{name} callback failed: {type(exc).__name__}: {exc}")
        return results

    def _call_startup(self, owner: str, what: str, fn: Callable[..., Any], *args: Any) -> list[str]:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001
            message = f"{what} failed: {type(exc).__name__}: {exc}"
            self.note_error(owner, message)
            return [f"extension {owner}: {message}"]
        return []

    # -- selectable scripts and declared fields -------------------------------------------------
    def selectable_scripts(self, is_img2img: bool) -> list[SelectableScript]:
        return [s for s in self.scripts if s.is_img2img == is_img2img]

    def find_script(self, title: str, is_img2img: bool) -> SelectableScript | None:
        wanted = title.strip().lower()
        return next((s for s in self.selectable_scripts(is_img2img) if s.name == wanted), None)

    def run_script(self, title: str, p: Any, args: list[Any] | tuple[Any, ...] = ()) -> Any:
        """Run a selectable script's ``run(p, *args)`` (returns its ``Processed``). An unknown title is a
        KeyError listing the known ones; a failing script raises PluginError naming the extension."""
        is_img2img = bool(getattr(p, "is_img2img", False))
        script = self.find_script(title, is_img2img)
        if script is None:
            known = ", ".join(s.title for s in self.selectable_scripts(is_img2img)) or "(none)"
            raise KeyError(f"script {title!r} not found; available: {known}")
        try:
            return script.script.run(p, *args)
        except Exception as exc:
            raise PluginError(f"extension {script.extension}: script {script.title!r} failed: "
                              f"{type(exc).__name__}: {exc}") from exc

    def extra_fields(self, kind: str) -> list[tuple[str, ExtraField]]:
        """(plugin title, field) for the UI to render on a tab; values go to ``params.extras[field.name]``."""
        return [(p.title or p.id, f) for _, p in self._active(kind) for f in p.extra_fields]

    def plugin_titles(self, kind: str) -> list[str]:
        """Titles usable as ``alwayson_scripts`` keys for this job kind."""
        return [p.title for _, p in self._active(kind) if p.title]

    def api_scripts(self) -> list[dict[str, Any]]:
        """Plugin scripts in ``app.api.scripts.ApiScript`` field shape (always-on plugins, then selectable),
        one entry per title with the tabs it is available in."""
        merged: dict[tuple[bool, str], dict[str, Any]] = {}

        def entry(title: str, alwayson: bool, args: tuple[dict[str, Any], ...]) -> dict[str, Any]:
            return merged.setdefault((not alwayson, title), {"title": title, "is_txt2img": False, "is_img2img": False,
                                                             "alwayson": alwayson, "args": args})

        for _owner, plugin in self.plugins:
            if plugin.title:
                item = entry(plugin.title, True, tuple(f.describe() for f in plugin.extra_fields))
                item["is_txt2img"] |= "txt2img" in plugin.kinds
                item["is_img2img"] |= "img2img" in plugin.kinds
        for s in self.scripts:
            entry(s.title, False, tuple(s.args))["is_img2img" if s.is_img2img else "is_txt2img"] = True
        return [merged[k] for k in sorted(merged, key=lambda k: k[0])]

    def list_extensions(self) -> list[dict[str, Any]]:
        """Every extension folder (A1111 item shape plus ``path``, ``scripts``, ``errors``, ``notes``)."""
        return [{**e.api_item(), "path": e.path, "scripts": list(e.scripts), "errors": list(e.errors),
                 "notes": list(e.notes)} for e in self.extensions]


def _raise(exc: Exception) -> None:
    raise exc
