"""Z-Image: Atelier's whole txt2img job against diffusers' own ``ZImagePipeline`` on the same weights.

Usage (repository root)::

    python bench/zimage.py [--device cpu|cuda|auto] [--size 64] [--steps 8] [--runs 5]
    python bench/zimage.py --real-shaped --device cuda --size 1024 --steps 8 --runs 3   # a GPU with ~40 GB

The files are the ComfyUI split layout (``models/diffusion_models``, ``models/text_encoders``, ``models/VAE``):
tiny random ones (``app.devtools.tiny_zimage``) or, with ``--real-shaped``, random weights in the real
shapes (the 6 B transformer, Qwen3-4B and the FLUX VAE, bf16 on disk, about 20 GB written to ``--cache-dir``).
Atelier loads them through its catalog and loader, as a user's files. The baseline is diffusers'
``ZImagePipeline.__call__`` on the very modules Atelier loaded (so both sides use the same weights, dtypes and
device; the text encoder is put on the compute device for the baseline, as ``pipe.to(device)`` users do).
Both sides: Euler, the Simple schedule with shift 3 (the pipeline's default sigmas), CFG 1 (the pipeline's
``guidance_scale=0``), the same seed, one image. Prints one JSON object: seconds per image (median of ABBA
runs), ``app_vs_diffusers`` and, on CUDA, peak GPU memory of each side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PROMPT = "a red fox sitting in a snowy forest, golden hour light, detailed fur"


def log(message: str) -> None:
    print(f"[zimage-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_real_shaped(data_dir: Path, device: str) -> dict[str, Path]:
    """Random weights in the real Z-Image Turbo shapes, written like Comfy-Org's split files (bf16)."""
    import torch
    from diffusers import AutoencoderKL, ZImageTransformer2DModel
    from safetensors.torch import save_file
    from transformers import Qwen3Config, Qwen3Model

    from app.configs import load_family_config
    from app.models.load import ldm_convert as lc
    from app.models.load.zimage_convert import diffusers_to_original

    models = data_dir / "models"
    paths = {
        "diffusion_model": models / "diffusion_models" / "z_image_turbo_bf16.safetensors",
        "text_encoder": models / "text_encoders" / "qwen_3_4b.safetensors",
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
        log("building the 6 B transformer (random, real shape)")
        cfg = {k: v for k, v in load_family_config("zimage", "transformer").items() if not k.startswith("_")}
        tr = ZImageTransformer2DModel.from_config(cfg).to(torch.bfloat16)
        save(diffusers_to_original(tr.state_dict()), paths["diffusion_model"], torch.bfloat16)
        del tr
        log("building Qwen3-4B (random, real shape)")
        te_cfg = {k: v for k, v in load_family_config("zimage", "text_encoder").items() if k != "architectures"}
        te = Qwen3Model(Qwen3Config(**te_cfg)).to(torch.bfloat16)
        save({"model." + k: v for k, v in te.state_dict().items()}, paths["text_encoder"], torch.bfloat16)
        del te
        vcfg = {k: v for k, v in load_family_config("zimage", "vae").items() if not k.startswith("_")}
        vae = AutoencoderKL.from_config(vcfg)
        save(lc.vae_to_ldm(vae.state_dict(), vcfg, prefix=""), paths["vae"], torch.float32)
        del vae
    if device != "cpu":
        torch.cuda.empty_cache()
    return paths


def _peak_reset(torch: Any, device: Any) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(torch: Any, device: Any) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def abba(prefix: str, run_app: Any, run_ref: Any, runs: int, device: Any, log: Any) -> dict[str, Any]:
    """One warm-up each, then ``runs`` alternating (ABBA) timed runs of the app's job and of the pipeline call;
    the ``<prefix>_*`` keys: medians, ratio, every run, peak GPU memory of each side, last images' max difference."""
    import numpy as np
    import torch

    run_app()
    run_ref()
    times: dict[str, list[float]] = {"app": [], "ref": []}
    peaks: dict[str, float | None] = {}
    images: dict[str, Any] = {}
    for i in range(runs):
        for side in (("app", "ref") if i % 2 == 0 else ("ref", "app")):
            _peak_reset(torch, device)
            t0 = time.perf_counter()
            images[side] = run_app() if side == "app" else run_ref()
            times[side].append(time.perf_counter() - t0)
            peaks[side] = _peak_mb(torch, device)
        log(f"run {i + 1}/{runs}: app {times['app'][-1]:.3f} s, diffusers {times['ref'][-1]:.3f} s")
    a = np.asarray(images["app"], dtype=np.int16)
    b = np.asarray(images["ref"], dtype=np.int16)
    app_med, ref_med = statistics.median(times["app"]), statistics.median(times["ref"])
    return {
        f"{prefix}_app_s": round(app_med, 4),
        f"{prefix}_diffusers_s": round(ref_med, 4),
        f"{prefix}_app_vs_diffusers": round(app_med / ref_med, 4),
        f"{prefix}_app_runs_s": [round(t, 4) for t in times["app"]],
        f"{prefix}_diffusers_runs_s": [round(t, 4) for t in times["ref"]],
        f"{prefix}_app_peak_gpu_mb": peaks.get("app"),
        f"{prefix}_diffusers_peak_gpu_mb": peaks.get("ref"),
        f"{prefix}_max_pixel_diff_vs_diffusers": int(np.abs(a - b).max()) if a.shape == b.shape else None,
    }


def bench_zimage(data_dir: Path, policy: Any, size: int, steps: int, runs: int) -> dict[str, Any]:
    """ABBA runs of the app's job and of ``ZImagePipeline.__call__`` on the same loaded modules."""
    import torch

    from bench.app_side import AppBench

    app = AppBench(data_dir, {"sd_checkpoint_cache": 1}, policy)
    try:
        titles = app.catalog.checkpoint_titles()
        ckpt = next(t for t in titles if "z_image" in t)
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
            te = pipe.text_encoder
            if te.device != device:
                te.to(device)  # the baseline as users run it: every part on the compute device
            generator = torch.Generator("cpu").manual_seed(1234)
            return pipe(prompt=PROMPT, height=size, width=size, num_inference_steps=steps, guidance_scale=0.0,
                        generator=generator).images[0]

        log(f"warm-up ({ckpt}, {size}², {steps} steps)")
        return {"zimage_checkpoint": ckpt, "zimage_size": size, "zimage_steps": steps,
                "zimage_load_s": round(load_s, 3), **abba("zimage", run_app, run_ref, runs, device, log)}
    finally:
        app.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/zimage.py", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps", "auto"))
    ap.add_argument("--real-shaped", action="store_true", help="random weights in the real shapes (about 20 GB)")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache-dir", type=Path, default=None, help="where the model files are written (kept)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from bench.run import device_policy, machine_info

    policy = device_policy(args.device, False)
    data_dir = args.cache_dir or Path(tempfile.mkdtemp(prefix="atelier-zimage-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    if args.real_shaped:
        write_real_shaped(data_dir, "cuda" if policy is not None and policy.device.type == "cuda" else "cpu")
        size = args.size or 1024
    else:
        from app.devtools.tiny_zimage import write_tiny_zimage

        write_tiny_zimage(data_dir)
        size = args.size or 64
    result: dict[str, Any] = {"machine": machine_info(), "real_shaped": args.real_shaped,
                              "device": "cpu, float32" if policy is None else policy.describe()}
    result.update(bench_zimage(data_dir, policy, size, args.steps, args.runs))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
