"""VAE decode / encode for the engine (NaN-safe decode with an automatic fp32 retry) and PIL conversion."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image

from app.engine.plan import Plan

log = logging.getLogger(__name__)


def decode(plan: Plan, latents: torch.Tensor) -> torch.Tensor:
    """VAE decode to ``[B,3,H,W]`` in [0,1]; NaN in half precision → retry in fp32 (and log it)."""
    vae = plan.pipe.vae
    if str(plan.settings.get("sd_vae_decode_method", "Full")) == "TAESD":
        fast = _taesd_decode(plan, latents)
        if fast is not None:
            plan.extra["VAE Decoder"] = "TAESD"
            return fast
    with tiled_vae(plan, vae, latents.shape[-2] * latents.shape[-1] * _scale(vae) ** 2):
        out = _decode(vae, latents, plan.device)
    if torch.isnan(out).any():
        if vae.dtype != torch.float32 and plan.settings.get("auto_vae_precision", True):
            log.warning("VAE produced NaNs in %s; retrying in fp32 (VAE stays fp32 from now on)", vae.dtype)
            manager = getattr(plan, "manager", None)
            if manager is not None and hasattr(manager, "vae_dtype_fallback"):
                manager.vae_dtype_fallback(plan.model)  # remembered for this model
            else:
                vae.to(dtype=torch.float32)
            with tiled_vae(plan, vae, latents.shape[-2] * latents.shape[-1] * _scale(vae) ** 2):
                out = _decode(vae, latents, plan.device)
        if torch.isnan(out).any():
            raise FloatingPointError(
                "the VAE produced NaN values; try --no-half-vae or a different VAE (setting sd_vae)"
            )
    return out


def _scale(vae: Any) -> int:
    """Pixels per latent along one side (8 for SD)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


@contextlib.contextmanager
def tiled_vae(plan: Plan, vae: Any, pixels: int) -> Iterator[bool]:
    """Tile the VAE (diffusers' overlapping tiles) while an image has more pixels than the setting
    ``vae_tiling_mp`` allows; off (exact full decode) when the setting is 0. Yields whether it tiles."""
    limit = float(plan.settings.get("vae_tiling_mp", 0.0) or 0.0)
    tile = limit > 0 and pixels > limit * 1_000_000 and hasattr(vae, "enable_tiling")
    if not tile:
        yield False
        return
    vae.enable_tiling()
    try:
        yield True
    finally:
        vae.disable_tiling()


def _taesd_decode(plan: Plan, latents: torch.Tensor) -> torch.Tensor | None:
    """Decode with the tiny TAESD decoder (setting ``sd_vae_decode_method``), None when there is none."""
    manager = getattr(plan, "manager", None)
    decoder = manager.taesd(plan.model) if manager is not None and hasattr(manager, "taesd") else None
    if decoder is None:
        plan.warn("sd_vae_decode_method is TAESD but models/VAE-taesd has no decoder for this model; used the full VAE")
        return None
    with torch.inference_mode():
        out = decoder.decode(latents.to(decoder.device, decoder.dtype)).sample.float()
    return (out / 2 + 0.5).clamp(0, 1)


def _decode(vae: Any, latents: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Decode on the execution device (with CPU offload the VAE's own parameters may sit on the CPU)."""
    cfg = vae.config
    x = latents / cfg.scaling_factor
    shift = getattr(cfg, "shift_factor", None)
    if shift:
        x = x + shift
    with torch.inference_mode():
        image = vae.decode(x.to(device, vae.dtype), return_dict=False)[0]
    return (image.float() / 2 + 0.5).clamp(0, 1)


def encode_images(plan: Plan, images: list[Any]) -> torch.Tensor:
    """PIL images → latents (the distribution's mean, deterministic) for hires / img2img."""
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0 for im in images])
    return encode_pixels(plan, torch.from_numpy(arr).permute(0, 3, 1, 2) * 2 - 1)


def encode_pixels(plan: Plan, x: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` pixels in [-1, 1] → latents (the mean; shift and scale applied), e.g. an inpainting model's
    masked image, which is computed in float (A1111 and diffusers do not round it to 8 bits first)."""
    vae = plan.pipe.vae
    with torch.inference_mode(), tiled_vae(plan, vae, x.shape[-2] * x.shape[-1]):
        dist = vae.encode(x.to(plan.device, vae.dtype)).latent_dist
        lat = dist.mean.float()
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (lat - shift) * vae.config.scaling_factor


def to_pil(images: torch.Tensor) -> list[Any]:
    """[B,3,H,W] in [0,1] → PIL (A1111 truncates ``255 * x`` to uint8)."""
    arr = (255.0 * images.detach().cpu().permute(0, 2, 3, 1).numpy()).astype(np.uint8)
    return [Image.fromarray(a) for a in arr]
