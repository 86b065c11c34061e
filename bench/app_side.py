"""The Atelier side of the benchmark: a service over a data dir, and a UNet timer.

``AppBench`` wires the same objects the server builds (``Paths`` → ``Catalog`` → ``ModelManager``
→ ``JobService``) with in-memory settings, and submits ``GenerationParams`` jobs with
``save_images=False``. ``UNetTimer`` measures the time spent inside a module's ``forward`` with
forward pre/post hooks (the module's public seam; nothing is patched).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class UNetTimer:
    """Accumulates time inside ``module.forward`` and the span from the first call to the last.

    ``clock`` is ``time.perf_counter`` (wall) or ``time.thread_time`` (CPU of the calling thread,
    robust when other processes share the cores).
    """

    clock: Callable[[], float] = time.perf_counter
    inside: float = 0.0
    calls: int = 0
    first_start: float | None = None
    last_end: float | None = None
    _start: float = 0.0
    _handles: list[Any] = field(default_factory=list)

    def attach(self, module: torch.nn.Module) -> UNetTimer:
        param = next(module.parameters(), None)
        device = param.device if param is not None else None
        if device is not None and device.type == "cuda" and self.clock is time.perf_counter:
            self._sync = lambda: torch.cuda.synchronize(device)
        self._handles = [
            module.register_forward_pre_hook(self._pre),
            module.register_forward_hook(self._post),
        ]
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def reset(self) -> None:
        self.inside, self.calls, self.first_start, self.last_end = 0.0, 0, None, None

    #: Synchronise a CUDA device around each forward, so the wall time inside is the kernels' time
    #: and not only their launch (set by ``attach`` for a module on a CUDA device).
    _sync: Callable[[], None] | None = None

    def _pre(self, module: Any, args: Any) -> None:
        if self._sync is not None:
            self._sync()
        self._start = self.clock()
        if self.first_start is None:
            self.first_start = self._start

    def _post(self, module: Any, args: Any, output: Any) -> None:
        if self._sync is not None:
            self._sync()
        self.last_end = self.clock()
        self.inside += self.last_end - self._start
        self.calls += 1

    @property
    def span(self) -> float:
        """Seconds from the first UNet call to the end of the last one (the sampling loop)."""
        if self.first_start is None or self.last_end is None:
            return 0.0
        return self.last_end - self.first_start

    @property
    def outside_share(self) -> float | None:
        """Fraction of the sampling span spent outside the UNet forward."""
        span = self.span
        return None if span <= 0 else max(0.0, 1.0 - self.inside / span)


class AppBench:
    """Atelier's service over *data_dir* (see module doc)."""

    def __init__(self, data_dir: Path, settings_overrides: dict[str, Any] | None = None, device_policy: Any = None):
        from app.engine.modes.runners import RUNNERS
        from app.jobs.service import JobService
        from app.models.catalog.index import Catalog
        from app.models.embeddings import EmbeddingDatabase
        from app.models.manager import ModelManager
        from app.models.optim import tune_allocator
        from app.paths import Paths
        from app.settings import Settings

        self.allocator_tuned = tune_allocator()  # as create_manager does for the server (whole process)
        self.paths = Paths.from_data_dir(Path(data_dir))
        self.settings = Settings(None)
        for key, value in (settings_overrides or {}).items():
            self.settings.set(key, value, save=False)
        self.catalog = Catalog(self.paths)
        self.manager = ModelManager(
            self.catalog,
            self.settings,
            device_policy,  # None: the CPU in fp32
            embeddings=EmbeddingDatabase(self.paths.embeddings_dirs),
            paths=self.paths,
        )
        self.service = JobService(self.manager, self.settings, self.paths, runners=RUNNERS)
        self.service.start()

    def params(
        self,
        checkpoint: str,
        prompt: str,
        negative: str,
        steps: int,
        width: int,
        height: int,
        cfg: float,
        sampler: str,
        seed: int,
        batch: int,
    ) -> Any:
        from app.params import GenerationParams, SeedParams

        return GenerationParams(
            prompt=prompt,
            negative_prompt=negative,
            steps=steps,
            width=width,
            height=height,
            cfg_scale=cfg,
            sampler_name=sampler,
            checkpoint=checkpoint,
            batch_size=batch,
            seed=SeedParams(seed=seed),
            save_images=False,
            save_grid=False,
        )

    def run(self, params: Any, timeout: float = 3600) -> Any:
        return self.service.submit(params).wait(timeout)

    def unet(self, checkpoint: str) -> torch.nn.Module:
        return self.manager.get(checkpoint).loaded.pipe.unet

    def close(self) -> None:
        self.service.shutdown()
