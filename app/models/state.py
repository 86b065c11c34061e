"""What the server process shows about models that only the generation side knows: the loaded checkpoint and the
textual-inversion embeddings checked against it.

The UI and the API read `runtime.model_state` (a :class:`ModelState`) instead of reaching into the model manager,
so that reading never creates the manager (which imports torch): the server process stays torch-free. Today the
state is read from the in-process manager once one exists (the warm-up or the first job creates it); when generation
moves into a worker process, the worker's reports fill the same object (`report_loaded`, `report_embeddings`) and the
readers do not change. Everything that lives in files (checkpoints, VAEs, LoRAs, upscalers) comes from the catalog,
not from here.

Pure module: no torch import.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["LoadedModel", "ModelState"]


@dataclass(frozen=True)
class LoadedModel:
    """The model the generation side has loaded, as the server shows it (the fields a UI or API client reads)."""

    title: str
    sha256: str | None = None
    #: the loaded family id ("sd1", "sd1-inpaint", "zimage", ...)
    family: str = "sd1"
    #: the catalog entry (`app.models.catalog.checkpoint.CheckpointInfo`) when known
    info: Any = None
    #: the size grid of the loaded model (`app.params.size_multiple` reads it); None = the default 8
    size_multiple: int | None = None


class ModelState:
    """The loaded model and the embeddings as last reported; `manager_source()` gives the in-process manager when
    one exists (None otherwise) and is only read, never used to create one."""

    def __init__(self, manager_source: Callable[[], Any] | None = None,
                 manager_factory: Callable[[], Any] | None = None) -> None:
        self._manager_source = manager_source
        #: creates the in-process manager: only the embeddings list still asks for it (until a worker reports
        #: embeddings, the in-process manager is the one place that reads and checks them; that imports torch)
        self._manager_factory = manager_factory
        self._lock = threading.Lock()
        self._loaded: LoadedModel | None = None
        self._embeddings: dict[str, dict[str, Any]] | None = None

    # -- written by the generation side ---------------------------------------------------------------------------
    def report_loaded(self, loaded: LoadedModel | None) -> None:
        """The worker loaded (or unloaded: None) a model."""
        with self._lock:
            self._loaded = loaded

    def report_embeddings(self, response: dict[str, dict[str, Any]] | None) -> None:
        """The worker's embeddings as `GET /sdapi/v1/embeddings` shows them (`{"loaded": ..., "skipped": ...}`)."""
        with self._lock:
            self._embeddings = response

    # -- read by the UI and the API -------------------------------------------------------------------------------
    def manager(self) -> Any:
        """The in-process model manager if one was created, else None (never creates one)."""
        return self._manager_source() if self._manager_source is not None else None

    def loaded(self) -> LoadedModel | None:
        """The loaded model: the in-process manager's current handle, else the last report, else None."""
        handle = getattr(self.manager(), "current", None)
        if handle is not None:
            info = getattr(handle, "info", None)
            title = str(getattr(handle, "title", "") or getattr(info, "title", "") or "")
            loaded = getattr(handle, "loaded", None)
            multiple = getattr(handle, "size_multiple", None)
            return LoadedModel(title=title, sha256=getattr(handle, "sha256", None) or getattr(info, "sha256", None),
                               family=str(getattr(loaded, "family", "sd1") or "sd1"), info=info,
                               size_multiple=multiple if isinstance(multiple, int) else None)
        with self._lock:
            return self._loaded

    def loaded_handle(self) -> Any:
        """What `app.params.size_multiple` reads: the manager's handle in process, else the reported model."""
        handle = getattr(self.manager(), "current", None)
        return handle if handle is not None else self.loaded()

    def embedding_database(self, create: bool = False) -> Any:
        """The in-process manager's embeddings database; None when no manager exists (`create`: make one when
        no worker has reported embeddings either)."""
        manager = self.manager()
        if manager is None and create and self._manager_factory is not None:
            with self._lock:
                reported = self._embeddings is not None
            if not reported:
                manager = self._manager_factory()
        return getattr(manager, "embeddings", None)

    def embeddings(self) -> dict[str, dict[str, Any]]:
        """`{"loaded": {...}, "skipped": {...}}` as `GET /sdapi/v1/embeddings` answers: the in-process manager's
        database (re-read when the files changed), else the worker's last report, else empty."""
        db = self.embedding_database(create=True)
        if db is not None:
            db.refresh_if_changed()
            return dict(db.api_response())
        with self._lock:
            return dict(self._embeddings) if self._embeddings is not None else {"loaded": {}, "skipped": {}}
