"""FLUX's prompt caches (pooled CLIP-L per text, T5 states per prompt) are keyed by the encoder's ``state_key``: a LoRA
that patches CLIP-L or T5 sets it (``app.models.lora.handler``), so a prompt encoded before the LoRA is encoded again
with the patched weights, and the cached result of the unpatched encoder comes back once the key is restored."""

from __future__ import annotations

import torch

from app.devtools.tiny_flux import write_tiny_flux
from app.families.flux_nets import FluxPromptEncoder
from app.models.load.flux_load import load_flux


def _final_norm(model: torch.nn.Module) -> torch.nn.Parameter:
    """The encoder's final layer norm weight (found by name: transformers' module paths differ between versions)."""
    return next(p for name, p in model.named_parameters() if name.endswith("final_layer_norm.weight"))


def test_state_key_separates_cached_prompts(tmp_path):
    files = write_tiny_flux(tmp_path, "dev", seed=7)
    pipe = load_flux(files["flux:all_in_one"]).pipe
    enc = FluxPromptEncoder(pipe.text_encoder, pipe.tokenizer, pipe.text_encoder_2, pipe.tokenizer_2)
    before = enc.encode(["a red fox"])
    clip_w = _final_norm(pipe.text_encoder)
    t5_w = _final_norm(pipe.text_encoder_2)
    saved = clip_w.detach().clone(), t5_w.detach().clone()
    with torch.no_grad():  # what a LoRA on both text encoders does: patch their weights, set the key
        clip_w.mul_(1.5)
        t5_w.mul_(1.5)
    enc.state_key = ("lora", 1)
    patched = enc.encode(["a red fox"])
    assert not torch.equal(patched.pooled[0], before.pooled[0])
    assert not torch.equal(patched.cond[0], before.cond[0])
    with torch.no_grad():
        clip_w.copy_(saved[0])
        t5_w.copy_(saved[1])
    enc.state_key = None
    again = enc.encode(["a red fox"])
    assert torch.equal(again.pooled[0], before.pooled[0]) and torch.equal(again.cond[0], before.cond[0])
