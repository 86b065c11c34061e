"""Job outputs: infotext per image, saving (images, grid, params.txt) and the ``JobResult``.

An image is written before the job reports done; a write failure becomes a job warning and the
image is still returned, and the API ``info`` JSON lists it under ``save_errors``. Saved files never
leave their output folder (``app.outputs.save.save_image`` sanitises the patterns). ``save_images=False``
writes nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from app.engine.plan import Plan
from app.jobs.job import JobResult
from app.plugins import hooks

log = logging.getLogger(__name__)

_KIND_DIRS = {
    "txt2img": ("outdir_txt2img_samples", "outputs/txt2img-images", "outdir_txt2img_grids", "outputs/txt2img-grids"),
    "img2img": ("outdir_img2img_samples", "outputs/img2img-images", "outdir_img2img_grids", "outputs/img2img-grids"),
}


class JobOutputs:
    """Collects a job's images batch by batch; ``finish()`` writes the grid and builds the result."""

    def __init__(self, plan: Any):
        self.plan = plan
        self.images: list[Any] = []
        self.infotexts: list[str] = []
        self.saved_paths: list[str] = []
        #: Why images/grids of this job are not on disk (API `info["save_errors"]`); they are still returned.
        self.save_errors: list[str] = []
        self.index_of_first_image = 0
        self._params_written = False

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
            if not self._params_written:
                self._write_params_txt(text)
                self._params_written = True
            if self._save_samples():
                path = self._save(image, text, index, grid=False)
                if path is not None:
                    self.saved_paths.append(str(path))

    def save_intermediate(self, batch: Any, images: list[Any], suffix: str) -> None:
        """Save extra copies (e.g. ``-before-highres-fix``) next to the samples; not part of the result."""
        if not self._save_samples():
            return
        plan = self.plan
        for j, image in enumerate(images):
            index = batch.index * plan.params.batch_size + j
            text = infotext(plan, index)
            path = self._save(image, text, index, grid=False, suffix=suffix)
            if path is not None:
                self.saved_paths.append(str(path))

    # -- end of job ----------------------------------------------------------------------------
    def finish(self) -> JobResult:
        plan = self.plan
        n = len(self.images)
        return_grid = bool(plan.settings.get("return_grid", True))
        if n > 1 and plan.params.save_grid and (return_grid or self._save_grid()):
            from app.outputs.save import make_grid

            grid = make_grid(
                self.images,
                batch_size=plan.params.batch_size,
                n_rows=int(plan.settings.get("n_rows", -1)),
                prevent_empty_spots=bool(plan.settings.get("grid_prevent_empty_spots", False)),
            )
            grid.info["parameters"] = self.infotexts[0]
            if self._save_grid():
                path = self._save(grid, self.infotexts[0], 0, grid=True)
                if path is not None:
                    self.saved_paths.append(str(path))
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
            saved_paths=self.saved_paths,
            interrupted=plan.interrupted,
        )
        return hooks.job_finished(plan, result)  # extensions' postprocess(); may edit the result

    def info_dict(self) -> dict[str, Any]:
        """The API ``info`` object (A1111 ``Processed.js()`` keys, ``app.jobs.info.info_json``)."""
        from app.jobs.info import info_json

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
            save_errors=self.save_errors,
        )

    # -- saving ----------------------------------------------------------------------------------
    def _save_samples(self) -> bool:
        p = self.plan.params
        return bool(p.save_images) and bool(self.plan.settings.get("samples_save", True))

    def _save_grid(self) -> bool:
        p = self.plan.params
        return bool(p.save_images) and bool(p.save_grid) and bool(self.plan.settings.get("grid_save", True))

    def _outdir(self, grid: bool) -> Path:
        plan = self.plan
        kind = plan.kind if plan.kind in _KIND_DIRS else "txt2img"
        key_s, default_s, key_g, default_g = _KIND_DIRS[kind]
        if plan.params.outpath_samples and not grid:
            raw = plan.params.outpath_samples
        else:
            raw = plan.settings.get(key_g if grid else key_s, "") or (default_g if grid else default_s)
        path = Path(raw)
        base = getattr(plan.paths, "data_dir", None)
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        return path

    def _save(self, image: Any, text: str, index: int, grid: bool, suffix: str = "") -> Path | None:
        plan = self.plan
        image, text = hooks.image_saving(plan, image, text)  # extensions may change what the file holds
        try:
            path = _save_image(image, self._outdir(grid), text, index, grid, plan, suffix)
        except Exception as exc:  # the image is still returned; the user learns why it is not on disk
            msg = f"could not save {'grid' if grid else 'image'}: {type(exc).__name__}: {exc}"
            plan.warn(msg)
            self.save_errors.append(msg)
            return None
        hooks.image_saved(plan, image, path, text)
        return path

    def _write_params_txt(self, text: str) -> None:
        plan = self.plan
        target = getattr(plan.paths, "params_file", None)
        if target is None or plan.settings.get("no_prompt_history", False):
            return
        from app.outputs.save import write_params_txt

        try:
            write_params_txt(target, text)
        except Exception as exc:  # params.txt is a convenience; never fail the job for it
            plan.warn(f"could not write {target}: {exc}")


def _naming(plan: Any, index: int, image: Any) -> Any:
    from app.outputs.filenames import NamingContext

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


def _save_image(image: Any, outdir: Path, text: str, index: int, grid: bool, plan: Any, suffix: str = "") -> Path:
    from app.outputs import save as images

    st = plan.settings
    common = {
        "infotext": text,
        "context": _naming(plan, index, image),
        "extension": str(st.get("samples_format", "png") or "png"),
        "jpeg_quality": int(st.get("jpeg_quality", 80)),
        "pnginfo": bool(st.get("enable_pnginfo", True)),
        "add_number": bool(st.get("save_images_add_number", True)),
        "directories_filename_pattern": str(st.get("directories_filename_pattern", "[date]") or "[date]"),
    }
    if grid:
        return images.save_grid(
            image, outdir, grid_extended_filename=bool(st.get("grid_extended_filename", False)),
            save_to_dirs=bool(st.get("grid_save_to_dirs", True)), **common,
        )
    return images.save_image(
        image,
        outdir,
        seed=plan.seeds[index],
        prompt=plan.all_prompts[index],
        save_to_dirs=bool(st.get("save_to_dirs", True)),
        samples_filename_pattern=str(st.get("samples_filename_pattern", "") or ""),
        save_txt=bool(st.get("save_txt", False)),
        suffix=suffix,
        **common,
    )


# ------------------------------------------------------------------------------ infotext
def infotext(
    plan: Plan, index: int, width: int | None = None, height: int | None = None, extra: dict | None = None
) -> str:
    """The A1111 infotext of image *index* of the job."""
    from app.infotext.format import create_infotext

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
    from app.engine.sampling.schedulers import effective_schedule

    return effective_schedule(plan.sampler, plan.schedule)


def _version(plan: Plan) -> str | None:
    from app.infotext.format import DEFAULT_VERSION

    return DEFAULT_VERSION if plan.settings.get("add_version_to_infotext", True) else None
