"""``modules.processing``: A1111's processing object ``p`` as a live view over ``GenerationParams``.

Reading or writing an A1111 attribute (``p.steps``, ``p.seed``, ``p.denoising_strength``,
``p.init_images``...) reads or writes the wrapped params, so a script's changes reach the job. During a
job the run-time lists (``all_prompts``, ``all_seeds``...) and ``extra_generation_params`` are the job's
own (``bind_job``). Any other attribute a script sets is kept on the object (scripts stash state on p).
"""

from __future__ import annotations

import json
import threading
from typing import Any

from app.params import GenerationParams, Img2ImgParams
from app.plugins.compat.current import current
from app.plugins.compat.processing_extras import (  # noqa: F401 - setup/apply: modules.processing names
    apply_color_correction,
    carry_per_image_lists,
    setup_color_correction,
)
from app.plugins.hooks import CARRIED_EXTRA

#: A1111 name → dotted path inside GenerationParams.
_FIELDS: dict[str, str] = {
    "prompt": "prompt", "negative_prompt": "negative_prompt", "styles": "styles", "sampler_name": "sampler_name",
    "scheduler": "scheduler", "steps": "steps", "cfg_scale": "cfg_scale", "width": "width", "height": "height",
    "batch_size": "batch_size", "n_iter": "n_iter", "tiling": "tiling", "eta": "eta",
    "override_settings": "override_settings", "outpath_samples": "outpath_samples",
    "seed": "seed.seed", "subseed": "seed.subseed", "subseed_strength": "seed.subseed_strength",
    "seed_resize_from_w": "seed.seed_resize_from_w", "seed_resize_from_h": "seed.seed_resize_from_h",
    "enable_hr": "hires.enabled", "hr_scale": "hires.scale", "hr_upscaler": "hires.upscaler",
    "hr_second_pass_steps": "hires.steps", "hr_resize_x": "hires.resize_x", "hr_resize_y": "hires.resize_y",
    "hr_prompt": "hires.prompt", "hr_negative_prompt": "hires.negative_prompt",
    "hr_checkpoint_name": "hires.checkpoint", "hr_sampler_name": "hires.sampler_name",
    "hr_scheduler": "hires.scheduler",
    "init_images": "img2img.init_images", "resize_mode": "img2img.resize_mode",
    "image_cfg_scale": "img2img.image_cfg_scale", "image_mask": "img2img.mask",
    "mask_blur_x": "img2img.mask_blur_x", "mask_blur_y": "img2img.mask_blur_y", "mask_round": "img2img.mask_round",
    "inpainting_fill": "img2img.inpainting_fill", "inpaint_full_res": "img2img.inpaint_full_res",
    "inpaint_full_res_padding": "img2img.inpaint_full_res_padding",
    "inpainting_mask_invert": "img2img.inpainting_mask_invert",
    "initial_noise_multiplier": "img2img.initial_noise_multiplier",
}
#: ``params.extras`` key of the attributes an X/Y/Z axis's ``apply`` set on a cell's ``p`` beyond A1111's fields
#: (``p._ad_xyz``...): the always-on scripts' ``p`` of that cell starts with them (``adapter.ScriptPlugin.p_for``).
P_ATTRIBUTES = "a1111_p_attributes"
#: Run-time attributes bound to the job (``bind_job``): A1111 name → JobInfo attribute.
_JOB_FIELDS = {"all_prompts": "all_prompts", "all_negative_prompts": "all_negative_prompts",
               "all_seeds": "seeds", "all_subseeds": "subseeds"}


class StableDiffusionProcessing:
    """A1111's ``p``. Construct with A1111 keyword names, or wrap existing params with ``from_params``."""

    def __init__(self, **kwargs: Any) -> None:
        img2img = kwargs.pop("_img2img", False)
        params = GenerationParams(img2img=Img2ImgParams() if img2img else None)
        self._bind(params)
        for key, value in kwargs.items():
            setattr(self, key, value)

    @classmethod
    def from_params(cls, params: GenerationParams) -> StableDiffusionProcessing:
        kind: type[StableDiffusionProcessing] = cls
        if cls is StableDiffusionProcessing:
            kind = StableDiffusionProcessingImg2Img if params.img2img is not None else StableDiffusionProcessingTxt2Img
        p = kind.__new__(kind)
        p._bind(params)
        return p

    def _bind(self, params: GenerationParams) -> None:
        d = self.__dict__
        d["_params"] = params
        d["_job"] = None
        d["extra_generation_params"] = {}
        d["all_hr_prompts"] = []
        d["all_hr_negative_prompts"] = []
        d["comments"] = {}
        d["scripts"] = None
        d["script_args"] = []
        d["iteration"] = 0
        d["batch_index"] = 0
        d["is_api"] = False
        d["user"] = None
        d["sd_model_name"] = None
        d["sd_model_hash"] = None
        d["sd_vae_name"] = None
        d["sd_vae_hash"] = None
        d["prompts"], d["negative_prompts"], d["seeds"], d["subseeds"] = [], [], [], []

    # -- the live view ---------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:  # only called for names not set on the object
        if name.startswith("__"):
            raise AttributeError(name)
        params = self.__dict__["_params"]
        if name in ("outpath_samples", "outpath_grids"):
            return _outpath(params, grids=name == "outpath_grids")
        if name in _FIELDS:
            return _get_path(params, _FIELDS[name])
        if name in _JOB_FIELDS:
            job = self.__dict__["_job"]
            if job is not None:
                return getattr(job, _JOB_FIELDS[name])
            return _planned_list(params, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        params = self.__dict__["_params"]
        if name in _FIELDS:
            _set_path(params, _FIELDS[name], value)
        elif name in _JOB_FIELDS and self.__dict__["_job"] is not None:
            setattr(self.__dict__["_job"], _JOB_FIELDS[name], value)
        elif name == "mask_blur":
            _set_path(params, "img2img.mask_blur_x", value)
            _set_path(params, "img2img.mask_blur_y", value)
        elif isinstance(getattr(type(self), name, None), property):
            object.__setattr__(self, name, value)  # the property's setter (or AttributeError when read-only)
        else:
            self.__dict__[name] = value

    @property
    def refiner_checkpoint(self) -> str | None:
        """A1111's ``p.refiner_checkpoint``: the refiner's name, None without one."""
        return self.__dict__["_params"].refiner_checkpoint or None

    @refiner_checkpoint.setter
    def refiner_checkpoint(self, value: str | None) -> None:
        self.__dict__["_params"].refiner_checkpoint = "" if value in (None, "", "None") else str(value)

    @property
    def refiner_switch_at(self) -> float | None:
        """A1111's ``p.refiner_switch_at``: None without a refiner."""
        params = self.__dict__["_params"]
        if not params.refiner_checkpoint or params.refiner_switch_at is None:
            return None
        return float(params.refiner_switch_at)

    @refiner_switch_at.setter
    def refiner_switch_at(self, value: float | None) -> None:
        self.__dict__["_params"].refiner_switch_at = None if value is None else float(value)

    @property
    def mask_blur(self) -> int | None:
        img = self.__dict__["_params"].img2img
        return None if img is None else img.mask_blur_x

    @property
    def denoising_strength(self) -> float:
        params = self.__dict__["_params"]
        return params.img2img.denoising_strength if params.img2img is not None else params.hires.denoising_strength

    @denoising_strength.setter
    def denoising_strength(self, value: float) -> None:
        params = self.__dict__["_params"]
        if params.img2img is not None:
            params.img2img.denoising_strength = float(value)
        else:
            params.hires.denoising_strength = float(value)

    @property
    def do_not_save_samples(self) -> bool:
        return not self.__dict__["_params"].save_images

    @do_not_save_samples.setter
    def do_not_save_samples(self, value: bool) -> None:
        self.__dict__["_params"].save_images = not value

    @property
    def do_not_save_grid(self) -> bool:
        return not self.__dict__["_params"].save_grid

    @do_not_save_grid.setter
    def do_not_save_grid(self, value: bool) -> None:
        self.__dict__["_params"].save_grid = not value

    @property
    def disable_extra_networks(self) -> bool:
        return bool(self.__dict__["_params"].extras.get("disable_extra_networks", False))

    @disable_extra_networks.setter
    def disable_extra_networks(self, value: bool) -> None:
        self.__dict__["_params"].extras["disable_extra_networks"] = bool(value)

    @property
    def is_img2img(self) -> bool:
        return self.__dict__["_params"].img2img is not None

    @property
    def main_prompt(self) -> str:
        return self.all_prompts[0] if self.all_prompts else self.prompt

    @property
    def main_negative_prompt(self) -> str:
        return self.all_negative_prompts[0] if self.all_negative_prompts else self.negative_prompt

    @property
    def sd_model(self) -> Any:
        from app.plugins.compat import shared

        return shared.sd_model

    @sd_model.setter
    def sd_model(self, value: Any) -> None:
        """Ignored, as in A1111 (``p.sd_model`` is always the loaded model): ADetailer passes ``sd_model=p.sd_model``
        to the ``StableDiffusionProcessingImg2Img`` it builds."""

    # -- helpers ---------------------------------------------------------------------------------
    def bind_job(self, job: Any) -> None:
        """Attach the running job (``app.plugins.api.JobInfo``): its lists and infotext dict become p's."""
        d = self.__dict__
        if job is None:
            d["_job"] = None
            return
        job.extra_generation_params.update(d["extra_generation_params"])  # set in before_process
        d["extra_generation_params"] = job.extra_generation_params
        d["_job"] = job

    def to_params(self) -> GenerationParams:
        """The wrapped params (the same object: changes through p are already in it)."""
        return self.__dict__["_params"]

    def comment(self, text: str) -> None:
        self.__dict__["comments"][text] = 1

    def close(self) -> None:
        pass

    def js(self) -> str:
        return json.dumps(self.to_params().to_dict(), default=str)


class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    pass


class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(_img2img=True, **kwargs)


def _get_path(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if obj is None:
            return None
        obj = getattr(obj, part)
    return obj


def _set_path(params: GenerationParams, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    target: Any = params
    for part in parents:
        child = getattr(target, part)
        if child is None and part == "img2img":
            raise AttributeError(f"p.{last} is an img2img attribute; this is a txt2img job")
        target = child
    setattr(target, last, value)


def _outpath(params: GenerationParams, grids: bool) -> str:
    """``p.outpath_samples`` / ``p.outpath_grids``: the job's folder, else the ``outdir_*`` settings (A1111's
    UI fills them the same way), relative ones under the data dir."""
    from app.plugins.compat.images import resolve_output_dir

    kind = "img2img" if params.img2img is not None else "txt2img"
    what = "grids" if grids else "samples"
    settings = current().settings
    value = "" if grids else params.outpath_samples
    if not value and settings is not None:
        value = settings.get(f"outdir_{what}", "") or settings.get(f"outdir_{kind}_{what}", "")
    return resolve_output_dir(value or f"outputs/{kind}-{'grids' if grids else 'images'}")


def create_binary_mask(image: Any, round: bool = True) -> Any:  # noqa: A002 - A1111's name
    """An "L" mask from a brush image (its alpha, thresholded when ``round``) or a grey image."""
    from app.plugins.compat.masking import create_binary_mask as make

    return make(image, round)


def _planned_list(params: GenerationParams, name: str) -> list[Any]:
    """Before the job is planned: the values A1111 would compute (seeds only when fixed)."""
    n = params.n_images
    if name == "all_prompts":
        return [params.prompt] * n
    if name == "all_negative_prompts":
        return [params.negative_prompt] * n
    seed = params.seed.seed if name == "all_seeds" else params.seed.subseed
    return [seed + i if seed >= 0 and (name == "all_subseeds" or params.seed.subseed_strength == 0) else seed
            for i in range(n)]


class Processed:
    """A1111's result object (what a selectable script's ``run`` returns)."""

    def __init__(self, p: Any, images_list: list[Any], seed: int = -1, info: str = "", subseed: int | None = None,
                 all_prompts: list[str] | None = None, all_negative_prompts: list[str] | None = None,
                 all_seeds: list[int] | None = None, all_subseeds: list[int] | None = None,
                 index_of_first_image: int = 0, infotexts: list[str] | None = None, comments: str = "",
                 extra_images_list: list[Any] | None = None) -> None:
        self.images = images_list
        self.extra_images = extra_images_list or []
        self.prompt = getattr(p, "prompt", "")
        self.negative_prompt = getattr(p, "negative_prompt", "")
        self.seed = seed
        self.subseed = subseed
        self.info = info
        self.comments = comments
        self.width = getattr(p, "width", 0)
        self.height = getattr(p, "height", 0)
        self.sampler_name = getattr(p, "sampler_name", "")
        self.cfg_scale = getattr(p, "cfg_scale", 0.0)
        self.steps = getattr(p, "steps", 0)
        self.batch_size = getattr(p, "batch_size", 1)
        self.all_prompts = all_prompts or [self.prompt]
        self.all_negative_prompts = all_negative_prompts or [self.negative_prompt]
        self.all_seeds = all_seeds or [seed]
        self.all_subseeds = all_subseeds or [subseed if subseed is not None else -1]
        self.index_of_first_image = index_of_first_image
        self.infotexts = infotexts or [info] * len(images_list)
        self.extra_generation_params = dict(getattr(p, "extra_generation_params", {}) or {})
        self.job_info: dict[str, Any] = {}

    @classmethod
    def from_result(cls, p: Any, result: Any) -> Processed:
        """From an ``app.jobs.job.JobResult``."""
        info = dict(result.info or {})
        first = info.get("index_of_first_image", 0)
        processed = cls(p, list(result.images), seed=(result.seeds or [-1])[0],
                        info=result.infotexts[first] if len(result.infotexts) > first else "",
                        subseed=(result.subseeds or [-1])[0], all_prompts=list(result.all_prompts),
                        all_negative_prompts=list(result.all_negative_prompts), all_seeds=list(result.seeds),
                        all_subseeds=list(result.subseeds), index_of_first_image=first,
                        infotexts=list(result.infotexts))
        processed.job_info = info
        return processed

    def infotext(self, p: Any, index: int) -> str:
        """The infotext of image ``index`` of this result (A1111 ``Processed.infotext``)."""
        size = max(1, int(self.batch_size or 1))
        return create_infotext(p, self.all_prompts, self.all_seeds, self.all_subseeds, comments=[],
                               iteration=index // size, position_in_batch=index % size)

    def js(self) -> str:
        data = {"prompt": self.prompt, "all_prompts": self.all_prompts, "negative_prompt": self.negative_prompt,
                "seed": self.seed, "all_seeds": self.all_seeds, "subseed": self.subseed,
                "all_subseeds": self.all_subseeds, "width": self.width, "height": self.height,
                "sampler_name": self.sampler_name, "cfg_scale": self.cfg_scale, "steps": self.steps,
                "batch_size": self.batch_size, "extra_generation_params": self.extra_generation_params,
                "index_of_first_image": self.index_of_first_image, "infotexts": self.infotexts}
        return json.dumps({**self.job_info, **data}, default=str)


# -- running a job from a script ------------------------------------------------------------------
_local = threading.local()


class _ScriptJobContext:
    """The job context a nested ``process_images`` runs in: the running job's context with other params."""

    def __init__(self, ctx: Any, params: GenerationParams) -> None:
        self._ctx = ctx
        self.params = params

    def begin(self, *args: Any, **kwargs: Any) -> None:
        if not getattr(self._ctx, "_plugin_begun", False):
            self._ctx.begin(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)


def set_job_context(ctx: Any) -> Any:
    """Set (or clear with None) the job context of this thread; returns the previous one."""
    previous = getattr(_local, "ctx", None)
    _local.ctx = ctx
    return previous


def process_images(p: StableDiffusionProcessing) -> Processed:
    """Generate what ``p`` describes. Inside a script job it runs on the same worker (no new queue entry);
    elsewhere it is submitted to the runtime's job service and waited for."""
    params = p.to_params().copy()
    params.script = None  # the script is what is running: never recurse into it
    if p.extra_generation_params:  # what the script noted goes into the infotext (hooks.job_started)
        params.extras[CARRIED_EXTRA] = {**params.extras.get(CARRIED_EXTRA, {}), **p.extra_generation_params}
    carry_per_image_lists(params)
    kind = "img2img" if params.img2img is not None else "txt2img"
    ctx = getattr(_local, "ctx", None)
    if ctx is not None:
        result = ctx.service.runner_for(kind)(_ScriptJobContext(ctx, params))
    else:
        service = getattr(current().runtime, "service", None)
        if service is None:
            raise RuntimeError("process_images: no job service is running (start Atelier with a runtime)")
        result = service.submit(params, kind=kind).wait()
    return Processed.from_result(p, result)


def fix_seed(p: StableDiffusionProcessing) -> None:
    """Replace -1 seeds with random ones (A1111 ``fix_seed``)."""
    import random

    if p.seed is None or p.seed == -1:
        p.seed = int(random.randrange(4294967294))
    if p.subseed is None or p.subseed == -1:
        p.subseed = int(random.randrange(4294967294))


def create_infotext(p: StableDiffusionProcessing, all_prompts: list[str] | None = None,
                    all_seeds: list[int] | None = None, all_subseeds: list[int] | None = None,
                    comments: Any = None, iteration: int = 0, position_in_batch: int = 0, *args: Any,
                    **kwargs: Any) -> str:
    """The infotext of image ``iteration * batch_size + position_in_batch`` of ``p`` (``app.infotext.format``)."""
    from app.infotext.format import create_infotext as make

    params = p.to_params()
    index = iteration * params.batch_size + position_in_batch
    prompts = all_prompts or p.all_prompts
    seeds = all_seeds or p.all_seeds
    subseeds = all_subseeds or p.all_subseeds

    def pick(values: list[Any], default: Any) -> Any:
        return values[index] if values and index < len(values) else default

    return make(params, prompt=pick(prompts, params.prompt), negative_prompt=pick(p.all_negative_prompts,
                params.negative_prompt), seed=pick(seeds, params.seed.seed), subseed=pick(subseeds, params.seed.subseed),
                extra=dict(p.extra_generation_params), index=index)

