"""The family seam: what the engine needs to know about one model family, in one small typed object.

A family (SD 1.x, SD 2.x, SDXL, Z-Image, and later FLUX and SD3.5) is a :class:`Family` registered by a
stable id. Nothing outside ``app/families`` and the loaders names a family: the engine asks the
family of the loaded model for its latent format (channels, pixels per latent, the size multiple),
its defaults, its prompt encoder and its denoiser (the network with the UNet call signature our loop
uses). This module and the family descriptors (``sd``, ``zimage``, ``flux``) are torch-free, so the server
process (UI, API) can read names, defaults and latent channel counts without importing torch; the networks and
encoders (``*_nets`` modules) are imported by the methods that build them, which run in the worker only. How a network's output becomes the sampler's input (noise, v or flow prediction, and the
flow ``shift``) is the sampling core's business (``app.engine.sampling``), chosen from the loaded
model's ``prediction_type``, so every sampler runs on every family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class LatentFormat:
    """The latent space of a family: channels, pixels per latent side, and the side multiple."""

    channels: int = 4
    downscale: int = 8  # pixels per latent along one side (the VAE's factor)
    multiple: int = 8  # image sides must be multiples of this many pixels (VAE factor x patch size)
    #: rows: latent channels, columns: R, G, B (a cheap linear preview); empty = no cheap preview
    rgb_factors: tuple[tuple[float, float, float], ...] = ()
    rgb_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class FamilyDefaults:
    """What a new user of the family should start from (the UI and the docs show these)."""

    steps: int = 20
    cfg_scale: float = 7.0
    sampler: str = "DPM++ 2M"
    schedule: str = "Automatic"
    width: int = 512
    height: int = 512
    shift: float | None = None  # flow models: the sampling shift (ComfyUI's ModelSamplingAuraFlow value)
    size_step: int = 64  # the size picker snaps to multiples of this (>= the latent multiple)
    megapixels: float = 0.25  # the size picker's default pixel budget


@dataclass(frozen=True)
class Family:
    """One model family. Subclasses override the behaviour; the data fields describe it."""

    id: str
    label: str
    latent: LatentFormat = field(default_factory=LatentFormat)
    defaults: FamilyDefaults = field(default_factory=FamilyDefaults)
    #: ids of ``LoadedModel.family`` values this family covers ("sd1" and "sd1-inpaint" are SD 1.x)
    loaded_ids: tuple[str, ...] = ()
    #: whether ``(word:1.3)`` changes the conditioning (CLIP: yes; an LLM encoder: the weights are ignored)
    prompt_weights: bool = True
    #: whether A1111's textual-inversion embeddings (CLIP token vectors) apply
    textual_inversion: bool = True
    #: whether seamless tiling (circular conv padding of UNet and VAE) applies
    seamless_tiling: bool = True
    #: what the files of one model are, in the words and folders the user knows
    files: str = ""
    #: on a GPU, keep the text encoder in CPU memory and bring it over only to encode (a large LLM encoder and
    #: the transformer are never needed at once)
    offload_text_encoder: bool = False
    #: the half-precision dtype the family was trained in ("bfloat16" for DiTs: fp16 overflows them)
    half_dtype: str = "float16"
    #: trained with flow matching: the sampling shift applies (the form's "Shift" field)
    flow_matching: bool = False
    #: the denoiser has MMDiT joint blocks and takes ``skip_layers=`` (skip-layer guidance; the form's SLG row)
    skip_layer_guidance: bool = False

    @property
    def distilled_cfg(self) -> float | None:
        """The default "Distilled CFG Scale" of a network that takes a distilled guidance input, None when it takes
        none (the form hides the field)."""
        return None

    def denoiser(self, pipe: Any) -> Any:
        """The network with the UNet call signature: ``net(x, t, encoder_hidden_states=..., added_cond_kwargs=...,
        return_dict=False)[0]``."""
        return pipe.unet

    def prompt_encoder(self, pipe: Any, loaded_id: str, embeddings: Any, **options: Any) -> Any:
        """An object with ``encode(texts, clip_skip, emphasis, is_negative=False)`` returning ``cond`` (rows of
        ``[T, D]``), ``pooled`` (rows or None) and ``used_embeddings``."""
        from app.prompts.encode import PromptEncoder

        options.pop("compute_device", None)  # CLIP encoders live with the UNet (offload is the manager's)
        return PromptEncoder.from_pipe(pipe, loaded_id, embeddings, **options)

    def job_denoiser(self, plan: Any) -> Any:
        """The denoiser for one job (a family whose network takes per-job inputs, e.g. FLUX's distilled guidance,
        returns a view carrying them and records them in ``plan.extra``)."""
        return self.denoiser(plan.pipe)

    def job_shift(self, scheduler_config: dict[str, Any], width: int, height: int) -> float | None:
        """The flow shift of a job that sets none (None = the scheduler config's constant ``shift``); FLUX dev's
        depends on the image size."""
        return None

    def inpaint_channels(self, pixel_mask: torch.Tensor, masked_latents: torch.Tensor) -> torch.Tensor:
        """The extra network input of an inpainting model (``LoadedModel.is_inpainting``), concatenated to the
        latents along channels: *pixel_mask* ``[B, 1, H, W]`` (1 = regenerate, processing size), *masked_latents*
        ``[B, C, h, w]`` (the VAE latents of the image with the masked pixels grey). SD's 9-channel UNets take the mask
        shrunk to the latent size first (nearest), then the masked-image latents."""
        import torch  # runs in the worker only (the server process never builds network inputs)

        small = torch.nn.functional.interpolate(pixel_mask.float(), size=tuple(masked_latents.shape[-2:]))
        return torch.cat([small.to(masked_latents), masked_latents], dim=1)

    def denoiser_device(self, pipe: Any) -> Any:
        return self.denoiser(pipe).device
