"""Atelier vs bare diffusers: the same txt2img work through both, alternating runs, medians.

Usage (from the repository root)::

    nice -n 5 python bench/run.py --quick          # tiny checkpoint, a few minutes on 2 cores
    nice -n 5 python bench/run.py                  # SD1.5-shaped random checkpoint (cached), 256², 2 steps

Progress goes to stderr; the last stdout line is one JSON object (see ``docs/BENCHMARKS.md``):
``app_vs_diffusers`` (median app time / median diffusers time for the same checkpoint file, sampler,
steps, size, seed and batch), ``nonunet_share`` (fraction of the app's sampling time outside the
UNet forward), ``forever_vs_diffusers``, ``cold_start_s``, ``switch_warm_s``, ``worker_overhead`` (the same txt2img
through the worker process ÷ the in-process thread; ``python -m bench.worker`` runs that row alone) and
``sdupscale_rss_ratio``, plus the raw numbers behind them.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # ``python bench/run.py`` puts bench/, not the repository, on sys.path
    sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

PROMPT = "a photo of a cat sitting on a wooden table, detailed, soft light"
NEGATIVE = "blurry, low quality"


@dataclass(frozen=True)
class Mode:
    name: str
    steps: int
    size: int
    batch: int
    cfg: float
    runs: int  # timed runs per side
    forever_images: int
    forever_reps: int
    cold_runs: int
    switch_runs: int


QUICK = Mode(
    "quick", steps=8, size=128, batch=1, cfg=7.0, runs=7, forever_images=5, forever_reps=2, cold_runs=1, switch_runs=3
)
FULL = Mode(
    "full", steps=2, size=256, batch=1, cfg=7.0, runs=3, forever_images=5, forever_reps=2, cold_runs=2, switch_runs=3
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def rounded(value: Any, digits: int = 4) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return value


def machine_info() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    import diffusers

    gpu = None
    if torch.cuda.is_available():
        gpu = f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}"
    return {
        "gpu": gpu,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": mem_gb,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "loadavg_1m": load,
    }


# ------------------------------------------------------------------------------ checkpoints
def prepare_data(mode: Mode, cache_dir: Path | None) -> tuple[Path, str, str, Path | None]:
    """(data dir, checkpoint A name, checkpoint B name, temp dir to delete or None)."""
    from app.devtools.tiny_models import write_tiny_models

    if mode.name == "quick":
        tmp = Path(tempfile.mkdtemp(prefix="atelier-bench-"))
        log(f"writing the tiny models into {tmp}")
        written = write_tiny_models(tmp, families=("sd1",))
        a = written["ckpt:sd1"]
        shutil.copy(a, a.with_name("tiny-sd1-b.safetensors"))
        return tmp, "tiny-sd1", "tiny-sd1-b", tmp
    root = (cache_dir or Path.home() / ".cache" / "atelier" / "bench").expanduser()
    ckpt = root / "models" / "Stable-diffusion" / "sd15-shaped.safetensors"
    tiny = root / "models" / "Stable-diffusion" / "tiny-sd1.safetensors"
    if not ckpt.is_file() or not tiny.is_file():
        log(f"writing the SD1.5-shaped checkpoint into {root} (once; ~30 s, 2.1 GB)")
        write_tiny_models(root, families=("sd1",), full_size=True)
    other = ckpt.with_name("sd15-shaped-b.safetensors")
    if not other.exists():
        try:
            os.link(ckpt, other)  # same bytes, another file: the manager caches by path
        except OSError:
            shutil.copy(ckpt, other)
    return root, "sd15-shaped", "sd15-shaped-b", None


def checkpoint_path(data_dir: Path, name: str) -> Path:
    return data_dir / "models" / "Stable-diffusion" / f"{name}.safetensors"


# ------------------------------------------------------------------------------ timing
@dataclass
class Sample:
    wall: float
    cpu: float
    outside_wall: float | None = None
    outside_cpu: float | None = None


def timed(fn: Callable[[], Any], timers: Sequence[Any] = ()) -> tuple[Sample, Any]:
    for t in timers:
        t.reset()
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    s = Sample(time.perf_counter() - w0, time.process_time() - c0)
    if timers:
        s.outside_wall, s.outside_cpu = timers[0].outside_share, timers[1].outside_share
    return s, out


def device_policy(device: str, no_half: bool) -> Any:
    """The Atelier ``DevicePolicy`` for ``--device`` (None for the CPU: fp32, as the server picks there)."""
    if device == "cpu":
        return None
    from app.devices import DevicePolicy

    policy = DevicePolicy.from_args(argparse.Namespace(no_half=no_half))
    if device != "auto" and policy.device.type != device:
        raise SystemExit(f"--device {device}: torch finds no such device here (it would use {policy.device})")
    return policy


def bench_generation(app: Any, pipe: Any, ckpt: str, mode: Mode, sampler: str) -> dict[str, Any]:
    """Alternating (ABBA) runs of the same txt2img through the service and through the diffusers pipeline."""
    import numpy as np

    from bench import reference
    from bench.app_side import UNetTimer

    seeds = [1234 + i for i in range(mode.batch)]
    params = app.params(
        ckpt, PROMPT, NEGATIVE, mode.steps, mode.size, mode.size, mode.cfg, sampler, seeds[0], mode.batch
    )

    def run_app():
        return app.run(params).images

    def run_ref():
        return reference.generate(pipe, PROMPT, NEGATIVE, mode.steps, mode.size, mode.size, mode.cfg, seeds)

    app_timers = [
        UNetTimer(clock=time.perf_counter).attach(app.unet(ckpt)),
        UNetTimer(clock=time.thread_time).attach(app.unet(ckpt)),
    ]
    ref_timers = [
        UNetTimer(clock=time.perf_counter).attach(pipe.unet),
        UNetTimer(clock=time.thread_time).attach(pipe.unet),
    ]
    log("warm-up (one 1-step run each, not timed)")
    warm = app.params(ckpt, PROMPT, NEGATIVE, 1, mode.size, mode.size, mode.cfg, sampler, seeds[0], mode.batch)
    app.run(warm)
    reference.generate(pipe, PROMPT, NEGATIVE, 1, mode.size, mode.size, mode.cfg, seeds)
    app_s: list[Sample] = []
    ref_s: list[Sample] = []
    app_images = ref_images = None
    try:
        for i in range(mode.runs):
            order = ("app", "ref") if i % 2 == 0 else ("ref", "app")
            for side in order:
                if side == "app":
                    s, app_images = timed(run_app, app_timers)
                    app_s.append(s)
                else:
                    s, ref_images = timed(run_ref, ref_timers)
                    ref_s.append(s)
            log(f"run {i + 1}/{mode.runs}: app {app_s[-1].wall:.3f} s, diffusers {ref_s[-1].wall:.3f} s")
    finally:
        for t in app_timers + ref_timers:
            t.detach()
    diff = None
    if app_images and ref_images:
        a = np.asarray(app_images[0], dtype=np.int16)
        b = np.asarray(ref_images[0], dtype=np.int16)
        diff = int(np.abs(a - b).max()) if a.shape == b.shape else None

    def med(samples: list[Sample], attr: str) -> float | None:
        return median([getattr(s, attr) for s in samples if getattr(s, attr) is not None])

    return {
        "app_s": med(app_s, "wall"),
        "diffusers_s": med(ref_s, "wall"),
        "app_vs_diffusers": ratio(med(app_s, "wall"), med(ref_s, "wall")),
        "app_cpu_s": med(app_s, "cpu"),
        "diffusers_cpu_s": med(ref_s, "cpu"),
        "app_vs_diffusers_cpu": ratio(med(app_s, "cpu"), med(ref_s, "cpu")),
        "nonunet_share": med(app_s, "outside_wall"),
        "nonunet_share_cpu": med(app_s, "outside_cpu"),
        "diffusers_nonunet_share": med(ref_s, "outside_wall"),
        "diffusers_nonunet_share_cpu": med(ref_s, "outside_cpu"),
        "app_runs_s": [s.wall for s in app_s],
        "diffusers_runs_s": [s.wall for s in ref_s],
        "app_cpu_runs_s": [s.cpu for s in app_s],
        "diffusers_cpu_runs_s": [s.cpu for s in ref_s],
        "max_pixel_diff_vs_diffusers": diff,
    }


def bench_forever(app: Any, pipe: Any, ckpt: str, mode: Mode, sampler: str) -> dict[str, Any]:
    """Images/minute of a generate-forever run of N images vs a diffusers loop of N random-seed images."""
    from bench import reference

    n = mode.forever_images
    params = app.params(ckpt, PROMPT, NEGATIVE, mode.steps, mode.size, mode.size, mode.cfg, sampler, -1, 1)
    try:
        from app.ui.forever import ForeverLoop

        method = "app.ui.forever.ForeverLoop (server-side loop, seed -1)"
    except ImportError:
        ForeverLoop = None  # noqa: N806
        method = f"{n} sequential service jobs with random seeds"

    def run_app() -> None:
        if ForeverLoop is None:
            for _ in range(n):
                app.run(params)
            return
        loop = ForeverLoop(lambda: app.service, "txt2img", max_jobs=n)
        loop.start(params)
        loop.wait()
        state = loop.snapshot()
        if state.generation != n or state.error:
            raise RuntimeError(f"generate forever made {state.generation}/{n} images: {state.error}")

    rng = random.Random(7)

    def run_ref() -> None:
        for _ in range(n):
            reference.generate(
                pipe, PROMPT, NEGATIVE, mode.steps, mode.size, mode.size, mode.cfg, [rng.randrange(2**32)]
            )

    app_t: list[float] = []
    ref_t: list[float] = []
    app_c: list[float] = []
    ref_c: list[float] = []
    for i in range(mode.forever_reps):
        for side in ("app", "ref") if i % 2 == 0 else ("ref", "app"):
            s = timed(run_app if side == "app" else run_ref)[0]
            (app_t if side == "app" else ref_t).append(s.wall)
            (app_c if side == "app" else ref_c).append(s.cpu)
        log(
            f"forever {i + 1}/{mode.forever_reps}: app {app_t[-1]:.2f} s, diffusers loop {ref_t[-1]:.2f} s ({n} images)"
        )
    app_ipm = 60.0 * n / median(app_t)
    ref_ipm = 60.0 * n / median(ref_t)
    return {
        "forever_method": method,
        "forever_images": n,
        "forever_ipm": app_ipm,
        "diffusers_loop_ipm": ref_ipm,
        "forever_vs_diffusers": app_ipm / ref_ipm,
        "forever_vs_diffusers_cpu": median(ref_c) / median(app_c),
        "forever_runs_s": {"app": app_t, "diffusers": ref_t},
    }


def bench_switch(app: Any, a: str, b: str, runs: int) -> dict[str, Any]:
    """Load A (done already), load B (cold), then time switching between them with the RAM cache."""
    manager = app.manager
    manager.get(a)
    w0 = time.perf_counter()
    manager.get(b)
    cold = time.perf_counter() - w0
    warm: list[float] = []
    for _ in range(runs):
        w0 = time.perf_counter()
        manager.get(a)
        warm.append(time.perf_counter() - w0)
        manager.get(b)
    manager.get(a)
    return {
        "switch_warm_s": median(warm),
        "switch_cold_s": cold,
        "switch_warm_runs_s": warm,
        "checkpoint_cache": app.settings.get("sd_checkpoint_cache"),
    }


# ------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny checkpoint; a few minutes on 2 cores")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="full mode: where the SD1.5-shaped checkpoint is written once (default ~/.cache/atelier/bench)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "cuda", "mps", "auto"),
        help="where both sides run (default cpu, fp32); on a GPU both run in fp16 unless --no-half",
    )
    p.add_argument("--no-half", action="store_true", help="GPU: fp32 weights on both sides")
    p.add_argument("--sampler", default="Euler a", help="Euler, Euler a or DPM++ 2M (default Euler a)")
    p.add_argument("--runs", type=int, default=None, help="timed runs per side (default 7 quick, 3 full)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--size", type=int, default=None, help="width = height (default 128 quick, 256 full)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--skip", default="",
                   help="comma list of parts to skip: forever,coldstart,switch,worker,zimage,flux,flux_gguf,sd3,sdupscale")
    p.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="Atelier setting for the app side, e.g. --setting torch_compile=true (repeatable)",
    )
    p.add_argument(
        "--sdupscale-size", type=int, default=None, help="SD upscale input / tile size (default 256 quick, 512 full)"
    )
    return p


def _settings_overrides(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--setting {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _on_tiny_files(name: str, write: Callable[[Path], Any], bench: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """A family row: its tiny files written into a fresh temporary data dir, the bench run on them, the dir removed."""
    folder = Path(tempfile.mkdtemp(prefix=f"atelier-bench-{name}-"))
    try:
        write(folder)
        return bench(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    base = QUICK if args.quick else FULL
    mode = Mode(
        base.name,
        args.steps or base.steps,
        args.size or base.size,
        args.batch or base.batch,
        base.cfg,
        args.runs or base.runs,
        base.forever_images,
        base.forever_reps,
        base.cold_runs,
        base.switch_runs,
    )
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from bench import probes, reference
    from bench.app_side import AppBench

    started = time.perf_counter()
    result: dict[str, Any] = {
        "mode": mode.name,
        "threads": args.threads,
        "sampler": args.sampler,
        "steps": mode.steps,
        "size": mode.size,
        "batch": mode.batch,
        "cfg": mode.cfg,
        "runs": mode.runs,
    }
    result["machine"] = machine_info()
    data_dir, ckpt_a, ckpt_b, tmp = prepare_data(mode, args.cache_dir)
    result["checkpoint"] = ckpt_a
    app = None
    try:
        settings = _settings_overrides(args.setting)
        settings.setdefault("sd_checkpoint_cache", max(1, int(settings.get("sd_checkpoint_cache", 2))))
        result["app_settings"] = settings
        policy = device_policy(args.device, args.no_half)
        result["device"] = "cpu, float32" if policy is None else policy.describe()
        app = AppBench(data_dir, settings, policy)
        result["allocator_tuned"] = app.allocator_tuned
        path = checkpoint_path(data_dir, ckpt_a)
        config_dir = reference.write_config_folder(path, Path(tempfile.mkdtemp(prefix="atelier-bench-cfg-")))
        log(f"loading {path.name} in diffusers (from_single_file) and in Atelier")
        t0 = time.perf_counter()
        if policy is None:
            pipe = reference.load_reference_pipeline(path, config_dir, args.sampler)
        else:
            pipe = reference.load_reference_pipeline(path, config_dir, args.sampler, str(policy.device), policy.dtype)
        result["diffusers_load_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        app.manager.get(ckpt_a)
        result["app_load_s"] = time.perf_counter() - t0
        result.update(bench_generation(app, pipe, ckpt_a, mode, args.sampler))
        if "forever" not in skip:
            result.update(bench_forever(app, pipe, ckpt_a, mode, args.sampler))
        del pipe
        gc.collect()
        if "switch" not in skip:
            log("checkpoint switch")
            result.update(bench_switch(app, ckpt_a, ckpt_b, mode.switch_runs))
        app.close()
        app = None
        if "worker" not in skip:
            log("worker_overhead: the same txt2img through the worker process and the in-process thread (ABBA)")
            from bench.worker import bench_worker_overhead

            result.update(bench_worker_overhead(data_dir, ckpt_a, mode.steps, mode.size, args.sampler, mode.runs,
                                                settings))
        if "coldstart" not in skip:
            log("cold start: python -m app on an empty data dir (server alone, then with the warm-up)")
            timed_runs = [probes.cold_start_times(threads=args.threads) for _ in range(mode.cold_runs)]
            runs = [wall for wall, _ in timed_runs]
            cpu = [c for _, c in timed_runs if c is not None]
            result["cold_start_s"], result["cold_start_runs_s"] = median(runs), runs
            result["cold_start_cpu_s"] = median(cpu) if cpu else None
            runs = [probes.cold_start(threads=args.threads, warm_up=True) for _ in range(mode.cold_runs)]
            result["cold_start_warmup_s"], result["cold_start_warmup_runs_s"] = median(runs), runs
        if "zimage" not in skip:
            log("Z-Image: the app's job vs ZImagePipeline on the same tiny split files")
            from app.devtools.tiny_zimage import write_tiny_zimage
            from bench.zimage import bench_zimage

            result.update(_on_tiny_files("zimage", write_tiny_zimage,
                                         lambda d: bench_zimage(d, policy, 64, 8, mode.runs)))
        if "flux" not in skip:
            log("FLUX.1 dev: the app's job vs FluxPipeline on the same tiny split files")
            from app.devtools.tiny_flux import write_tiny_flux
            from bench.flux import bench_flux

            result.update(_on_tiny_files("flux", lambda d: write_tiny_flux(d, "dev"),
                                         lambda d: bench_flux(d, policy, 64, 20, mode.runs)))
        if "sd3" not in skip:
            log("SD3.5 medium: the app's job vs StableDiffusion3Pipeline on the same tiny split files")
            from app.devtools.tiny_sd3 import write_tiny_sd3
            from bench.sd3 import bench_sd3

            result.update(_on_tiny_files("sd3", write_tiny_sd3,
                                         lambda d: bench_sd3(d, policy, 64, 20, mode.runs)))
        if "flux_gguf" not in skip:
            log("FLUX.1 dev GGUF Q8_0: the app's job vs FluxPipeline on the same quantized modules")
            from bench.flux import bench_flux_gguf

            result.update(bench_flux_gguf(policy, 64, 20, mode.runs))
        if "sdupscale" not in skip:
            size = args.sdupscale_size or (256 if mode.name == "quick" else 512)
            result.update(bench_sdupscale(data_dir, size, args.threads))
    finally:
        if app is not None:
            app.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    result["total_s"] = time.perf_counter() - started
    print(json.dumps(rounded(result)), flush=True)
    return 0


def bench_sdupscale(data_dir: Path, size: int, threads: int) -> dict[str, Any]:
    """Peak RSS of a 4x SD upscale of size² (tiles of size², overlap 64) / one size² tile pass, tiny model."""
    from bench import probes

    try:
        import app.engine.modes.sd_upscale  # noqa: F401
    except ImportError as exc:
        return {"sdupscale_rss_ratio": None, "sdupscale_note": f"app.engine.modes.sd_upscale not available: {exc}"}
    log(f"SD upscale RSS: one {size}² tile pass, then 4x of {size}² (child processes, tiny model)")
    common = dict(data_dir=data_dir, checkpoint="tiny-sd1", size=size, steps=2, cfg=1.0, threads=threads)
    tile = probes.sd_upscale_rss(scale=1.0, **common)
    big = probes.sd_upscale_rss(scale=4.0, **common)
    return {
        "sdupscale_rss_ratio": big["peak_rss_mb"] / tile["peak_rss_mb"],
        "sdupscale_rss_mb": big["peak_rss_mb"],
        "tile_pass_rss_mb": tile["peak_rss_mb"],
        "sdupscale_s": big["seconds"],
        "tile_pass_s": tile["seconds"],
        "sdupscale_note": f"tiny-sd1, Euler, 2 steps at denoise 0.5, cfg 1, Lanczos 4x, {size}² tiles overlap 64",
    }


if __name__ == "__main__":
    raise SystemExit(main())
