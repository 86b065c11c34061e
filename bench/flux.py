"""FLUX.1 dev: Atelier's whole txt2img job against diffusers' own ``FluxPipeline`` on the same weights.

Usage (repository root)::

    python bench/flux.py [--device cpu|cuda|auto] [--size 64] [--steps 20] [--runs 5]
    python bench/flux.py --real-shaped --device cuda --size 1024 --steps 20 --runs 3   # a GPU with ~60 GB
    python bench/flux.py --real-shaped --gguf Q8_0 --device cuda --runs 2 --cache-dir /tmp/flux-q8   # GGUF row
    python bench/flux.py --real-shaped --gguf Q8_0 --shape small --steps 2 --runs 1   # the same code, CPU, seconds

The files are ComfyUI's split layout (``flux1-dev.safetensors`` in ``models/diffusion_models``, ``clip_l`` and
``t5xxl_fp16`` in ``models/text_encoders``, ``ae`` in ``models/VAE``): tiny random ones (``app.devtools.tiny_flux``)
or, with ``--real-shaped``, random weights in the real shapes (the 12 B transformer and T5-XXL, bf16 on disk, about
34 GB written to ``--cache-dir``; with ``--gguf Q8_0`` the transformer is city96's ``flux1-dev-Q8_0.gguf`` layout
instead, 12.7 GB, written tensor by tensor by ``bench.flux_gguf``, and the result keys are ``flux_gguf_*``). Atelier loads them through its catalog and loader, as a user's files. The
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


def write_real_shaped(data_dir: Path, device: str, transformer: str = "bf16", shape: str = "full") -> dict[str, Path]:
    """Random weights in the real FLUX.1 dev shapes, written like the split files users have: the transformer in
    bf16 (``flux1-dev.safetensors``) or, with *transformer* ``Q8_0``, as city96's ``flux1-dev-Q8_0.gguf``
    (``bench.flux_gguf``: written tensor by tensor); T5-XXL and CLIP-L in bf16 / fp16, the VAE in fp32. *shape*
    ``small``: the transformer reduced (``flux_gguf.transformer_config``) and the tiny text encoders and VAE of
    ``app.devtools.tiny_flux`` (a CPU check of the same code). Files already in *data_dir* are kept."""
    import torch
    from safetensors.torch import save_file

    from bench.flux_gguf import transformer_config, write_flux_gguf

    models = data_dir / "models"
    dm_name = "flux1-dev-Q8_0.gguf" if transformer == "Q8_0" else "flux1-dev.safetensors"
    paths = {
        "diffusion_model": models / "diffusion_models" / dm_name,
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

    if not paths["diffusion_model"].is_file():
        if transformer == "Q8_0":
            log(f"writing the {shape} transformer as GGUF Q8_0, tensor by tensor on {device}")
            write_flux_gguf(paths["diffusion_model"], shape, device, log=log)
        else:
            from diffusers import FluxTransformer2DModel

            from app.models.load.flux_convert import diffusers_to_original

            log(f"building the {shape} transformer (random)")
            with torch.device(device):
                tr = FluxTransformer2DModel(**transformer_config(shape)).to(torch.bfloat16)
            save(diffusers_to_original(tr.state_dict()), paths["diffusion_model"], torch.bfloat16)
            del tr
    if shape == "small":
        import shutil

        from app.devtools.tiny_flux import write_tiny_flux

        tiny = write_tiny_flux(data_dir / "tiny-parts", "dev")
        for label in ("clip_l", "t5xxl", "vae"):
            tiny[f"flux:{label}"].replace(paths[label])
        shutil.rmtree(data_dir / "tiny-parts")
        return paths
    _write_real_parts(paths, device, save)
    if device != "cpu":
        torch.cuda.empty_cache()
    return paths


def _write_real_parts(paths: dict[str, Path], device: str, save: Any) -> None:
    """T5-XXL, CLIP-L and the FLUX VAE in their real shapes, random (those not written yet)."""
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from app.configs import load_family_config
    from app.models.load import ldm_convert as lc

    with torch.device(device):
        if not paths["t5xxl"].is_file():
            log("building T5-XXL (random, real shape)")
            t5 = T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                                         num_heads=64, feed_forward_proj="gated-gelu", is_encoder_decoder=False,
                                         use_cache=False)).to(torch.bfloat16)
            save({k: v for k, v in t5.state_dict().items() if k != "encoder.embed_tokens.weight"}, paths["t5xxl"],
                 torch.bfloat16)
            del t5
        if not paths["clip_l"].is_file():
            cfg = {k: v for k, v in load_family_config("sd1", "text_encoder").items() if k != "architectures"}
            clip = CLIPTextModel(CLIPTextConfig(**cfg))
            save({"text_model." + k.removeprefix("text_model."): v for k, v in clip.state_dict().items()},
                 paths["clip_l"], torch.float16)
        if not paths["vae"].is_file():
            vcfg = {k: v for k, v in load_family_config("zimage", "vae").items() if not k.startswith("_")}
            vae = AutoencoderKL.from_config(vcfg)
            save(lc.vae_to_ldm(vae.state_dict(), vcfg, prefix=""), paths["vae"], torch.float32)


def bench_flux(data_dir: Path, policy: Any, size: int, steps: int, runs: int, key: str = "flux",
               quant: str | None = None) -> dict[str, Any]:
    """ABBA runs of the app's job and of ``FluxPipeline.__call__`` on the same loaded modules (result keys start
    with *key*); the diffusion model is the ``flux1-dev`` file whose name has *quant* (``Q8_0``), else the one
    without a GGUF quantization in its name."""
    import torch

    from bench.app_side import AppBench

    app = AppBench(data_dir, {"sd_checkpoint_cache": 1}, policy)
    try:
        ckpt = next(t for t in app.catalog.checkpoint_titles() if "flux1-dev" in t and "aio" not in t
                    and (quant in t if quant else "Q8_0" not in t))
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
        return bench_flux(data_dir, policy, size, steps, runs, key="flux_gguf", quant="Q8_0")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/flux.py", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps", "auto"))
    ap.add_argument("--real-shaped", action="store_true", help="random weights in the real shapes (about 34 GB)")
    ap.add_argument("--gguf", choices=("Q8_0",), default=None,
                    help="the diffusion model as a GGUF file of this quantization (with --real-shaped: 12.7 GB)")
    ap.add_argument("--shape", choices=("full", "small"), default="full",
                    help="with --real-shaped: small = reduced transformer and tiny parts (a quick CPU check)")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache-dir", type=Path, default=None, help="where the model files are written (kept)")
    args = ap.parse_args(argv)
    if args.gguf and not args.real_shaped:
        ap.error("--gguf needs --real-shaped (add --shape small for a quick check); the tiny GGUF row is bench/run.py's")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from bench.run import device_policy, machine_info

    policy = device_policy(args.device, False)
    data_dir = args.cache_dir or Path(tempfile.mkdtemp(prefix="atelier-flux-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.real_shaped:
        device = "cuda" if policy is not None and policy.device.type == "cuda" else "cpu"
        write_real_shaped(data_dir, device, args.gguf or "bf16", args.shape)
        size = args.size or (1024 if args.shape == "full" else 64)
    else:
        from app.devtools.tiny_flux import write_tiny_flux

        write_tiny_flux(data_dir, "dev")
        size = args.size or 64
    result: dict[str, Any] = {"machine": machine_info(), "real_shaped": args.real_shaped, "shape": args.shape,
                              "gguf": args.gguf, "write_s": round(time.perf_counter() - t0, 1),
                              "device": "cpu, float32" if policy is None else policy.describe()}
    key = "flux_gguf" if args.gguf else "flux"
    result.update(bench_flux(data_dir, policy, size, args.steps, args.runs, key=key, quant=args.gguf))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
