"""Build helpers of the checkpoint loader (``app.models.load.loader``): the ``LoadedModel`` a load returns, the device
policy's device/dtypes, models created without weight initialisation from inferred configs with the converted
tensors assigned (UNet, VAE, CLIP text encoders), private tokenizers (from ``app.prompts.tokenizer``, no hub access),
schedulers from a config, the diffusers pipeline assembled per family, and its placement on the device.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from app.models.load import config_infer as ci
from app.models.load.checkpoint_io import CheckpointLoadError
from app.models.load.config_infer import ModelFamily
from app.prompts.tokenizer import clip_tokenizer

logger = logging.getLogger(__name__)
_IGNORED_UNEXPECTED = ("position_ids",)


@dataclass
class LoadedModel:
    """A loaded checkpoint. ``scheduler_config`` is a private deep copy of the original config."""

    family: ModelFamily
    pipe: Any
    scheduler_config: dict[str, Any]
    prediction_type: str
    is_sdxl: bool
    is_inpainting: bool
    source_path: Path
    vae_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # detected_family, sidecar_yaml, markers (single files)


def device_and_dtypes(device_policy: Any) -> tuple[torch.device, torch.dtype, torch.dtype]:
    if device_policy is None:
        return torch.device("cpu"), torch.float32, torch.float32
    device = torch.device(getattr(device_policy, "device", "cpu"))
    dtype = getattr(device_policy, "dtype", torch.float32)
    return device, dtype, getattr(device_policy, "vae_dtype", dtype)


def _empty_init() -> contextlib.AbstractContextManager[Any]:
    try:
        from accelerate import init_empty_weights  # optional dependency, only needed when a model is built
    except ImportError:  # slower (random init), same result
        return contextlib.nullcontext()
    return init_empty_weights(include_buffers=False)


def _assign(model: torch.nn.Module, sd: dict[str, torch.Tensor], dtype: torch.dtype, what: str, src: Path) -> None:
    """Put *sd* into *model* (created on meta); every parameter must be provided."""
    sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    result = model.load_state_dict(sd, strict=False, assign=True)
    missing = [k for k in result.missing_keys if not k.endswith(_IGNORED_UNEXPECTED)]
    if missing:
        raise CheckpointLoadError(
            f"{src}: {what} weights do not match the inferred architecture; missing {len(missing)} "
            f"tensors, e.g. {', '.join(missing[:4])}"
        )
    unexpected = [k for k in result.unexpected_keys if not k.endswith(_IGNORED_UNEXPECTED)]
    if unexpected:
        logger.info("%s: ignored %d unexpected %s tensors (e.g. %s)", src, len(unexpected), what, unexpected[:3])
    model.eval()


def build_unet(sd: dict[str, torch.Tensor], family: ModelFamily, dtype: torch.dtype, src: Path, pooled: int | None):
    # deferred: diffusers/transformers are heavy imports, only needed when a model is built
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    cfg = ci.infer_unet_config(sd, family, pooled_dim=pooled)
    with _empty_init():
        unet = UNet2DConditionModel.from_config(cfg)
    _assign(unet, convert_ldm_unet_checkpoint(sd, unet.config), dtype, "UNet", src)
    return unet


def build_vae(sd: dict[str, torch.Tensor], family: ModelFamily, dtype: torch.dtype, src: Path):
    # deferred: diffusers/transformers are heavy imports, only needed when a model is built
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    cfg = ci.infer_vae_config(sd, family)
    prefix = ci.vae_prefix(sd)
    vae_sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)} if prefix else dict(sd)
    with _empty_init():
        vae = AutoencoderKL.from_config(cfg)
    _assign(vae, convert_ldm_vae_checkpoint(vae_sd, vae.config), dtype, "VAE", src)
    return vae


def build_text_encoder(sd: dict[str, torch.Tensor], family: ModelFamily, which: int, dtype: torch.dtype, src: Path):
    # deferred: diffusers/transformers are heavy imports, only needed when a model is built
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    base = family.removesuffix("-inpaint")
    cfg = ci.infer_clip_config(sd, family, which)
    cls = CLIPTextModelWithProjection if which == 2 else CLIPTextModel
    with _empty_init():
        model = cls(CLIPTextConfig(**{k: v for k, v in cfg.items() if k != "architectures"}))
    if base in ("sd1", "sdxl") and which == 1:
        prefix = ci.SD1_CLIP_PREFIX if base == "sd1" else ci.SDXL_CLIP1_PREFIX
        te_sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    else:
        prefix = ci.clip2_prefix(family) if which == 2 else ci.SD2_CLIP_PREFIX
        unused = f"{prefix}transformer.resblocks.{cfg['num_hidden_layers']}."
        sub = {k: v for k, v in sd.items() if k.startswith(prefix) and not k.startswith(unused)}
        te_sd = convert_open_clip_checkpoint(model, sub, prefix=prefix)
        if which == 1:  # SD2: a plain CLIPTextModel has no projection
            te_sd.pop("text_projection.weight", None)
    # transformers >= 5.6 flattened CLIPTextModel (no ``text_model.``); older versions and
    # CLIPTextModelWithProjection keep the wrapper. Match whatever the installed model has.
    inner = "text_model." if hasattr(model, "text_model") else ""
    te_sd = {
        k if k.startswith("text_projection") else inner + k.removeprefix("text_model."): v for k, v in te_sd.items()
    }
    _assign(model, te_sd, dtype, f"text encoder {which}", src)
    return model


def pad_token(family: ModelFamily, which: int = 1) -> str:
    """The pad token of text encoder *which*'s tokenizer: ``!`` for SD2's OpenCLIP and SDXL's second encoder,
    else ``<|endoftext|>``."""
    return "!" if which == 2 or family in ("sd2", "sd2v") else "<|endoftext|>"


def fresh_tokenizer(pad: str) -> Any:
    """A private tokenizer per pipeline (textual inversion adds tokens to it)."""
    return copy.deepcopy(clip_tokenizer(pad))


def make_scheduler(config: dict[str, Any]) -> Any:
    import diffusers  # deferred: diffusers is a heavy import, only needed when a model is built

    cls = getattr(diffusers, config.get("_class_name", "PNDMScheduler"))
    return cls.from_config(copy.deepcopy(config))


def assemble_pipeline(family: ModelFamily, unet: Any, vae: Any, te: Any, te2: Any, scheduler: Any) -> Any:
    import diffusers  # deferred: diffusers is a heavy import, only needed when a model is built

    if family == "sdxl-refiner":  # OpenCLIP bigG alone; aesthetic-score time ids (diffusers' img2img pipeline)
        return diffusers.StableDiffusionXLImg2ImgPipeline(
            vae=vae,
            text_encoder=None,
            text_encoder_2=te2,
            tokenizer=None,
            tokenizer_2=fresh_tokenizer(pad_token(family, 2)),
            unet=unet,
            scheduler=scheduler,
            requires_aesthetics_score=True,
            force_zeros_for_empty_prompt=False,
            add_watermarker=False,
        )
    if family.startswith("sdxl"):
        cls = (
            diffusers.StableDiffusionXLInpaintPipeline
            if family == "sdxl-inpaint"
            else diffusers.StableDiffusionXLPipeline
        )
        return cls(
            vae=vae,
            text_encoder=te,
            text_encoder_2=te2,
            tokenizer=fresh_tokenizer(pad_token(family)),
            tokenizer_2=fresh_tokenizer(pad_token(family, 2)),
            unet=unet,
            scheduler=scheduler,
            force_zeros_for_empty_prompt=True,
            add_watermarker=False,
        )
    cls = diffusers.StableDiffusionInpaintPipeline if family == "sd1-inpaint" else diffusers.StableDiffusionPipeline
    return cls(
        vae=vae,
        text_encoder=te,
        tokenizer=fresh_tokenizer(pad_token(family)),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def place_pipeline(pipe: Any, device: torch.device, device_policy: Any, is_sdxl: bool) -> None:
    """Move to the policy's device, except when the policy offloads (the manager sets up offload hooks)."""
    offload = getattr(device_policy, "offload", "none")
    if hasattr(device_policy, "offload_for"):
        offload = device_policy.offload_for(is_sdxl)
    if device.type != "cpu" and offload in (None, "none"):
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)


def loaded_model(family: ModelFamily, pipe: Any, sched_cfg: dict[str, Any], path: Path,
                  extra: dict[str, Any] | None = None) -> LoadedModel:
    """The ``LoadedModel`` of a placed pipeline (the scheduler config is kept as an untouched copy)."""
    return LoadedModel(
        family=family,
        pipe=pipe,
        scheduler_config=copy.deepcopy(sched_cfg),
        prediction_type=sched_cfg.get("prediction_type", "epsilon"),
        is_sdxl=family.startswith("sdxl"),
        is_inpainting=family.endswith("-inpaint"),
        source_path=path,
        extra=extra if extra is not None else {},
    )
