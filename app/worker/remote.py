"""``RemoteModels``: the server's view of the model manager that lives in the worker process.

With ``--worker process`` the server holds no weights. What it reads of the manager (the loaded model's title and
sha256 for ``/sdapi/v1/options`` ``sd_model_checkpoint``, the size grid for the API's size checks, ``shared.sd_model``
for extensions' UI code) comes from the state the worker reports with every job (``ModelState``, cached here), and
what it asks of it (load, reload, unload) becomes a named model operation (``app.worker.ops``) queued on the job
service, so it runs in the worker in queue order. Pure module: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelState:
    """The worker's active model as the server sees it (duck-types the fields of a ``ModelHandle`` it reads)."""

    title: str
    sha256: str | None = None
    filename: str = ""
    family: str = ""
    is_sdxl: bool = False
    size_multiple: int = 8

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ModelState | None:
        if not data or not data.get("title"):
            return None
        return cls(title=str(data["title"]), sha256=data.get("sha256"), filename=str(data.get("filename") or ""),
                   family=str(data.get("family") or ""), is_sdxl=bool(data.get("is_sdxl")),
                   size_multiple=int(data.get("size_multiple") or 8))

    @property
    def info(self) -> ModelState:
        """``handle.info`` (title, sha256, filename) in the server: the same object."""
        return self

    @property
    def loaded(self) -> ModelState:
        """``handle.loaded`` (family, is_sdxl) in the server: the same object."""
        return self

    @property
    def model_name(self) -> str:
        name = self.filename.replace("\\", "/").rsplit("/", 1)[-1] or self.title.split(" [", 1)[0]
        return name.rsplit(".", 1)[0] if "." in name else name


_EMPTY = {"loaded": {}, "skipped": {}}


class RemoteEmbeddings:
    """``manager.embeddings`` in the server: the worker's textual-inversion database, asked through the named
    operation ``list_embeddings``. While a job runs the last answer is shown (the route must not wait for a
    generation); when the worker is idle it is asked (for at most ``timeout`` s), and the first time the answer is
    waited for (``first_timeout`` s: the worker may still be starting or loading the model)."""

    def __init__(self, service_provider: Any, timeout: float = 30.0, first_timeout: float = 600.0) -> None:
        self._service_provider = service_provider
        self._timeout = timeout
        self._first_timeout = first_timeout
        self._cache: dict[str, Any] | None = None

    def _ask(self, force: bool) -> None:
        timeout = self._timeout if self._cache is not None else self._first_timeout
        try:
            value = self._service_provider().model_op("list_embeddings", timeout=timeout, force=force)
        except TimeoutError:
            return  # busy: the last answer stays
        if isinstance(value, dict):
            self._cache = value

    def refresh_if_changed(self) -> None:
        """Nothing here: the worker checks its folders whenever it is asked."""

    def load(self, expected_dims: Any = None, force: bool = True) -> None:
        """``/refresh-embeddings``: the worker rereads every file."""
        self._ask(force=True)

    def api_response(self) -> dict[str, Any]:
        if self._cache is None or self._service_provider().current is None:
            self._ask(force=False)
        return dict(self._cache or _EMPTY)


class RemoteModels:
    """What the server uses of the model manager (see module doc); ``service_provider()`` is the runtime's job
    service. ``on_state(state)`` (optional) hears every report, e.g. to record the model's sha256 in the catalog."""

    def __init__(self, service_provider: Any, on_state: Any = None) -> None:
        self._service_provider = service_provider
        self._on_state = on_state
        self.current: ModelState | None = None
        #: the worker owns the embeddings database; this asks it
        self.embeddings = RemoteEmbeddings(service_provider)

    def update(self, state: dict[str, Any] | None) -> None:
        """The worker's report (after each job, at start, after a restart)."""
        self.current = ModelState.from_dict(state)
        if self._on_state is not None and self.current is not None:
            self._on_state(self.current)

    def _op(self, kind: str, timeout: float | None = None, **params: Any) -> ModelState | None:
        value = self._service_provider().model_op(kind, timeout=timeout, **params)
        state = ModelState.from_dict(value) if isinstance(value, dict) else None
        if kind != "model_info":
            self.current = state
        return state

    def get(self, checkpoint: str | None = None) -> ModelState | None:
        """Load *checkpoint* (title/alias; empty = the setting, else the first) in the worker, in queue order."""
        return self._op("load_model", title=checkpoint or None)

    def reload(self, checkpoint: str | None = None) -> ModelState | None:
        return self._op("reload_model", title=checkpoint or None)

    def unload(self) -> None:
        self._op("unload_model")
        self.current = None
