"""Text-encoder LoRAs on FLUX.1 dev through real jobs (tiny files, the app's job service): a kohya ``lora_te1_`` LoRA
on CLIP-L (FLUX's pooled vector), a kohya sd-scripts ``lora_te3_`` LoRA on T5 (``flux_train_network``'s prefix) and a
OneTrainer-style ``lora_te2_`` T5 LoRA (ComfyUI reads ``lora_te2_`` as T5 on FLUX too). Each changes the image
against the same prompt without it although that prompt's conditioning was cached (the prompt encoder's cache is keyed
by its ``state_key``, which the LoRA handler sets), and afterwards the text encoder's weights are the original ones
bit for bit and the plain prompt gives the first image again (no stale cache entry)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from bench.app_side import AppBench

PROMPT = "a red fox in the snow"
RANK = 4


def _lora(shapes: dict[str, tuple[int, int]], prefix: str, seed: int) -> dict[str, torch.Tensor]:
    """A kohya-format rank-4 LoRA (``<prefix><module>.lora_down/up.weight`` + ``alpha``) with strong deltas."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for module, (rows, cols) in shapes.items():
        name = prefix + module.replace(".", "_")
        out[f"{name}.lora_down.weight"] = torch.randn(RANK, cols, generator=g)
        out[f"{name}.lora_up.weight"] = torch.randn(rows, RANK, generator=g)
        out[f"{name}.alpha"] = torch.tensor(float(RANK))
    return out


def _shapes(path: Path, names: tuple[str, ...], strip: str = "") -> dict[str, tuple[int, int]]:
    with safe_open(str(path), "pt") as f:
        return {n.removeprefix(strip): tuple(f.get_slice(n + ".weight").get_shape()) for n in names}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from app.devtools.tiny_flux import write_tiny_flux

    data = Path(tmp_path_factory.mktemp("flux-te-lora"))
    paths = write_tiny_flux(data, "dev")
    lora_dir = paths["flux:lora"].parent
    clip = _shapes(paths["flux:clip_l"], ("text_model.encoder.layers.0.self_attn.q_proj",
                                          "text_model.encoder.layers.1.mlp.fc1"), strip="text_model.")
    t5 = _shapes(paths["flux:t5xxl"], ("encoder.block.0.layer.0.SelfAttention.q",
                                       "encoder.block.0.layer.1.DenseReluDense.wi_0"))
    save_file(_lora(clip, "lora_te1_", 1), str(lora_dir / "flux-clip-l.safetensors"))
    save_file(_lora(t5, "lora_te3_", 2), str(lora_dir / "flux-t5-kohya.safetensors"))
    save_file(_lora(t5, "lora_te2_", 3), str(lora_dir / "flux-t5-onetrainer.safetensors"))
    bench = AppBench(data, {})
    from app.models.lora import register_lora_handlers

    register_lora_handlers(bench.manager.extra_networks)  # as the Runtime does for the server
    yield bench
    bench.close()


def _title(app) -> str:
    return next(t for t in app.catalog.checkpoint_titles() if t.split(" [")[0].rsplit("/", 1)[-1].startswith("flux1-dev."))


def _run(app, prompt: str):
    params = app.params(_title(app), prompt, "", 3, 64, 64, 1.0, "Euler", 1234, 1)
    params.scheduler = "Simple"
    return app.run(params)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize(("lora", "encoder"), [("flux-clip-l", "text_encoder"), ("flux-t5-kohya", "text_encoder_2"),
                                               ("flux-t5-onetrainer", "text_encoder_2")])
def test_text_encoder_lora_changes_the_image_and_restores(app, lora, encoder):
    plain = _run(app, PROMPT)  # the prompt's conditioning is now cached
    pipe = app.manager.get(_title(app)).loaded.pipe
    module = getattr(pipe, encoder)
    before = _state(module)
    with_lora = _run(app, f"{PROMPT} <lora:{lora}:1>")
    assert not any("skipped" in w for w in with_lora.warnings), with_lora.warnings
    assert f"Lora hashes: \"{lora}: " in with_lora.infotexts[0]
    assert with_lora.images[0].tobytes() != plain.images[0].tobytes()  # not the cached cond of the same prompt
    after = _state(module)
    assert all(torch.equal(before[k], after[k]) for k in before)  # restored bit for bit
    again = _run(app, PROMPT)
    assert again.images[0].tobytes() == plain.images[0].tobytes()  # and the cache holds no LoRA'd entry


def test_weight_zero_and_half_weight(app):
    plain = _run(app, PROMPT).images[0].tobytes()
    assert _run(app, f"{PROMPT} <lora:flux-clip-l:0>").images[0].tobytes() == plain
    half = _run(app, f"{PROMPT} <lora:flux-clip-l:0.5>").images[0].tobytes()
    full = _run(app, f"{PROMPT} <lora:flux-clip-l:1>").images[0].tobytes()
    assert half != plain and half != full


def test_t5_lora_on_a_model_without_t5_is_refused_by_name():
    """A ``lora_te3_`` (T5) file on SDXL, which has two CLIP encoders and no T5: skipped with a warning naming why."""
    from app.models.lora.apply import apply_networks
    from app.models.lora.network import network_from_state_dict

    class _Pipe:
        def __init__(self) -> None:
            from transformers import CLIPTextConfig, CLIPTextModel

            cfg = CLIPTextConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                                 vocab_size=1000)
            self.transformer = torch.nn.Linear(4, 4)
            self.text_encoder = CLIPTextModel(cfg)
            self.text_encoder_2 = CLIPTextModel(cfg)

    sd = _lora({"encoder.block.0.layer.0.SelfAttention.q": (32, 32)}, "lora_te3_", 4)
    result = apply_networks(_Pipe(), [(network_from_state_dict(sd, "t5-lora"), 1.0, 1.0)])
    assert "no T5 text encoder" in result.refused["t5-lora"]
