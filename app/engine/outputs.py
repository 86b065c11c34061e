"""Job outputs: the infotext of every image, the grid and the ``JobResult`` of a job.

Files are not written here: every image goes, as soon as it is made, to the job's
:class:`app.outputs.job.JobSaver`, supplied by the job context (``ctx.saver(...)``, see ``job_saver``). The saver
writes samples, extra copies, the grid and params.txt where the settings say; a write failure becomes a job warning
and an entry of the API ``info["save_errors"]``, and the image is still returned. The plugin hooks around a save
(``image_saving``/``image_saved``) run here, with the plan.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from app.engine.plan import Plan
from app.engine.sampling.schedulers import effective_schedule
from app.infotext.format import DEFAULT_VERSION, create_infotext
from app.jobs.info import info_json
from app.jobs.job import JobResult
from app.outputs.filenames import NamingContext
from app.outputs.job import JobSaver
from app.outputs.save import make_grid
from app.plugins import hooks

log = logging.getLogger(__name__)


def job_saver(plan: Any) -> JobSaver:
    """The saver of the plan's job, from its job context (``ctx.saver(kind, params, settings, paths, warn)``).

    A plan run without a job context (direct engine calls: tests, benchmarks) saves as a job would, with the
    plain ``JobSaver`` over the plan's effective settings."""
    make = getattr(plan.ctx, "saver", None) if plan.ctx is not None else None
    if make is None:
        return JobSaver(plan.kind, plan.params, plan.settings, plan.paths, plan.warn)
    return make(plan.kind, plan.params, plan.settings, plan.paths, plan.warn)


class JobOutputs:
    """Collects a job's images batch by batch and hands each to the saver; ``finish()`` builds the result."""

    def __init__(self, plan: Any, saver: JobSaver | None = None):
        self.plan = plan
        self.saver = saver if saver is not None else job_saver(plan)
        self.images: list[Any] = []
        self.infotexts: list[str] = []
        self.index_of_first_image = 0

    # -- per batch -----------------------------------------------------------------------------
    def add_batch(self, batch: Any, images: list[Any], extra: dict[str, Any] | None = None) -> None:
        plan = self.plan
        for j, image in enumerate(images):
            index = batch.index * plan.params.batch_size + j
            image = hooks.after_image(plan, index, image)  # extensions' postprocess_image()
            text = infotext(plan, index, extra=extra)
            image.info["parameters"] = text
            self.images.append(image)
            self.infotexts.append(text)
            self.saver.write_params_txt(text)
            if self.saver.wants_samples():
                self._save(image, text, index, grid=False)

    def save_intermediate(self, batch: Any, images: list[Any], suffix: str) -> None:
        """Save extra copies (e.g. ``-before-highres-fix``) next to the samples; not part of the result."""
        if not self.saver.wants_samples():
            return
        plan = self.plan
        for j, image in enumerate(images):
            index = batch.index * plan.params.batch_size + j
            self._save(image, infotext(plan, index), index, grid=False, suffix=suffix)

    # -- end of job ----------------------------------------------------------------------------
    def finish(self) -> JobResult:
        plan = self.plan
        n = len(self.images)
        return_grid = bool(plan.settings.get("return_grid", True))
        if n > 1 and plan.params.save_grid and (return_grid or self.saver.wants_grid()):
            grid = make_grid(
                self.images,
                batch_size=plan.params.batch_size,
                n_rows=int(plan.settings.get("n_rows", -1)),
                prevent_empty_spots=bool(plan.settings.get("grid_prevent_empty_spots", False)),
            )
            grid.info["parameters"] = self.infotexts[0]
            if self.saver.wants_grid():
                self._save(grid, self.infotexts[0], 0, grid=True)
            if return_grid:
                self.images.insert(0, grid)
                self.infotexts.insert(0, self.infotexts[0])
                self.index_of_first_image = 1
        result = JobResult(
            images=self.images,
            infotexts=self.infotexts,
            seeds=plan.seeds[:n],
            subseeds=plan.subseeds[:n],
            all_prompts=plan.all_prompts[:n],
            all_negative_prompts=plan.all_negative_prompts[:n],
            info=self.info_dict(),
            warnings=list(plan.warnings),
            saved_paths=self.saver.saved_paths,
            interrupted=plan.interrupted,
        )
        return hooks.job_finished(plan, result)  # extensions' postprocess(); may edit the result

    def info_dict(self) -> dict[str, Any]:
        """The API ``info`` object (A1111 ``Processed.js()`` keys, ``app.jobs.info.info_json``)."""
        plan = self.plan
        p = plan.params
        model = plan.model
        n = len(self.infotexts) - self.index_of_first_image
        return info_json(
            p,
            all_prompts=plan.all_prompts[: max(n, 1)],
            all_negative_prompts=plan.all_negative_prompts[: max(n, 1)],
            all_seeds=plan.seeds[: max(n, 1)],
            all_subseeds=plan.subseeds[: max(n, 1)],
            infotexts=self.infotexts,
            index_of_first_image=self.index_of_first_image,
            sd_model_name=model.model_name,
            sd_model_hash=model.shorthash,
            sd_vae_name=model.vae_name,
            sd_vae_hash=model.vae_hash,
            extra_generation_params={k: v for k, v in plan.extra.items() if not callable(v)},
            job_timestamp=plan.job_timestamp,
            clip_skip=plan.clip_skip,
            sampler_name=getattr(plan.sampler, "name", p.sampler_name),
            denoising_strength=(
                p.img2img.denoising_strength if p.img2img is not None else (p.hires.denoising_strength if p.hires.enabled else None)
            ),
            is_using_inpainting_conditioning=bool(getattr(model.loaded, "is_inpainting", False)),
            version=_version(plan),
            save_errors=self.saver.save_errors,
        )

    # -- saving ----------------------------------------------------------------------------------
    def _save(self, image: Any, text: str, index: int, grid: bool, suffix: str = "") -> None:
        plan = self.plan
        written: list[Any] = [image, text]

        def before_write(im: Any, txt: str | None, target: Path) -> tuple[Any, str | None, Path]:
            # once the file name is decided: extensions see it and may change what the file holds (or where)
            im, txt, changed = hooks.before_write(plan, im, str(txt or ""), target)
            written[:] = [im, txt]
            return im, txt, changed or target

        path = self.saver.save(image, text, _naming(plan, index, image), grid=grid, suffix=suffix,
                               before_write=before_write)
        if path is not None:
            hooks.image_saved(plan, written[0], path, written[1])


def _naming(plan: Any, index: int, image: Any) -> NamingContext:
    """What the file-name patterns of image *index* can use (``[seed]``, ``[model_name]`` ...)."""
    model = plan.model
    return NamingContext(
        params=plan.params,
        seed=plan.seeds[index],
        prompt=plan.all_prompts[index],
        image=image,
        all_seeds=tuple(plan.seeds),
        batch_index=index % plan.params.batch_size,
        iteration=index // plan.params.batch_size,
        job_timestamp=plan.job_timestamp,
        model_hash=model.shorthash,
        model_name=model.model_name,
        vae_file=model.vae_name,
        clip_skip=plan.clip_skip,
    )


# ------------------------------------------------------------------------------ infotext
def infotext(
    plan: Plan, index: int, width: int | None = None, height: int | None = None, extra: dict | None = None
) -> str:
    """The A1111 infotext of image *index* of the job."""
    params = plan.params
    model = plan.model
    merged = dict(plan.extra)
    if plan.used_embeddings:
        merged["TI hashes"] = ", ".join(
            f"{name}: {getattr(emb, 'shorthash', '')}" for name, emb in plan.used_embeddings.items()
        )
    if extra:
        merged.update(extra)
    emphasis = plan.emphasis
    if emphasis != "Original" and any(c in plan.all_prompts[index] + plan.all_negative_prompts[index] for c in "(["):
        merged["Emphasis"] = emphasis
    if plan.settings.get("use_old_scheduling", False):
        merged["Old prompt editing timelines"] = True
    ensd = int(plan.settings.get("eta_noise_seed_delta", 0) or 0)
    return create_infotext(
        params,
        prompt=plan.all_prompts[index],
        negative_prompt=plan.all_negative_prompts[index],
        seed=plan.seeds[index],
        subseed=plan.subseeds[index],
        width=width,
        height=height,
        sampler_name=getattr(plan.sampler, "name", params.sampler_name),
        schedule_type=_schedule_label(plan),
        model_name=model.model_name,
        model_hash=model.shorthash,
        vae_name=model.vae_name,
        vae_hash=model.vae_hash,
        clip_skip=plan.clip_skip,
        ensd=ensd if ensd and _uses_ensd(plan) else None,
        rng=str(plan.settings.get("randn_source", "CPU")),
        extra=merged,
        version=_version(plan),
        index=index,
    )


def _uses_ensd(plan: Plan) -> bool:
    return bool(getattr(plan.sampler, "options", {}).get("uses_ensd"))


def _schedule_label(plan: Plan) -> str | None:
    return effective_schedule(plan.sampler, plan.schedule)


def _version(plan: Plan) -> str | None:
    return DEFAULT_VERSION if plan.settings.get("add_version_to_infotext", True) else None
