"""SD3.5 medium: Atelier's whole txt2img job against diffusers' own ``StableDiffusion3Pipeline`` on the same weights.

Usage (repository root)::

    python bench/sd3.py [--device cpu|cuda|auto] [--size 64] [--steps 20] [--runs 5]

The files are ComfyUI's split layout, tiny and random (``app.devtools.tiny_sd3``: ``sd3.5_medium.safetensors`` in
``models/diffusion_models``, ``clip_l`` / ``clip_g`` / a T5 in ``models/text_encoders``, ``sd3_vae`` in
``models/VAE``). Atelier loads them through its catalog and loader, as a user's files. The baseline is
``StableDiffusion3Pipeline.__call__`` on the very modules Atelier loaded (the text encoders put on the compute device
for it, as ``pipe.to(device)`` users do). Both sides: Euler, the Simple schedule (the pipeline is given its sigmas,
see ``tests/families/test_sd3_reference.py``), CFG 4.5 with a negative prompt, shift 3, 256 T5 tokens, the same seed,
one image. Prints one JSON object: seconds per image (median of ABBA runs), ``app_vs_diffusers`` and, on CUDA, peak
GPU memory of each side.
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
NEGATIVE = "blurry, low quality"
CFG = 4.5


def log(message: str) -> None:
    print(f"[sd3-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def bench_sd3(data_dir: Path, policy: Any, size: int, steps: int, runs: int) -> dict[str, Any]:
    """ABBA runs of the app's job and of ``StableDiffusion3Pipeline.__call__`` on the same loaded modules."""
    import numpy as np
    import torch

    from bench.app_side import AppBench

    app = AppBench(data_dir, {"sd_checkpoint_cache": 1}, policy)
    try:
        ckpt = next(t for t in app.catalog.checkpoint_titles() if t.startswith("sd3.5_medium."))
        t0 = time.perf_counter()
        handle = app.manager.get(ckpt)
        load_s = time.perf_counter() - t0
        pipe = handle.loaded.pipe
        device = app.manager.policy.device if policy is not None else torch.device("cpu")
        params = app.params(ckpt, PROMPT, NEGATIVE, steps, size, size, CFG, "Euler", 1234, 1)
        params.scheduler = "Simple"
        simple = list(np.linspace(1.0, 1.0 / steps, steps))

        def run_app() -> Any:
            return app.run(params).images[0]

        def run_ref() -> Any:
            for te in (pipe.text_encoder, pipe.text_encoder_2, pipe.text_encoder_3):
                if te.device != device:
                    te.to(device)  # the baseline as users run it: every part on the compute device
            generator = torch.Generator("cpu").manual_seed(1234)
            return pipe(prompt=PROMPT, negative_prompt=NEGATIVE, height=size, width=size, num_inference_steps=steps,
                        sigmas=simple, guidance_scale=CFG, generator=generator, max_sequence_length=256).images[0]

        log(f"warm-up ({ckpt}, {size}², {steps} steps)")
        return {"sd3_checkpoint": ckpt, "sd3_size": size, "sd3_steps": steps, "sd3_load_s": round(load_s, 3),
                **abba("sd3", run_app, run_ref, runs, device, log)}
    finally:
        app.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/sd3.py", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps", "auto"))
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from app.devtools.tiny_sd3 import write_tiny_sd3
    from bench.run import device_policy, machine_info

    policy = device_policy(args.device, False)
    data_dir = Path(tempfile.mkdtemp(prefix="atelier-sd3-"))
    write_tiny_sd3(data_dir)
    result: dict[str, Any] = {"machine": machine_info(), "device": "cpu, float32" if policy is None else policy.describe()}
    result.update(bench_sd3(data_dir, policy, args.size, args.steps, args.runs))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
