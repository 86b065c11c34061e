"""GPU paths that the CPU test suite cannot reach: run on a CUDA machine, print one JSON object.

Usage (repository root, a CUDA machine)::

    python bench/gpu_checks.py [--out result.json] [--full-size]

Each check runs real jobs through Atelier's ``JobService`` on the GPU (tiny random-weight models,
and with ``--full-size`` the SD1.5-shaped checkpoint the benchmark writes) and records ``ok``,
the seconds it took and, when it failed, the error. A check that fails does not stop the others.

What is checked:

- fp16 txt2img with every sampler family (ancestral, multistep, SDE, Restart, UniPC, DDIM, LCM),
  and that the images are finite and not constant;
- the same seed on the CPU (fp32) and on CUDA (fp32 and fp16) with CPU noise: the images match
  closely (``RNG: CPU`` promises this); GPU and NV noise sources run;
- ``--medvram``, ``--lowvram``, ``--no-half-vae`` and ``--upcast-sampling`` policies;
- hires fix with a latent and with an ESRGAN model upscaler, img2img, inpaint, SD upscale, VAE tiling;
- a LoRA applied for one job on the GPU, and the weights restored bit-exactly afterwards;
- SDXL (tiny) in fp16; peak GPU memory of each job.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _policy(**flags: Any) -> Any:
    from app.devices import DevicePolicy

    return DevicePolicy.from_args(argparse.Namespace(**flags))


def _image_stats(images: list[Any]) -> dict[str, Any]:
    import numpy as np

    arrays = [np.asarray(im.convert("RGB"), dtype=np.float32) for im in images]
    return {
        "n": len(arrays),
        "size": list(images[0].size) if images else None,
        "std": [round(float(a.std()), 2) for a in arrays],
        "finite": all(bool(np.isfinite(a).all()) for a in arrays),
    }


def _max_diff(a: Any, b: Any) -> int:
    import numpy as np

    x = np.asarray(a.convert("RGB"), dtype=np.int16)
    y = np.asarray(b.convert("RGB"), dtype=np.int16)
    return int(np.abs(x - y).max())


def _unet_digest(unet: Any) -> str:
    h = hashlib.sha256()
    for key, value in sorted(unet.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


class Checks:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.results: dict[str, Any] = {}
        self._apps: dict[str, Any] = {}
        self.only: list[str] = []  # run only the checks whose name contains one of these

    def app(self, key: str = "fp16", **flags: Any) -> Any:
        from bench.app_side import AppBench

        if key not in self._apps:
            for other in list(self._apps):  # one service on the GPU at a time
                self._apps.pop(other).close()
            import torch

            torch.cuda.empty_cache()
            policy = None if key == "cpu" else _policy(**flags)
            self._apps[key] = AppBench(self.data_dir, {}, policy)
        return self._apps[key]

    def close(self) -> None:
        for app in self._apps.values():
            app.close()
        self._apps.clear()

    def run(self, name: str, fn: Any) -> None:
        import torch

        if self.only and not any(part in name for part in self.only):
            return
        print(f"[gpu-checks] {name}", file=sys.stderr, flush=True)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        try:
            detail = fn()
            entry: dict[str, Any] = {"ok": True, **(detail or {})}
        except Exception as exc:  # a failing check is a result, not the end of the run
            entry = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]}
        entry["seconds"] = round(time.perf_counter() - t0, 3)
        if torch.cuda.is_available():
            entry["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        self.results[name] = entry
        print(f"[gpu-checks] {name}: {'ok' if entry['ok'] else entry['error']}", file=sys.stderr, flush=True)


def job(app: Any, ckpt: str, **changes: Any) -> Any:
    from app.params import replace_nested

    base = app.params(ckpt, "a photo of a cat, detailed", "blurry", 8, 64, 64, 7.0, "Euler a", 1234, 1)
    params = replace_nested(base, **changes) if changes else base
    kind = "img2img" if params.img2img is not None else "txt2img"
    return app.service.submit(params, kind=kind).wait(3600)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/gpu_checks.py", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    ap.add_argument("--full-size", action="store_true", help="also run the SD1.5-shaped checkpoint at 512²")
    ap.add_argument("--cache-dir", type=Path, default=None, help="where the SD1.5-shaped checkpoint is (or goes)")
    ap.add_argument("--dry-run-on-cpu", action="store_true", help="run the checks on the CPU (to test this script)")
    ap.add_argument("--only", default="", help="comma-separated parts of check names: run only those")
    args = ap.parse_args(argv)

    import torch
    from PIL import Image

    from app.devtools.tiny_models import write_tiny_models
    from app.params import Img2ImgParams, ScriptParams

    if not torch.cuda.is_available() and not args.dry_run_on_cpu:
        print("gpu_checks: no CUDA device here", file=sys.stderr)
        return 2
    data_dir = Path(tempfile.mkdtemp(prefix="atelier-gpu-"))
    write_tiny_models(data_dir, families=("sd1", "sdxl"))
    from app.devtools.tiny_zimage import write_tiny_zimage

    write_tiny_zimage(data_dir)
    if args.full_size:
        root = args.cache_dir or data_dir
        big = root / "models" / "Stable-diffusion" / "sd15-shaped.safetensors"
        if not big.is_file():
            write_tiny_models(root, families=("sd1",), full_size=True)
        if root != data_dir:
            (data_dir / "models" / "Stable-diffusion" / big.name).symlink_to(big)
    checks = Checks(data_dir)
    checks.only = [part.strip() for part in args.only.split(",") if part.strip()]
    out: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }

    # -- precision and samplers ---------------------------------------------------------------
    samplers = ["Euler a", "Euler", "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 3M SDE", "Heun",
                "LMS", "DPM2 a", "Restart", "UniPC", "DDIM", "PLMS", "LCM", "DPM fast"]
    for sampler in samplers:
        checks.run(f"fp16 txt2img {sampler}", lambda s=sampler: _image_stats(
            job(checks.app("fp16"), "tiny-sd1", sampler_name=s).images))

    # -- the same seed on CPU and CUDA with CPU noise -----------------------------------------
    ref: dict[str, Any] = {}

    def cpu_ref() -> dict[str, Any]:
        ref["cpu"] = job(checks.app("cpu"), "tiny-sd1").images[0]
        return _image_stats([ref["cpu"]])

    checks.run("cpu fp32 reference", cpu_ref)

    def same_seed(key: str, **flags: Any) -> dict[str, Any]:
        image = job(checks.app(key, **flags), "tiny-sd1").images[0]
        return {"max_pixel_diff_vs_cpu": _max_diff(image, ref["cpu"]) if "cpu" in ref else None}

    checks.run("cuda fp32 same seed as cpu", lambda: same_seed("fp32", no_half=True))
    checks.run("cuda fp16 same seed as cpu", lambda: same_seed("fp16"))
    for source in ("GPU", "NV"):
        checks.run(f"randn_source {source}", lambda s=source: _image_stats(
            job(checks.app("fp16"), "tiny-sd1", override_settings={"randn_source": s}).images))

    # -- memory policies ----------------------------------------------------------------------
    for key, flags in {
        "medvram": {"medvram": True},
        "lowvram": {"lowvram": True},
        "no-half-vae": {"no_half_vae": True},
        "upcast-sampling": {"upcast_sampling": True},
    }.items():
        checks.run(f"policy {key}", lambda k=key, f=flags: _image_stats(
            job(checks.app(k, **f), "tiny-sd1", batch_size=2).images))

    # -- features -----------------------------------------------------------------------------
    app = lambda: checks.app("fp16")  # noqa: E731
    checks.run("hires latent", lambda: _image_stats(job(
        app(), "tiny-sd1", hires__enabled=True, hires__upscaler="Latent", hires__scale=2.0, hires__steps=4).images))
    checks.run("hires ESRGAN", lambda: _image_stats(job(
        app(), "tiny-sd1", hires__enabled=True, hires__upscaler="tiny-esrgan-4x", hires__scale=2.0,
        hires__steps=4).images))
    init = Image.new("RGB", (64, 64), (120, 80, 40))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    checks.run("img2img", lambda: _image_stats(job(
        app(), "tiny-sd1", img2img=Img2ImgParams(init_images=[init], denoising_strength=0.6)).images))
    checks.run("inpaint", lambda: _image_stats(job(
        app(), "tiny-sd1", img2img=Img2ImgParams(init_images=[init], mask=mask, denoising_strength=0.8)).images))
    checks.run("sd upscale", lambda: _image_stats(job(
        app(), "tiny-sd1", img2img=Img2ImgParams(init_images=[init], denoising_strength=0.4),
        script=ScriptParams("SD upscale", [16, "tiny-esrgan-4x", 2.0])).images))
    checks.run("vae tiling", lambda: _image_stats(job(
        app(), "tiny-sd1", width=256, height=256, override_settings={"vae_tiling_mp": 0.01}).images))

    def lora_restore() -> dict[str, Any]:
        a = app()
        unet = a.unet("tiny-sd1")
        before = _unet_digest(unet)
        plain = job(a, "tiny-sd1").images[0]
        with_lora = job(a, "tiny-sd1", prompt="a photo of a cat <lora:tiny-lora:1.0>").images[0]
        after = _unet_digest(a.unet("tiny-sd1"))
        return {"restored_bit_exact": before == after, "lora_changes_image": _max_diff(plain, with_lora) > 0}

    checks.run("lora apply and restore", lora_restore)
    checks.run("sdxl fp16", lambda: _image_stats(job(app(), "tiny-sdxl").images))

    # -- Z-Image (tiny, bf16 on the GPU; the text encoder parked in CPU memory between encodings) --------------
    zi = "z_image_turbo_bf16"

    def zjob(a: Any, **changes: Any) -> Any:
        base = {"sampler_name": "Euler", "scheduler": "Simple", "cfg_scale": 1.0, "steps": 8, "negative_prompt": ""}
        return job(a, zi, **{**base, **changes})

    for sampler in ("Euler", "Euler a", "DPM++ 2M", "res_multistep", "DPM++ 2M SDE", "UniPC"):
        checks.run(f"zimage txt2img {sampler}", lambda s=sampler: _image_stats(zjob(app(), sampler_name=s).images))
    checks.run("zimage cfg 4 with negative", lambda: _image_stats(zjob(app(), cfg_scale=4.0, negative_prompt="blurry").images))
    checks.run("zimage hires latent", lambda: _image_stats(zjob(
        app(), hires__enabled=True, hires__upscaler="Latent", hires__scale=2.0, hires__steps=4).images))
    checks.run("zimage img2img", lambda: _image_stats(zjob(
        app(), img2img=Img2ImgParams(init_images=[init], denoising_strength=0.6)).images))
    checks.run("zimage inpaint", lambda: _image_stats(zjob(
        app(), img2img=Img2ImgParams(init_images=[init], mask=mask, denoising_strength=0.8)).images))
    checks.run("zimage lora", lambda: _image_stats(zjob(app(), prompt="a cat <lora:tiny-zimage-lora:0.8>").images))
    for key, flags in {"medvram": {"medvram": True}, "lowvram": {"lowvram": True}}.items():
        checks.run(f"zimage policy {key}", lambda k=key, f=flags: _image_stats(zjob(checks.app(k, **f)).images))

    def zimage_same_seed() -> dict[str, Any]:
        cpu = zjob(checks.app("cpu")).images[0]
        gpu = zjob(checks.app("fp32", no_half=True)).images[0]
        return {"max_pixel_diff_cuda_fp32_vs_cpu": _max_diff(cpu, gpu)}

    checks.run("zimage cuda fp32 same seed as cpu", zimage_same_seed)

    if args.full_size:
        for sampler in ("Euler a", "DPM++ 2M"):
            checks.run(f"sd15-shaped 512² 20 steps fp16 {sampler}", lambda s=sampler: _image_stats(job(
                app(), "sd15-shaped", sampler_name=s, width=512, height=512, steps=20).images))
        checks.run("sd15-shaped 512² batch 4 fp16", lambda: _image_stats(job(
            app(), "sd15-shaped", width=512, height=512, steps=20, batch_size=4).images))
        checks.run("sd15-shaped hires 512→1024 fp16", lambda: _image_stats(job(
            app(), "sd15-shaped", width=512, height=512, steps=20, hires__enabled=True, hires__scale=2.0,
            hires__steps=10, hires__upscaler="Latent").images))
        checks.run("sd15-shaped 512² lowvram", lambda: _image_stats(job(
            checks.app("lowvram", lowvram=True), "sd15-shaped", width=512, height=512, steps=4).images))
    checks.close()
    out["checks"] = checks.results
    out["failed"] = [name for name, entry in checks.results.items() if not entry["ok"]]
    text = json.dumps(out)
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
