"""The Stable Diffusion families (UNet + CLIP, noise or v prediction) as adapters of the family seam.

They describe what the code did before families existed; the prompt encoder is the chunked CLIP
encoder (:mod:`app.prompts.encode`) and the denoiser the diffusers UNet itself, so outputs are unchanged.
"""

from __future__ import annotations

from app.families.base import Family, FamilyDefaults, LatentFormat

_SD1_RGB = (
    (0.298, 0.207, 0.208),
    (0.187, 0.286, 0.173),
    (-0.158, 0.189, 0.264),
    (-0.184, -0.271, -0.473),
)
_SDXL_RGB = (
    (0.3448, 0.4168, 0.4395),
    (-0.1953, -0.0290, 0.0250),
    (0.1074, 0.0886, -0.0163),
    (-0.3730, -0.2499, -0.2088),
)

SD1 = Family(
    id="sd1",
    label="Stable Diffusion 1.x",
    latent=LatentFormat(4, 8, 8, _SD1_RGB),
    defaults=FamilyDefaults(steps=20, cfg_scale=7.0, width=512, height=512),
    loaded_ids=("sd1", "sd1-inpaint"),
    files="one checkpoint file (.safetensors/.ckpt) in models/Stable-diffusion",
)
SD2 = Family(
    id="sd2",
    label="Stable Diffusion 2.x",
    latent=LatentFormat(4, 8, 8, _SD1_RGB),
    defaults=FamilyDefaults(steps=20, cfg_scale=7.0, width=768, height=768, megapixels=0.5),
    loaded_ids=("sd2", "sd2v"),
    files="one checkpoint file (.safetensors/.ckpt) in models/Stable-diffusion",
)
SDXL = Family(
    id="sdxl",
    label="Stable Diffusion XL",
    latent=LatentFormat(4, 8, 8, _SDXL_RGB),
    defaults=FamilyDefaults(steps=25, cfg_scale=6.0, width=1024, height=1024, megapixels=1.0),
    loaded_ids=("sdxl", "sdxl-inpaint", "sdxl-refiner"),
    files="one checkpoint file (.safetensors) in models/Stable-diffusion",
)

FAMILIES = (SD1, SD2, SDXL)
