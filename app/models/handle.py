"""The engine's view of a loaded checkpoint (``ModelHandle``) and the model errors."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from app.errors import UserError


class ModelLoadError(RuntimeError):
    """A checkpoint or VAE could not be loaded (the message names the file and the reason)."""


class ModelFileError(ModelLoadError, ValueError, UserError):
    """The chosen checkpoint/VAE file itself is unusable (refused as unsafe, TorchScript, corrupt, NaN/Inf
    weights): a ``ValueError`` too, so the request that chose it gets a 4xx naming the file, not a 500."""


class ModelNotFoundError(LookupError, UserError):
    """No checkpoint matches the requested title/alias, or there is none at all (an expected error: its message
    says where checkpoints go)."""


@dataclass
class ModelHandle:
    """A loaded checkpoint as the engine sees it.

    ``loaded`` is the loader's ``LoadedModel`` (``pipe``, ``family``, ``scheduler_config``,
    ``prediction_type``, ``is_sdxl``, ``is_inpainting``); attribute access falls through to it.
    """

    loaded: Any
    info: Any  # catalog CheckpointInfo
    vae_name: str | None = None  # file name of the external VAE in use; None = baked VAE
    vae_hash: str | None = None
    vae_filename: str | None = None
    baked_vae_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    offload: str = "none"
    encoder: Any = field(default=None, repr=False)  # PromptEncoder, built by ModelManager.encoder
    optimisations: dict[str, Any] = field(default_factory=dict)  # what app.models.optim applied
    vae_fp32: bool = False  # set after a NaN decode in half precision: the VAE stays fp32

    def __getattr__(self, name: str) -> Any:
        if name in ("loaded", "__setstate__", "__getstate__"):
            raise AttributeError(name)
        return getattr(self.loaded, name)

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this (the family's latent grid: 8 for SD, 16 for Z-Image)."""
        from app.families import family_of

        return family_of(self.loaded).latent.multiple

    @property
    def title(self) -> str:
        return getattr(self.info, "title", "") or getattr(self.info, "name", "")

    @property
    def model_name(self) -> str:
        """``Model:`` infotext value (file name without extension)."""
        return getattr(self.info, "name_for_extra", None) or os.path.splitext(os.path.basename(self.info.filename))[0]

    @property
    def shorthash(self) -> str | None:
        return getattr(self.info, "shorthash", None)

    @property
    def sha256(self) -> str | None:
        return getattr(self.info, "sha256", None)
