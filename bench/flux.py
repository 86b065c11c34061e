"""FLUX.1 dev: Atelier's whole txt2img job against diffusers' own ``FluxPipeline`` on the same weights.

Usage (repository root)::

    python bench/flux.py [--device cpu|cuda|auto] [--size 64] [--steps 20] [--runs 5]
    python bench/flux.py --real-shaped --device cuda --size 1024 --steps 20 --runs 3   # a GPU with ~60 GB

The files are ComfyUI's split layout (``flux1-dev.safetensors`` in ``models/diffusion_models``, ``clip_l`` and
``t5xxl_fp16`` in ``models/text_encoders``, ``ae`` in ``models/VAE``): tiny random ones (``app.devtools.tiny_flux``)
or, with ``--real-shaped``, random weights in the real shapes (the 12 B transformer and T5-XXL, bf16 on disk, about
34 GB written to ``--cache-dir``). Atelier loads them through its catalog and loader, as a user's files. The
baseline is ``FluxPipeline.__call__`` on the very modules Atelier loaded (the text encoders put on the compute
device for it, as ``pipe.to(device)`` users do). Both sides: Euler, the Simple schedule (the pipeline's sigmas with
its resolution-dependent shift), real CFG 1, distilled guidance 3.5, 256 T5 tokens, the same seed, one image.
Prints one JSON object: seconds per image (median of ABBA runs), ``app_vs_diffusers`` and, on CUDA, peak GPU
memory of each side.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.zimage import abba  # noqa: E402

PROMPT = "a red fox sitting in a snowy forest, golden hour light, detailed fur"


def log(message: str) -> None:
    print(f"[flux-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_real_shaped(data_dir: Path, device: str) -> dict[str, Path]:
    """Random weights in the real FLUX.1 dev shapes, written like the split files users have (bf16)."""
    import torch
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from app.configs import load_family_config
    from app.models.load import ldm_convert as lc
    from app.models.load.flux_convert import diffusers_to_original

    models = data_dir / "models"
    paths = {
        "diffusion_model": models / "diffusion_models" / "flux1-dev.safetensors",
        "clip_l": models / "text_encoders" / "clip_l.safetensors",
        "t5xxl": models / "text_encoders" / "t5xxl_fp16.safetensors",
        "vae": models / "VAE" / "ae.safetensors",
    }
    if all(p.is_file() for p in paths.values()):
        return paths
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    def save(sd: dict[str, Any], path: Path, dtype: Any) -> None:
        save_file({k: v.detach().to(dtype).cpu().contiguous() for k, v in sd.items()}, str(path))

    with torch.device(device):
        log("building the 12 B transformer (random, real shape)")
        tr = FluxTransformer2DModel(guidance_embeds=True).to(torch.bfloat16)
        save(diffusers_to_original(tr.state_dict()), paths["diffusion_model"], torch.bfloat16)
        del tr
        log("building T5-XXL (random, real shape)")
        t5 = T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                                     feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False))
        t5 = t5.to(torch.bfloat16)
        save({k: v for k, v in t5.state_dict().items() if k != "encoder.embed_tokens.weight"}, paths["t5xxl"],
             torch.bfloat16)
        del t5
        cfg = {k: v for k, v in load_family_config("sd1", "text_encoder").items() if k != "architectures"}
        clip = CLIPTextModel(CLIPTextConfig(**cfg))
        save({"text_model." + k.removeprefix("text_model."): v for k, v in clip.state_dict().items()},
             paths["clip_l"], torch.float16)
        vcfg = {k: v for k, v in load_family_config("zimage", "vae").items() if not k.startswith("_")}
        vae = AutoencoderKL.from_config(vcfg)
        save(lc.vae_to_ldm(vae.state_dict(), vcfg, prefix=""), paths["vae"], torch.float32)
        del vae
    if device != "cpu":
        torch.cuda.empty_cache()
    return paths


def bench_flux(data_dir: Path, policy: Any, size: int, steps: int, runs: int, key: str = "flux") -> dict[str, Any]:
    """ABBA runs of the app's job and of ``FluxPipeline.__call__`` on the same loaded modules (result keys start
    with *key*)."""
    import torch

    from bench.app_side import AppBench

    app = AppBench(data_dir, {"sd_checkpoint_cache": 1}, policy)
    try:
        ckpt = next(t for t in app.catalog.checkpoint_titles() if "flux1-dev" in t and "aio" not in t)  # or -Q8_0.gguf
        t0 = time.perf_counter()
        handle = app.manager.get(ckpt)
        load_s = time.perf_counter() - t0
        pipe = handle.loaded.pipe
        device = app.manager.policy.device if policy is not None else torch.device("cpu")
        params = app.params(ckpt, PROMPT, "", steps, size, size, 1.0, "Euler", 1234, 1)
        params.scheduler = "Simple"

        def run_app() -> Any:
            return app.run(params).images[0]

        def run_ref() -> Any:
            for te in (pipe.text_encoder, pipe.text_encoder_2):
                if te.device != device:
                    te.to(device)  # the baseline as users run it: every part on the compute device
            generator = torch.Generator("cpu").manual_seed(1234)
            vae_dtype = pipe.vae.dtype  # FluxPipeline decodes in the transformer's dtype: its users load all in one
            pipe.vae.to(pipe.transformer.dtype)
            try:
                return pipe(prompt=PROMPT, height=size, width=size, num_inference_steps=steps, guidance_scale=3.5,
                            generator=generator, max_sequence_length=256).images[0]
            finally:
                pipe.vae.to(vae_dtype)

        log(f"warm-up ({ckpt}, {size}², {steps} steps)")
        return {f"{key}_checkpoint": ckpt, f"{key}_size": size, f"{key}_steps": steps,
                f"{key}_load_s": round(load_s, 3), **abba(key, run_app, run_ref, runs, device, log)}
    finally:
        app.close()


def bench_flux_gguf(policy: Any, size: int, steps: int, runs: int) -> dict[str, Any]:
    """``bench_flux`` on the tiny FLUX.1 dev with a GGUF ``Q8_0`` diffusion model and T5 (keys ``flux_gguf_*``):
    the app and ``FluxPipeline`` run the same quantized modules."""
    import shutil

    from app.devtools.tiny_flux import write_tiny_flux
    from app.devtools.tiny_gguf import write_tiny_flux_gguf

    data_dir = Path(tempfile.mkdtemp(prefix="atelier-bench-flux-gguf-"))
    try:
        written = write_tiny_flux(data_dir, "dev")
        for label in ("flux:diffusion_model", "flux:t5xxl", "flux:all_in_one"):
            written[label].unlink()
        write_tiny_flux_gguf(data_dir, "Q8_0", "dev")
        return bench_flux(data_dir, policy, size, steps, runs, key="flux_gguf")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/flux.py", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps", "auto"))
    ap.add_argument("--real-shaped", action="store_true", help="random weights in the real shapes (about 34 GB)")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache-dir", type=Path, default=None, help="where the model files are written (kept)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from bench.run import device_policy, machine_info

    policy = device_policy(args.device, False)
    data_dir = args.cache_dir or Path(tempfile.mkdtemp(prefix="atelier-flux-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    if args.real_shaped:
        write_real_shaped(data_dir, "cuda" if policy is not None and policy.device.type == "cuda" else "cpu")
        size = args.size or 1024
    else:
        from app.devtools.tiny_flux import write_tiny_flux

        write_tiny_flux(data_dir, "dev")
        size = args.size or 64
    result: dict[str, Any] = {"machine": machine_info(), "real_shaped": args.real_shaped,
                              "device": "cpu, float32" if policy is None else policy.describe()}
    result.update(bench_flux(data_dir, policy, size, args.steps, args.runs))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
