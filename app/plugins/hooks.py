"""One-line call sites for the engine and the model manager: module functions over a *runtime's* registry.

Each Runtime owns one ``PluginRegistry`` (``runtime.plugins``, loaded by ``load_extensions(runtime)``) and
hands it to its model manager (``manager.plugins``). The job hooks take it from the job's plan
(``plan.manager``, through ``registry_of``); ``adjust_params`` and ``model_loaded`` take it as an argument.
There is no process-wide registry here: a manager without one (tests' stand-ins) or an empty registry makes
every function a cheap no-op, so the engine can call them unconditionally. The engine passes its ``Plan``
(duck-typed: ``manager``, ``params``, ``kind``, ``all_prompts``, ``all_negative_prompts``, ``seeds``,
``subseeds``, ``extra``, ``warn``, ``ctx``); this module never imports the engine, and never the A1111
compatibility layer (``compat/`` adapts onto these hooks: its ``script_callbacks`` register callbacks into the
registry being loaded, ``app.plugins.compat.current``; its selectable-script runner is
``app.plugins.compat.adapter.run_script_job``). Pure module: no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.plugins.api import ImageInfo, JobInfo, SaveInfo, StepInfo
from app.plugins.registry import PluginRegistry


def registry_of(manager: Any) -> PluginRegistry | None:
    """The plugin registry of a model manager (``manager.plugins``, the Runtime's ``runtime.plugins``), or None
    for a manager without one (tests' stand-ins): then every hook is a no-op."""
    registry = getattr(manager, "plugins", None)
    return registry if isinstance(registry, PluginRegistry) else None


def _of(plan: Any) -> PluginRegistry | None:
    return registry_of(getattr(plan, "manager", None))


def _kind(params: Any, kind: str | None) -> str:
    if kind:
        return kind
    return "img2img" if getattr(params, "img2img", None) is not None else "txt2img"


def _has_job_hooks(reg: PluginRegistry | None) -> bool:
    return reg is not None and bool(reg.plugins)


def adjust_params(params: Any, kind: str | None, registry: PluginRegistry | None) -> Any:
    """Before a job is planned: ``params = hooks.adjust_params(params, kind, registry_of(manager))``. Failures
    are kept and reported by ``job_started`` in the job's warnings."""
    reg = registry
    if not _has_job_hooks(reg):
        return params
    return reg.run_adjust_params(params, _kind(params, kind))


def xyz_axis_options(registry: PluginRegistry | None) -> list[Any]:
    """The X/Y/Z plot axes extensions added (A1111 ``xyz_grid.axis_options`` entries after the built-in ones), in
    list order; each has ``label``, ``type``, ``cost``, ``is_img2img`` and the compat layer's ``apply_to_params``,
    ``label_for``, ``choice_list`` and ``convert`` (``app.plugins.compat.xyz_grid.AxisOption``)."""
    options = getattr(registry, "xyz_axis_options", None) or []
    return [o for o in options if not getattr(o, "builtin", False) and hasattr(o, "apply_to_params")]


#: ``params.extras`` key of infotext entries carried into a job (``job_started``).
CARRIED_EXTRA = "extra_generation_params"
#: ``params.extras`` key of per-image lists carried into a job: ``all_prompts``, ``all_negative_prompts``,
#: ``seeds`` (a script's ``p.prompt = [...]`` before ``process_images(p)``; repeated to the job's image count).
CARRIED_LISTS = "per_image_lists"


def job_started(plan: Any) -> None:
    """Once prompts and seeds are set (end of ``prepare``, before the first batch): plugins may rewrite
    ``plan.all_prompts`` / ``plan.all_negative_prompts`` and add ``plan.extra`` infotext entries. Entries a caller
    put in ``params.extras["extra_generation_params"]`` (a script's ``p.extra_generation_params`` before its
    ``process_images(p)``) are added first, and per-image lists carried in ``params.extras["per_image_lists"]``
    replace the planned prompts and seeds."""
    extras = getattr(plan.params, "extras", {})
    carried = extras.get(CARRIED_EXTRA)
    if isinstance(carried, dict):
        plan.extra.update(carried)
    lists = extras.get(CARRIED_LISTS)
    if isinstance(lists, dict):
        n = len(plan.all_prompts)
        for name in ("all_prompts", "all_negative_prompts", "seeds"):
            items = lists.get(name)
            if items:
                setattr(plan, name, [items[i % len(items)] for i in range(n)])
    reg = _of(plan)
    if not _has_job_hooks(reg):
        return
    params = plan.params
    for message in reg.take_warnings(params):
        plan.warn(message)
    info = JobInfo(params=params, kind=_kind(params, getattr(plan, "kind", None)),
                   all_prompts=list(plan.all_prompts), all_negative_prompts=list(plan.all_negative_prompts),
                   seeds=list(plan.seeds), subseeds=list(plan.subseeds), extra_generation_params=plan.extra)
    reg.run_job_start(info, warn=plan.warn)
    for name in ("all_prompts", "all_negative_prompts"):
        new = getattr(info, name)
        old = getattr(plan, name)
        if not isinstance(new, list) or len(new) != len(old) or not all(isinstance(x, str) for x in new):
            plan.warn(f"a plugin set {name} to something other than {len(old)} strings; ignored")
            continue
        setattr(plan, name, list(new))
    if info.extra_generation_params is not plan.extra and isinstance(info.extra_generation_params, dict):
        plan.extra.update(info.extra_generation_params)


def on_step(plan: Any, step: int, total: int, latents: Any = None) -> bool:
    """After each denoising step; returns True (and interrupts the job) when a plugin asked to stop."""
    reg = _of(plan)
    if not _has_job_hooks(reg):
        return False
    params = plan.params
    info = StepInfo(params=params, kind=_kind(params, getattr(plan, "kind", None)), step=step, total_steps=total,
                    latents=latents)
    if not reg.run_on_step(info, warn=plan.warn):
        return False
    ctx = getattr(plan, "ctx", None)
    job = getattr(ctx, "job", None)
    service = getattr(ctx, "service", None)
    if service is not None and job is not None:
        service.interrupt(job.id)
    plan.warn("a plugin interrupted the job")
    return True


def after_image(plan: Any, index: int, image: Any) -> Any:
    """Per image, before its infotext is built and it is saved: ``image = hooks.after_image(plan, index, image)``."""
    reg = _of(plan)
    if not _has_job_hooks(reg):
        return image
    params = plan.params

    def pick(values: list[Any], default: Any) -> Any:
        return values[index] if 0 <= index < len(values) else default

    info = ImageInfo(params=params, kind=_kind(params, getattr(plan, "kind", None)), index=index, image=image,
                     seed=pick(plan.seeds, -1), prompt=pick(plan.all_prompts, ""),
                     negative_prompt=pick(plan.all_negative_prompts, ""), extra_generation_params=plan.extra)
    return reg.run_after_image(info, warn=plan.warn)


def job_finished(plan: Any, result: Any) -> Any:
    """When the job's result is built: ``return hooks.job_finished(plan, result)`` (A1111 ``postprocess``)."""
    reg = _of(plan)
    if not _has_job_hooks(reg):
        return result
    params = plan.params
    info = JobInfo(params=params, kind=_kind(params, getattr(plan, "kind", None)),
                   all_prompts=list(plan.all_prompts), all_negative_prompts=list(plan.all_negative_prompts),
                   seeds=list(plan.seeds), subseeds=list(plan.subseeds), extra_generation_params=plan.extra)
    warnings = getattr(result, "warnings", None)
    reg.run_job_end(info, result, warn=warnings.append if isinstance(warnings, list) else plan.warn)
    return result


def image_saving(plan: Any, image: Any, infotext: str) -> tuple[Any, str]:
    """``image, text = hooks.image_saving(plan, image, text)``: ``before_write`` without a known file."""
    image, infotext, _ = before_write(plan, image, infotext, None)
    return image, infotext


def before_write(plan: Any, image: Any, infotext: str, path: Path | None) -> tuple[Any, str, Path | None]:
    """Before an image is written to ``path`` (the saver calls it once the file name is decided, as A1111 does
    before ``before_image_saved``): ``image, text, path = hooks.before_write(plan, image, text, path)``. Plugins'
    ``on_image_saving`` (and A1111 ``on_before_image_saved`` callbacks, through the compat layer) may replace
    the image, the infotext stored in the file, or the path."""
    reg = _of(plan)
    if reg is None or not (reg.plugins or reg.callbacks.get("image_saving")):
        return image, infotext, path
    params = plan.params
    info = SaveInfo(params=params, kind=_kind(params, getattr(plan, "kind", None)), image=image, infotext=infotext,
                    path=path)
    reg.run_image_saving(info, warn=plan.warn)
    return info.image, str(info.infotext), info.path


def image_saved(plan: Any, image: Any, path: Any, infotext: str) -> None:
    """After an image was written to ``path``: ``hooks.image_saved(plan, image, path, text)`` (plugins'
    ``on_image_saved``, A1111 ``on_image_saved`` callbacks)."""
    reg = _of(plan)
    if reg is None or not (reg.plugins or reg.callbacks.get("image_saved")):
        return
    params = plan.params
    reg.run_image_saved(SaveInfo(params=params, kind=_kind(params, getattr(plan, "kind", None)), image=image,
                                 infotext=infotext, path=Path(path)), warn=plan.warn)


def model_loaded(model: Any, registry: PluginRegistry | None) -> None:
    """When the model manager has loaded a checkpoint: ``hooks.model_loaded(handle, self.plugins)`` (plugins'
    ``on_model_loaded``, A1111 ``on_model_loaded`` callbacks). A failing plugin is recorded on its extension."""
    reg = registry
    if reg is not None and (reg.plugins or reg.callbacks.get("model_loaded")):
        reg.run_model_loaded(model)
