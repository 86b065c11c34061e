"""The bare-diffusers side of the benchmark: a config folder for ``from_single_file`` and the matching scheduler.

``write_config_folder(ckpt, out)`` writes a diffusers config skeleton (``model_index.json``,
``unet/``, ``vae/``, ``text_encoder/`` and ``scheduler/`` configs, tokenizer files) for a
single-file SD1 checkpoint: the shipped ``app/configs/sd1`` architecture with every dimension the
file's tensor shapes determine (the same inference the loader uses, read from the safetensors
header only). ``load_reference_pipeline`` then loads the file with diffusers' own
``StableDiffusionPipeline.from_single_file(path, config=<folder>, local_files_only=True)``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

#: Atelier sampler name → diffusers scheduler class and ``from_config`` overrides.
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
}


def _meta_shapes(path: Path) -> dict[str, torch.Tensor]:
    from app.models.load.checkpoint_io import read_key_shapes

    return {k: torch.empty(shape, device="meta") for k, shape in read_key_shapes(path).items()}


def write_config_folder(ckpt: Path, out: Path) -> Path:
    """Config-only diffusers folder for the SD1 single file *ckpt* (architecture inferred from its header)."""
    from app.configs import family_config_dir, load_family_config
    from app.models.load import config_infer as ci
    from app.prompts.tokenizer import clip_tokenizer

    shapes = _meta_shapes(ckpt)
    family = ci.detect_family(shapes, source_path=ckpt)
    if family != "sd1":
        raise ValueError(f"{ckpt}: the diffusers reference supports SD1 checkpoints only, this one is {family}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copy(family_config_dir(family) / "model_index.json", out / "model_index.json")
    parts = {
        "unet/config.json": ci.infer_unet_config(shapes, family),
        "vae/config.json": ci.infer_vae_config(shapes, family),
        "text_encoder/config.json": ci.infer_clip_config(shapes, family, 1),
        "scheduler/scheduler_config.json": load_family_config(family, "scheduler"),
    }
    for rel, cfg in parts.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(json.dumps(cfg, indent=2), "utf-8")
    clip_tokenizer().save_pretrained(out / "tokenizer")
    return out


def make_scheduler(sampler: str, config: dict[str, Any]) -> Any:
    """The diffusers scheduler matching the Atelier *sampler* name, from the checkpoint's scheduler config."""
    import diffusers

    if sampler not in SCHEDULERS:
        raise ValueError(
            f"no diffusers reference scheduler for sampler {sampler!r}; choose one of {', '.join(SCHEDULERS)}"
        )
    cls_name, overrides = SCHEDULERS[sampler]
    return getattr(diffusers, cls_name).from_config(dict(config), **overrides)


def load_reference_pipeline(
    ckpt: Path, config_dir: Path, sampler: str, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> Any:
    """``StableDiffusionPipeline.from_single_file`` with our config folder on *device* in *dtype*, *sampler*'s scheduler."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_single_file(
        str(ckpt),
        config=str(config_dir),
        local_files_only=True,
        torch_dtype=dtype,
        safety_checker=None,
        requires_safety_checker=False,
    )
    pipe.scheduler = make_scheduler(sampler, pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def generate(
    pipe: Any, prompt: str, negative: str, steps: int, width: int, height: int, cfg: float, seeds: list[int]
) -> list[Any]:
    """One diffusers txt2img call, text prompts, one CPU generator per image, PIL output."""
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    n = len(seeds)
    with torch.inference_mode():
        out = pipe(
            prompt=[prompt] * n,
            negative_prompt=[negative] * n,
            num_inference_steps=steps,
            width=width,
            height=height,
            guidance_scale=cfg,
            generator=generators,
            output_type="pil",
        )
    return out.images
