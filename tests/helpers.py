"""Waiting helpers for tests: wait on the real event (a job's progress listener) or poll a condition with a
deadline, instead of sleeping a fixed time. Both fail the test with a message when the deadline passes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
               message: str | Callable[[], str] = "") -> T:
    """Call `predicate` until it returns a truthy value and return that value; fail after `timeout` seconds.

    For states only visible by asking (a server in a subprocess, a queue size). `predicate` may raise to fail
    early (e.g. when the server process has exited). `message` (or a callable giving it, e.g. a log tail read
    at the time of the failure) is added to the failure."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"not reached within {timeout:g}s" + (f": {text}" if text else ""))
        time.sleep(interval)


def wait_for_step(job: Any, step: int, timeout: float = 60.0) -> None:
    """Block until `job` (app.jobs.job.Job) has reported sampling step `step` (or ended): its progress listener
    sets an event, so the test reacts to the step itself."""
    reached = threading.Event()

    def on_event(event: str, j: Any) -> None:
        if j.progress.sampling_step >= step or j.done:
            reached.set()

    job.add_listener(on_event)
    on_event("check", job)  # the step may have come before the listener
    assert reached.wait(timeout), f"job {job.id} did not reach sampling step {step} within {timeout:g}s"
    assert not job.done or job.progress.sampling_step >= step, f"job {job.id} ended before step {step}"



def _libc_prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, resolved in the test process (not in a forked child, where loading a library could block)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except OSError:
        return None


_PRCTL = _libc_prctl()


def die_with_parent() -> None:
    """``preexec_fn`` for test servers started with ``subprocess.Popen``: on Linux the child gets SIGTERM when the test
    process that started it dies (a pytest run killed by a timeout otherwise leaves its servers running). Elsewhere a
    no-op. Only a libc call runs between fork and exec."""
    if _PRCTL is not None:
        _PRCTL(1, 15)  # PR_SET_PDEATHSIG, SIGTERM


def ui_with_extension(tiny_data_dir: Any, data: Any, extension: str) -> Any:
    """Generator for a module fixture: a started Runtime over a copy of the tiny SD models (SD1 only) with the test
    fixture extension *extension* installed in the data dir *data*, and its built UI; yields
    ``(runtime, demo, ui)`` and shuts the runtime down after."""
    import shutil
    from pathlib import Path

    from app.cli import parse_args
    from app.runtime import Runtime
    from app.ui import build_blocks

    fixture = Path(__file__).resolve().parent / "fixtures" / "extensions" / extension
    shutil.copytree(Path(tiny_data_dir) / "models", Path(data) / "models",
                    ignore=shutil.ignore_patterns("tiny-sd2v*", "tiny-sdxl*"))
    shutil.copytree(fixture, Path(data) / "extensions" / extension)
    runtime = Runtime(parse_args(["--data-dir", str(data)], environ={}))
    runtime.start()
    demo, ui = build_blocks(runtime)
    yield runtime, demo, ui
    runtime.shutdown()
