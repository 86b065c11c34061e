"""TAESD: the tiny decoder used for live previews and the "TAESD" VAE decode method."""

from __future__ import annotations

from typing import Any

from app.models.handle import ModelLoadError


def load_taesd(path: Any, policy: Any) -> Any:
    """An ``AutoencoderTiny`` holding the decoder weights of a TAESD file."""
    from diffusers import AutoencoderTiny

    from app.models.load import loader

    try:
        sd = loader.read_state_dict(path)
        mapped = {}
        for key, value in sd.items():
            if key.startswith("decoder.layers."):
                mapped[key] = value
            else:  # original TAESD: index 0 is a Clamp module that diffusers does in forward()
                index, _, rest = key.partition(".")
                mapped[f"decoder.layers.{int(index) - 1}.{rest}"] = value
        model = AutoencoderTiny()
        missing, unexpected = model.load_state_dict(mapped, strict=False)
        missing = [k for k in missing if k.startswith("decoder.")]
        if missing or unexpected:
            raise ValueError(f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    except Exception as exc:
        raise ModelLoadError(f"could not load TAESD decoder {path}: {exc}") from exc
    return model.to(policy.device, policy.vae_dtype).eval().requires_grad_(False)
