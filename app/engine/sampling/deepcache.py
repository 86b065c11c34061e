"""DeepCache-style step reuse (settings ``deepcache_enabled``, ``deepcache_interval``; off by default).

Adjacent denoising steps produce very similar deep UNet features. Every ``interval``-th UNet call
runs the whole network and keeps the input of the last up block (everything the deep part of the
UNet contributed); the calls in between run only the shallowest down block and the last up block
and reuse that cached tensor (DeepCache, Ma et al. 2023, skip branch 0).

**Trade-off:** the images change (approximate), in exchange for cached calls that cost only the
outermost blocks. Interval 1 is exactly the normal UNet. Measured numbers: docs/BENCHMARKS.md.

``DeepCacheUNet(unet, interval)`` is a callable with the UNet's call signature used by the denoising
loop in place of ``unet(...)``; it follows ``UNet2DConditionModel.forward`` for the inputs the engine
passes (no ControlNet/T2I residuals, attention masks or GLIGEN: those fall back to the full UNet).
"""

from __future__ import annotations

from typing import Any

import torch


class DeepCacheUNet:
    """See module doc. ``calls`` / ``full_calls`` count what ran (tests, benchmarks)."""

    def __init__(self, unet: Any, interval: int):
        if int(interval) < 1:
            raise ValueError(f"deepcache_interval must be >= 1, got {interval}")
        self.unet = unet
        self.interval = int(interval)
        self.calls = 0
        self.full_calls = 0
        self._cached: torch.Tensor | None = None
        self._key: tuple | None = None

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    def reset(self) -> None:
        self.calls = self.full_calls = 0
        self._cached, self._key = None, None

    def __call__(
        self,
        sample: torch.Tensor,
        timestep: Any,
        encoder_hidden_states: torch.Tensor,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
        return_dict: bool = False,
        **other: Any,
    ) -> tuple[torch.Tensor]:
        if any(v is not None for v in other.values()):  # features this path does not follow: normal UNet
            return self.unet(
                sample,
                timestep,
                encoder_hidden_states=encoder_hidden_states,
                added_cond_kwargs=added_cond_kwargs,
                return_dict=False,
                **other,
            )
        key = (tuple(sample.shape), tuple(encoder_hidden_states.shape), sample.dtype)
        full = self._cached is None or key != self._key or self.calls % self.interval == 0
        self.calls += 1
        out = self._forward(sample, timestep, encoder_hidden_states, added_cond_kwargs, full)
        self._key = key
        return (out,)

    def _forward(self, sample, timestep, ehs, added_cond_kwargs, full: bool) -> torch.Tensor:
        unet = self.unet
        up_factor = 2**unet.num_upsamplers
        forward_upsample_size = any(dim % up_factor != 0 for dim in sample.shape[-2:])
        if unet.config.center_input_sample:
            sample = 2 * sample - 1.0
        # 1. time (+ SDXL text/time) embedding
        emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep), None)
        class_emb = unet.get_class_embed(sample=sample, class_labels=None)
        if class_emb is not None:
            emb = torch.cat([emb, class_emb], dim=-1) if unet.config.class_embeddings_concat else emb + class_emb
        aug_emb = unet.get_aug_embed(emb=emb, encoder_hidden_states=ehs, added_cond_kwargs=added_cond_kwargs or {})
        if aug_emb is not None:
            emb = emb + aug_emb
        if unet.time_embed_act is not None:
            emb = unet.time_embed_act(emb)
        ehs = unet.process_encoder_hidden_states(encoder_hidden_states=ehs, added_cond_kwargs=added_cond_kwargs or {})
        # 2. down (only the first block on a cached call)
        sample = unet.conv_in(sample)
        res: tuple[torch.Tensor, ...] = (sample,)
        blocks = unet.down_blocks if full else unet.down_blocks[:1]
        for block in blocks:
            if getattr(block, "has_cross_attention", False):
                sample, more = block(hidden_states=sample, temb=emb, encoder_hidden_states=ehs)
            else:
                sample, more = block(hidden_states=sample, temb=emb)
            res += more
        last = len(unet.up_blocks) - 1
        if full:
            self.full_calls += 1
            if unet.mid_block is not None:
                if getattr(unet.mid_block, "has_cross_attention", False):
                    sample = unet.mid_block(sample, emb, encoder_hidden_states=ehs)
                else:
                    sample = unet.mid_block(sample, emb)
            for i, block in enumerate(unet.up_blocks):
                n = len(block.resnets)
                skip, res = res[-n:], res[:-n]
                if i == last:
                    self._cached = sample
                size = res[-1].shape[2:] if i != last and forward_upsample_size else None
                sample = _up(block, sample, emb, skip, ehs, size)
        else:
            block = unet.up_blocks[last]
            sample = _up(block, self._cached, emb, res[: len(block.resnets)], ehs, None)
        # 3. post-process
        if unet.conv_norm_out:
            sample = unet.conv_act(unet.conv_norm_out(sample))
        return unet.conv_out(sample)


def _up(block: Any, sample: torch.Tensor, emb: torch.Tensor, skip: tuple, ehs: torch.Tensor, size: Any) -> torch.Tensor:
    if getattr(block, "has_cross_attention", False):
        return block(
            hidden_states=sample, temb=emb, res_hidden_states_tuple=skip, encoder_hidden_states=ehs, upsample_size=size
        )
    return block(hidden_states=sample, temb=emb, res_hidden_states_tuple=skip, upsample_size=size)


def deepcache_for(unet: Any, settings: Any) -> DeepCacheUNet | None:
    """A fresh ``DeepCacheUNet`` when the setting is on (one per sampling run), else None."""
    if settings is None or not bool(settings.get("deepcache_enabled", False)):
        return None
    return DeepCacheUNet(unet, int(settings.get("deepcache_interval", 3) or 3))
