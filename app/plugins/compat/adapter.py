"""An always-visible A1111 ``Script`` as an Atelier ``Plugin``, and an extension's selectable script as a job
(``run_script_job``, called by the txt2img/img2img runners).

Hook mapping (one ``p`` object per job, shared by all hooks of that job):
- ``adjust_params`` → ``setup(p, *args)``, ``before_process(p, *args)``;
- ``on_job_start``  → ``process(p, *args)``, then per batch ``before_process_batch`` and
  ``process_batch(p, *args, batch_number=, prompts=, seeds=, subseeds=)`` (all before sampling starts);
- ``after_image``   → ``postprocess_image(p, PostprocessImageArgs(image), *args)``;
- ``on_job_end``    → ``postprocess(p, Processed, *args)``.
``*args`` come from ``params.extras["alwayson_scripts"][<title>]`` (a list, or ``{"args": [...]}``). A
hook whose required arguments are not supplied is skipped (the script is not enabled for the job),
as A1111 extensions expect their UI values.
"""

from __future__ import annotations

import inspect
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from app.jobs.job import JobResult
from app.params import RUNNABLE_SCRIPTS
from app.plugins import hooks
from app.plugins.api import ImageInfo, JobInfo, Plugin
from app.plugins.compat.current import current
from app.plugins.compat.processing import P_ATTRIBUTES, Processed, StableDiffusionProcessing, set_job_context
from app.plugins.compat.script_layout import layout_for
from app.plugins.compat.scripts import PostprocessImageArgs

log = logging.getLogger(__name__)


class ScriptPlugin(Plugin):
    """Wraps one Script instance (for one tab)."""

    def __init__(self, script: Any, extension: str, filename: str, is_img2img: bool, registry: Any = None) -> None:
        self.script = script
        self.registry = registry  # whose tab layout gives this script's args (None: the current registry)
        self.is_img2img = is_img2img
        self.id = f"{extension}/{filename}:{type(script).__name__}:{'img2img' if is_img2img else 'txt2img'}"
        self.title = str(script.title())
        self.kinds = ("img2img",) if is_img2img else ("txt2img",)
        self.extra_fields = ()
        self._ps: dict[int, StableDiffusionProcessing] = {}
        self._lock = threading.Lock()

    # -- the job's p -----------------------------------------------------------------------------
    def p_for(self, params: Any) -> StableDiffusionProcessing:
        key = id(params)
        with self._lock:
            p = self._ps.get(key)
            if p is None:
                p = self._ps[key] = StableDiffusionProcessing.from_params(params)
                p.script_args = layout_for(self.registry or current(), self.is_img2img).script_args(params)
                carried = params.extras.get(P_ATTRIBUTES)  # set by an X/Y/Z axis of an extension (compat xyz_grid)
                if isinstance(carried, dict):
                    for name, value in carried.items():
                        p.__dict__.setdefault(name, value)
                weakref.finalize(params, self._ps.pop, key, None)
            return p

    def args(self, params: Any) -> list[Any]:
        """This script's values for the job: its ``ui()`` defaults with ``alwayson_scripts[<title>]`` over them."""
        return layout_for(self.registry or current(), self.is_img2img).args_for(self.script, params)

    def _call(self, name: str, params: Any, *lead: Any, **kwargs: Any) -> bool:
        """``script.<name>(*lead, *args, **kwargs)``; False (not called) when the args do not fit."""
        fn: Callable[..., Any] = getattr(self.script, name)
        args = [*lead, *self.args(params)]
        try:
            inspect.signature(fn).bind(*args, **kwargs)
        except TypeError:
            log.debug("%s.%s skipped: the request does not supply its arguments", self.id, name)
            return False
        except ValueError:  # no signature (builtins): just call it
            pass
        fn(*args, **kwargs)
        return True

    # -- hooks -----------------------------------------------------------------------------------
    def adjust_params(self, params: Any) -> None:
        p = self.p_for(params)
        self._call("setup", params, p)
        self._call("before_process", params, p)

    def on_job_start(self, info: JobInfo) -> None:
        p = self.p_for(info.params)
        p.bind_job(info)
        self._call("process", info.params, p)
        size = max(1, int(info.params.batch_size))
        for n in range(max(1, int(info.params.n_iter))):
            sl = slice(n * size, (n + 1) * size)
            batch = {"batch_number": n, "prompts": info.all_prompts[sl], "seeds": info.seeds[sl],
                     "subseeds": info.subseeds[sl]}
            p.prompts, p.seeds, p.subseeds = batch["prompts"], batch["seeds"], batch["subseeds"]
            p.negative_prompts = info.all_negative_prompts[sl]
            p.iteration = n
            self._call("before_process_batch", info.params, p, **batch)
            self._call("process_batch", info.params, p, **batch)

    def after_image(self, info: ImageInfo) -> Any:
        p = self.p_for(info.params)
        if p.__dict__["_job"] is None:
            p.extra_generation_params = info.extra_generation_params
        pp = PostprocessImageArgs(info.image)
        if not self._call("postprocess_image", info.params, p, pp):
            return None
        return pp.image if pp.image is not info.image else None

    def on_job_end(self, info: JobInfo, result: Any) -> None:
        p = self.p_for(info.params)
        processed = Processed.from_result(p, result)
        before = (list(processed.images), list(processed.infotexts))
        if self._call("postprocess", info.params, p, processed) and (processed.images, processed.infotexts) != before:
            result.images, result.infotexts = list(processed.images), list(processed.infotexts)


def run_script_job(ctx: Any) -> JobResult | None:
    """For the txt2img/img2img runners: when ``ctx.params.script`` names an extension's selectable script, run
    its ``run(p, *args)`` in this job (``process_images`` inside it runs on the same worker) and return the
    ``JobResult``; None when the script is not an extension's (the runner goes on as usual)."""
    params = ctx.params
    script = getattr(params, "script", None)
    if script is None or not script.name:
        return None
    # the job's runtime's registry (its manager's); a job without one: the registry extensions were loaded into
    registry = hooks.registry_of(getattr(ctx, "manager", None)) or current()
    is_img2img = getattr(params, "img2img", None) is not None
    selected = registry.find_script(script.name, is_img2img)
    if selected is None:
        return None
    if ("img2img" if is_img2img else "txt2img") in RUNNABLE_SCRIPTS.get(selected.title, ()):
        return None  # a built-in script of the same title is the one that runs (script_layout.tab_scripts)
    layout = layout_for(registry, is_img2img)
    args = layout.args_for(selected.script, params)
    p = StableDiffusionProcessing.from_params(params.copy())
    p.script_args = layout.script_args(params)
    previous = set_job_context(ctx)
    try:
        processed = registry.run_script(selected.title, p, args)
    finally:
        set_job_context(previous)
    if processed is None:
        return JobResult(warnings=[f"script {selected.title!r} returned no result"])
    if not isinstance(processed, Processed):
        raise TypeError(f"script {selected.title!r} returned {type(processed).__name__}, expected Processed")
    info = dict(processed.job_info)
    info.setdefault("infotexts", list(processed.infotexts))
    info.setdefault("index_of_first_image", processed.index_of_first_image)
    return JobResult(images=list(processed.images), infotexts=list(processed.infotexts),
                     seeds=list(processed.all_seeds), subseeds=list(processed.all_subseeds),
                     all_prompts=list(processed.all_prompts), all_negative_prompts=list(processed.all_negative_prompts),
                     info=info, interrupted=bool(getattr(ctx, "interrupted", False)))
