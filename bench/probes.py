"""Benchmarks that need their own process: cold start of the server, peak RSS of SD upscale.

``cold_start(python)`` spawns ``python -m app --data-dir <empty tmp> --port <free> --test-server`` (the server process
alone: ``--test-server`` skips the warm-up that imports the generation stack and loads a model) and polls ``/`` until
it answers 200; ``warm_up=True`` leaves the warm-up on, as a user starts it. ``sd_upscale_rss(...)`` runs one SD-upscale job in a child process
(``python -m bench.probes sdupscale ...``) and returns the child's peak RSS, which the child reads
with ``resource.getrusage(RUSAGE_SELF)`` just before it exits.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def child_env(threads: int = 1) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        HF_HUB_OFFLINE="1",
        GRADIO_ANALYTICS_ENABLED="False",
        PYTHONPATH=str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
    )
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cold_start(python: str = sys.executable, timeout: float = 180.0, threads: int = 1, warm_up: bool = False) -> float:
    """Seconds from spawning the server (empty data dir, no model) to ``GET /`` answering 200; without ``warm_up``
    the server process alone (no torch import: ``tests/core/test_no_torch.py``)."""
    return cold_start_times(python, timeout, threads, warm_up)[0]


def cold_start_times(python: str = sys.executable, timeout: float = 180.0, threads: int = 1,
                     warm_up: bool = False) -> tuple[float, float | None]:
    """(wall seconds, CPU seconds of the server process) until ``GET /`` answers 200. The CPU time (user + system,
    read from ``/proc``; None where there is none) hardly depends on what else the machine runs."""
    with tempfile.TemporaryDirectory(prefix="atelier-bench-cold-") as data:
        port = free_port()
        cmd = [python, "-m", "app", "--data-dir", data, "--port", str(port), *(() if warm_up else ("--test-server",))]
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=child_env(threads), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        try:
            while True:
                if proc.poll() is not None:
                    err = proc.stderr.read()[-2000:] if proc.stderr else ""
                    raise RuntimeError(f"server exited with {proc.returncode} before serving /: {err}")
                if time.perf_counter() - start > timeout:
                    raise TimeoutError(f"server did not serve / within {timeout} s")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                        if resp.status == 200:
                            return time.perf_counter() - start, _cpu_seconds(proc.pid)
                except (urllib.error.URLError, ConnectionError, OSError):
                    pass
                time.sleep(0.1)
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process (Linux ``/proc/<pid>/stat``), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def sd_upscale_rss(
    data_dir: Path,
    checkpoint: str,
    size: int,
    scale: float,
    steps: int,
    cfg: float = 7.0,
    python: str = sys.executable,
    threads: int = 1,
    timeout: float = 1800,
) -> dict[str, Any]:
    """Run one SD upscale (``scale`` = 1 with upscaler None: a single tile pass) in a child; its report."""
    cmd = [
        python,
        "-m",
        "bench.probes",
        "sdupscale",
        "--data-dir",
        str(data_dir),
        "--checkpoint",
        checkpoint,
        "--size",
        str(size),
        "--scale",
        str(scale),
        "--steps",
        str(steps),
        "--cfg",
        str(cfg),
        "--threads",
        str(threads),
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=child_env(threads), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"sd upscale child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _sdupscale_child(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch
    from PIL import Image

    torch.set_num_threads(args.threads)
    from app.engine.modes.runners import run_img2img
    from app.models.catalog.index import Catalog
    from app.models.manager import ModelManager
    from app.models.optim import tune_allocator
    from app.params import GenerationParams, Img2ImgParams, ScriptParams, SeedParams
    from app.paths import Paths
    from app.settings import Settings

    tune_allocator()  # as the server does
    paths = Paths.from_data_dir(Path(args.data_dir))
    settings = Settings(None)
    manager = ModelManager(Catalog(paths), settings, None, paths=paths)  # with its upscaler registry
    rs = np.random.RandomState(5)
    init = Image.fromarray((rs.rand(args.size, args.size, 3) * 255).astype(np.uint8))
    upscaler = "None" if args.scale == 1 else "Lanczos"
    params = GenerationParams(
        prompt="a castle",
        steps=args.steps,
        width=args.size,
        height=args.size,
        sampler_name="Euler",
        checkpoint=args.checkpoint,
        cfg_scale=args.cfg,
        save_images=False,
        save_grid=False,
        seed=SeedParams(seed=1),
        img2img=Img2ImgParams(init_images=[init], denoising_strength=0.5),
        script=ScriptParams("SD upscale", [64, upscaler, args.scale]),
    )
    start, cpu = time.perf_counter(), time.process_time()
    result = run_img2img(manager, params, settings)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    return {
        "peak_rss_mb": peak_kb / 1024,
        "seconds": elapsed,
        "cpu_s": cpu,
        "out_size": list(result.images[0].size),
        "tile": args.size,
        "scale": args.scale,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probes")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("sdupscale", help="one SD upscale job; prints its peak RSS as JSON")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--scale", type=float, default=4.0)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--cfg", type=float, default=7.0)
    p.add_argument("--threads", type=int, default=1)
    c = sub.add_parser("coldstart", help="seconds to serve / from an empty data dir")
    c.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.cmd == "sdupscale":
        print(json.dumps(_sdupscale_child(args)))
    else:
        print(json.dumps({"cold_start_s": cold_start(threads=args.threads),
                          "cold_start_warmup_s": cold_start(threads=args.threads, warm_up=True)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
