"""``worker_overhead``: the same txt2img through the worker process ÷ through the in-process worker thread.

Two Runtimes over the same data dir and checkpoint, one per ``--worker`` mode, each warmed up (model loaded, one
1-step job); then alternating (ABBA) timed jobs of the same params (``save_images=False``), medians of the wall time
from submit to result. The process side pays for the pipe, PNG encoding and decoding of the images and the event
round trips; the ratio is the price of crash isolation. Also measured: this (server) process's RSS growth while the
process-mode Runtime loads the model and runs its jobs, next to the worker's RSS: the model lives once, in the worker.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import psutil


def _runtime(data_dir: Path, mode: str, settings: dict[str, Any]) -> Any:
    from app.cli import parse_args
    from app.runtime import Runtime

    rt = Runtime(parse_args(["--data-dir", str(data_dir), "--worker", mode, "--disable-console-progressbars",
                             "--no-hashing"], environ={}))
    for key, value in settings.items():
        rt.settings.set_quietly(key, value)
    rt.start()
    return rt


def bench_worker_overhead(data_dir: Path, ckpt: str, steps: int, size: int, sampler: str, runs: int,
                          settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Paired ABBA runs; returns ``worker_overhead`` and the numbers behind it."""
    from app.params import GenerationParams, SeedParams

    def params(n_steps: int) -> GenerationParams:
        return GenerationParams(prompt="a photo of a cat", negative_prompt="blurry", steps=n_steps, width=size,
                                height=size, sampler_name=sampler, seed=SeedParams(seed=1234), checkpoint=ckpt,
                                save_images=False, save_grid=False)

    me = psutil.Process()
    thread_rt = _runtime(data_dir, "thread", settings or {})
    thread_rt.load_checkpoint(ckpt)
    thread_rt.service.submit(params(1)).wait(1800)
    rss_before = me.memory_info().rss
    process_rt = _runtime(data_dir, "process", settings or {})
    try:
        process_rt.load_checkpoint(ckpt)
        process_rt.service.submit(params(1)).wait(1800)
        sides = {"thread": thread_rt, "process": process_rt}
        times: dict[str, list[float]] = {"thread": [], "process": []}
        for i in range(runs):
            order = ("thread", "process") if i % 2 == 0 else ("process", "thread")
            for side in order:
                t0 = time.perf_counter()
                result = sides[side].service.submit(params(steps)).wait(1800)
                times[side].append(time.perf_counter() - t0)
                assert result.images, f"{side} job returned no image"
        rss_after = me.memory_info().rss
        pid = process_rt.service.executor.pid
        worker_rss = psutil.Process(pid).memory_info().rss if pid else None
    finally:
        process_rt.shutdown()
        thread_rt.shutdown()
    med_thread = statistics.median(times["thread"])
    med_process = statistics.median(times["process"])
    growth = rss_after - rss_before
    return {
        "worker_overhead": med_process / med_thread if med_thread else None,
        "worker_thread_s": med_thread,
        "worker_process_s": med_process,
        "worker_thread_runs_s": times["thread"],
        "worker_process_runs_s": times["process"],
        "worker_server_rss_growth_mb": growth / 2**20,
        "worker_child_rss_mb": worker_rss / 2**20 if worker_rss else None,
        # the server gains far less than one model copy (the worker holds it)
        "worker_no_second_model_copy": bool(worker_rss and growth < 0.25 * worker_rss),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.worker [--quick] [--runs N]``: only the ``worker_overhead`` row (JSON on the last line)."""
    import argparse
    import json
    import os

    import torch

    from bench.run import FULL, QUICK, prepare_data, rounded

    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=main.__doc__)
    parser.add_argument("--quick", action="store_true", help="the tiny checkpoint instead of the SD1.5-shaped one")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--sampler", default="Euler a")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    mode = QUICK if args.quick else FULL
    data_dir, ckpt, _, tmp = prepare_data(mode, None)
    try:
        result = bench_worker_overhead(data_dir, ckpt, mode.steps, mode.size, args.sampler, args.runs or mode.runs)
    finally:
        if tmp is not None:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(rounded({"mode": mode.name, "steps": mode.steps, "size": mode.size, **result})), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
