"""The base of a diffusion transformer's wrapper with the UNet call signature of our loop (torch; worker side)."""

from __future__ import annotations

from typing import Any

import torch


class TransformerDenoiser(torch.nn.Module):
    """Base of a diffusion transformer's wrapper with the UNet call signature: ``dtype``, ``device`` (the execution
    device under offload hooks) and ``config`` come from the wrapped ``transformer``; subclasses define ``forward``."""

    ragged_conds = False

    def __init__(self, transformer: Any) -> None:
        super().__init__()
        self.transformer = transformer

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    @property
    def device(self) -> torch.device:
        from app.devices import execution_device

        return execution_device(self.transformer)

    @property
    def config(self) -> Any:
        return self.transformer.config
