"""Extensions: the plugin contract (``api``), the loader (``loader``), the registry (``registry``), the
one-line hook calls (``hooks``, native only) and the A1111 compatibility package (``compat``, seen as
``modules``; it adapts A1111's API onto the native hooks and is never imported by them).

Wiring (call sites in files owned by others; each is one line, all are no-ops while no extension is loaded;
``tests/plugins/test_plugins_job.py`` fails when one is missing)
------------------------------------------------------------------------------------------------------
1. Start-up — ``app/runtime.py``, ``Runtime.start()``, right after ``self.paths.ensure_dirs()``::

       from app.plugins import load_extensions; load_extensions(self, registry=self.plugins)

   (``self.plugins`` is the ``PluginRegistry`` the Runtime created in ``__init__`` and hands to its model
   manager as ``manager.plugins``; this also registers the plugin routes / A1111 ``on_app_started`` callbacks through
   ``self.on_app_started``, so ``build_app`` needs no change, and runs the extensions' ``on_ui_settings``).

2. Engine, ``app/engine/prepare.py``, ``prepare()`` — first line of step 1 (before validation)::

       from app.plugins import hooks; params = hooks.adjust_params(params, kind, hooks.registry_of(manager))

   and just before ``return plan`` (prompts and seeds are set; may rewrite ``plan.all_prompts``)::

       hooks.job_started(plan)

3. Engine, ``app/engine/sampling/setup.py``, ``run_sampler()`` — in ``callback`` after the progress block::

       hooks.on_step(plan, step, total, latents)

   (it interrupts the job through ``ctx.service.interrupt(job.id)`` when a plugin asks to stop).

4. Engine, ``app/engine/outputs.py``, ``JobOutputs.add_batch()`` — first line in the per-image loop, after
   ``index = ...`` and before ``text = infotext(...)``::

       image = hooks.after_image(plan, index, image)

   and in ``JobOutputs.finish()`` (A1111 ``postprocess``; plugins may edit the result in place)::

       result = JobResult(...); return hooks.job_finished(self.plan, result)

5. Engine runners ``app/engine/modes/runners.py`` ``run_txt2img_job(ctx)`` and
   ``run_img2img_job(ctx)`` — first line (selectable scripts of extensions; None = not a plugin script)::

       from app.plugins.compat.adapter import run_script_job
       if (result := run_script_job(ctx)) is not None: return result

6. UI, ``app/ui/extensions_tab.py`` ``list_extensions(ctx)``::

       from app.plugins import list_extensions; items = list_extensions(ctx.runtime)

   (dicts: name, remote, branch, commit_hash, commit_date, version, enabled, path, scripts, errors, notes).

7. API, ``app/api/routes_info.py`` ``extensions(runtime)``: ``return app.plugins.list_extensions(runtime)``
   (the A1111 keys are all there). ``app/api/scripts.py`` already calls ``app.plugins.api_scripts(runtime)``
   for ``/scripts``, ``/script-info``, ``script_name`` and ``alwayson_scripts`` validation.

8. Engine, ``app/engine/outputs.py`` ``JobOutputs._save``: the saver calls ``image, text, path =
   hooks.before_write(plan, image, text, path)`` once the file's path is decided, before writing, and, when the
   file was written, ``hooks.image_saved(plan, image, path, text)`` (plugins' ``on_image_saving`` /
   ``on_image_saved``; A1111 ``on_before_image_saved`` / ``on_image_saved``, which see ``params.filename``).

9. Models, ``app/models/manager.py`` ``ModelManager._load``: ``hooks.model_loaded(handle, self.plugins)`` once a checkpoint is
   loaded (plugins' ``on_model_loaded``; A1111 ``on_model_loaded``).

Plugin upscalers (``UpscalerSpec``, ``registry.upscalers``) are listed for ``modules.shared.sd_upscalers``; the
engine's upscaler lists do not consult them yet.

Each Runtime owns its registry (``runtime.plugins``, ``manager.plugins``): the job hooks take it from the job's
plan (``plan.manager``), so two Runtimes in one process never run each other's plugins. Only the A1111
compatibility layer has a process-global view (``app.plugins.compat.current``: the registry extensions were last
loaded into), because A1111 extensions import ``modules.shared`` at module level.
"""

from __future__ import annotations

from typing import Any

from app.plugins.api import API_VERSION, ExtraField, ImageInfo, JobInfo, Plugin, StepInfo
from app.plugins.loader import load_extensions
from app.plugins.registry import ExtensionInfo, PluginRegistry

__all__ = ["API_VERSION", "ExtensionInfo", "ExtraField", "ImageInfo", "JobInfo", "Plugin", "PluginRegistry",
           "StepInfo", "api_scripts", "list_extensions", "load_extensions", "registry_for"]


def registry_for(runtime: Any = None) -> PluginRegistry:
    """The runtime's registry (``runtime.plugins``); an empty one for a runtime without one."""
    registry = getattr(runtime, "plugins", None)
    return registry if isinstance(registry, PluginRegistry) else PluginRegistry(runtime)


def list_extensions(runtime: Any = None) -> list[dict[str, Any]]:
    """Every folder of ``extensions/`` (loaded, disabled or broken) for the UI tab and ``/sdapi/v1/extensions``.

    When extensions were never loaded (e.g. before ``Runtime.start()``), the folders are listed with
    their metadata and enabled state without importing anything."""
    registry = registry_for(runtime)
    if registry.extensions or runtime is None:
        return registry.list_extensions()
    from app.plugins.loader import disabled_reason, discover, git_info

    out = []
    for path in discover(runtime.paths.extensions_dir):
        info = ExtensionInfo(name=path.name, path=str(path), **git_info(path))
        info.version = (info.commit_hash or "")[:8]
        info.enabled = disabled_reason(path.name, getattr(runtime, "settings", None), getattr(runtime, "args", None)) is None
        out.append(info)
    tmp = PluginRegistry(runtime)
    tmp.extensions = out
    return tmp.list_extensions()


def api_scripts(runtime: Any = None) -> list[dict[str, Any]]:
    """Plugin scripts for ``app.api.scripts`` (``ApiScript`` field dicts)."""
    return registry_for(runtime).api_scripts()
