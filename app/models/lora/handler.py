"""The ``<lora:…>`` / ``<lyco:…>`` extra-network handler the engine calls for each job.

``register_lora_handlers(registry)`` registers it under ``lora`` and ``lyco`` in a model manager's
``extra_networks`` registry (``app.prompts.extra_networks.ExtraNetworkRegistry``; the Runtime does this). The engine calls ``activate(plan, items)`` for each batch with the first
prompt's tags of that type and ``deactivate(plan)`` once after the job (in a ``finally``). Per job:

1. every tag is resolved through the catalog (alias or file name; one rescan on a miss). A missing
   network adds the warning ``Lora not found: <name>`` and the job goes on without it;
2. the parsed files come from a small LRU (``NetworkCache``, keyed by path + mtime + size);
3. the networks are patched into the job's model (``apply.apply_networks``; refusals and unknown keys
   become job warnings). A batch asking for what is already applied changes nothing;
4. when a text encoder changed, the prompt encoder's ``state_key`` gets the applied set, so cached
   conds are never reused across different text-encoder weights; embeddings bundled in a network are
   added to the encoder's embeddings for the job (an embedding of the same name that is already loaded
   wins, like A1111);
5. the infotext gets ``Lora hashes: "name: hash12, …"`` (setting ``lora_add_hashes_to_infotext``).

``deactivate`` restores the original weights bit for bit, the encoder's ``state_key`` and embeddings.
``model_changed`` (the refiner took over, or the job's model came back) does the same for the model that ran until
now and applies the job's networks to ``plan.model``, as A1111's Lora extension patches whichever model runs; what
does not fit that model is skipped with a warning naming it, and the ``Lora hashes`` infotext stays the job model's.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from app.engine.conditioning import ExtraNetworkHandler
from app.models.lora.apply import apply_networks, restore_networks
from app.models.lora.bundled import bundled_embeddings
from app.models.lora.network import Network, NetworkCache, NetworkError
from app.prompts.extra_networks import ExtraNetworkRegistry, lora_weights

log = logging.getLogger(__name__)

NETWORK_TYPES = ("lora", "lyco")
_UNSET = object()


@dataclass
class _JobState:
    plan: Any
    pipe: Any
    encoder: Any
    requests: dict[str, list[Any]] = field(default_factory=dict)  # type → ExtraNetworkParams
    warned: set[str] = field(default_factory=set)
    old_state_key: Any = _UNSET
    old_embeddings: Any = _UNSET
    home: str = ""  # the job's model (title)
    where: str = ""  # warning prefix naming the model when it is not the job's own (the refiner)


def _title(model: Any) -> str:
    return str(getattr(getattr(model, "info", None), "title", "") or "")


def _hash_name(name: str) -> str:
    return name.replace(":", "").replace(",", "")


class LoraNetworks:
    """Shared state of the ``lora`` and ``lyco`` handlers (see module doc)."""

    def __init__(self, catalog: Any = None, cache: NetworkCache | None = None) -> None:
        self.catalog = catalog  # None: the job's ``plan.manager.catalog``
        self.cache = cache if cache is not None else NetworkCache()
        self._jobs: dict[int, _JobState] = {}
        self._lock = threading.RLock()

    # ---- engine hook
    def activate(self, plan: Any, kind: str, items: list[Any]) -> None:
        weights = [(p.positional[0] if p.positional else "", *lora_weights(p)) for p in items]  # bad numbers raise here
        with self._lock:
            state = self._jobs.get(id(plan))
            if state is None or state.plan is not plan:
                state = self._jobs[id(plan)] = _JobState(plan, plan.model.loaded.pipe, plan.encoder,
                                                         home=_title(plan.model))
            state.requests[kind] = weights
            try:
                self._apply(state)
            except BaseException:
                self.deactivate(plan)  # the engine only deactivates handlers whose activate returned
                raise

    def deactivate(self, plan: Any) -> None:
        with self._lock:
            state = self._jobs.pop(id(plan), None)
            if state is None or state.plan is not plan:  # not ours (handler re-registered mid-job?): still restore
                pipe = getattr(getattr(getattr(plan, "model", None), "loaded", None), "pipe", None)
                if pipe is not None:
                    restore_networks(pipe)
                return
            self._release(state)

    def model_changed(self, plan: Any) -> None:
        """Move the job's networks from the model that ran to ``plan.model`` (module doc)."""
        with self._lock:
            state = self._jobs.get(id(plan))
            if state is None or state.plan is not plan:
                return
            pipe = plan.model.loaded.pipe
            if pipe is state.pipe and plan.encoder is state.encoder:
                return
            self._release(state)
            state.pipe, state.encoder = pipe, plan.encoder
            state.old_state_key = state.old_embeddings = _UNSET
            title = _title(plan.model)
            state.where = "" if title == state.home else f"{title}: "
            try:
                self._apply(state, infotext=False)
            except BaseException:
                self._jobs.pop(id(plan), None)
                self._release(state)
                raise

    # ---- internals
    @staticmethod
    def _release(state: _JobState) -> None:
        """The model *state* patched gets its exact weights back, its encoder its cache key and embeddings."""
        try:
            restore_networks(state.pipe)
        finally:
            if state.old_state_key is not _UNSET:
                state.encoder.state_key = state.old_state_key
            if state.old_embeddings is not _UNSET:
                state.encoder.embeddings = state.old_embeddings

    def _warn(self, state: _JobState, message: str) -> None:
        message = state.where + message
        if message not in state.warned:
            state.warned.add(message)
            state.plan.warn(message)

    def _catalog(self, plan: Any) -> Any:
        catalog = self.catalog if self.catalog is not None else getattr(getattr(plan, "manager", None), "catalog", None)
        if catalog is None:
            raise RuntimeError("LoRA: no catalog to look networks up in")
        return catalog

    def _find(self, catalog: Any, name: str) -> Any:
        info = catalog.find_lora(name)
        if info is None and hasattr(catalog, "refresh_loras"):
            catalog.refresh_loras()  # a file added since the last scan
            info = catalog.find_lora(name)
        return info

    def _apply(self, state: _JobState, infotext: bool = True) -> None:
        plan = state.plan
        catalog = self._catalog(plan)
        requests: list[tuple[Network, float, float]] = []
        found: list[tuple[str, Any, Network]] = []  # (name as mentioned, LoraInfo, network)
        errors: list[str] = []
        for kind in NETWORK_TYPES:
            for name, te, unet, _dyn in state.requests.get(kind, []):
                info = self._find(catalog, name) if name else None
                if info is None:
                    self._warn(state, f"Lora not found: {name}")
                    continue
                try:
                    net = self.cache.get(info.filename, name=name)
                except NetworkError as exc:
                    errors.append(name)
                    self._warn(state, f"LoRA {name!r} skipped: {exc}")
                    continue
                requests.append((net, te, unet))
                found.append((name, info, net))
        result = apply_networks(state.pipe, requests)
        for message in result.warnings:
            self._warn(state, message)
        errors += list(result.refused)
        if errors:  # A1111 shows this as a comment; here it is a job warning (never an infotext key)
            self._warn(state, "Networks with errors: " + ", ".join(dict.fromkeys(errors)))
        self._set_encoder(state, result.te_signature, list(result.applied))
        if infotext and bool(plan.settings.get("lora_add_hashes_to_infotext", True)):
            applied = {id(net) for net in result.applied}
            hashes: dict[str, str] = {}
            for name, info, net in found:
                digest = self._hash(catalog, info, state) if id(net) in applied else None
                if digest:
                    hashes.setdefault(_hash_name(name), digest[:12])
            if hashes:
                plan.extra["Lora hashes"] = ", ".join(f"{k}: {v}" for k, v in hashes.items())
            else:
                plan.extra.pop("Lora hashes", None)

    def _hash(self, catalog: Any, info: Any, state: _JobState) -> str | None:
        try:
            return catalog.lora_hash(info) if hasattr(catalog, "lora_hash") else info.hash
        except Exception as exc:  # a hash failure never stops generation
            self._warn(state, f"LoRA {info.name!r}: could not compute its hash ({exc})")
            return None

    def _set_encoder(self, state: _JobState, te_signature: Any, applied: list[Network]) -> None:
        encoder = state.encoder
        if encoder is None:
            return
        if te_signature is not None or state.old_state_key is not _UNSET:
            if state.old_state_key is _UNSET:
                state.old_state_key = getattr(encoder, "state_key", None)
            encoder.state_key = state.old_state_key if te_signature is None else (state.old_state_key, te_signature)
        extra, warnings = bundled_embeddings(applied, encoder)
        for message in warnings:
            self._warn(state, message)
        if extra or state.old_embeddings is not _UNSET:
            if state.old_embeddings is _UNSET:
                state.old_embeddings = encoder.embeddings
            base = state.old_embeddings
            current = dict(getattr(base, "embeddings", base) or {})
            for name, emb in extra.items():
                if name in current:
                    self._warn(
                        state, f"bundled embedding {name!r} of LoRA {emb.network_name!r} skipped: already loaded"
                    )
                else:
                    current[name] = emb
            encoder.embeddings = current if extra else base


class LoraTypeHandler(ExtraNetworkHandler):
    """The object registered for one tag type; forwards to the shared ``LoraNetworks``."""

    def __init__(self, shared: LoraNetworks, kind: str) -> None:
        self.shared = shared
        self.kind = kind

    def activate(self, plan: Any, items: list[Any]) -> None:
        self.shared.activate(plan, self.kind, items)

    def deactivate(self, plan: Any) -> None:
        self.shared.deactivate(plan)

    def model_changed(self, plan: Any) -> None:
        self.shared.model_changed(plan)


def register_lora_handlers(registry: ExtraNetworkRegistry, catalog: Any = None,
                           cache: NetworkCache | None = None) -> LoraNetworks:
    """Register the ``lora`` and ``lyco`` handlers in *registry* (a model manager's ``extra_networks``)."""
    current = registry.get("lora")
    if catalog is None and cache is None and isinstance(current, LoraTypeHandler):
        shared = current.shared  # already registered: keep the jobs it tracks
    else:
        shared = LoraNetworks(catalog, cache)
    for kind in NETWORK_TYPES:
        registry.register(kind, LoraTypeHandler(shared, kind))
    return shared


def unregister_lora_handlers(registry: ExtraNetworkRegistry) -> None:
    """Remove the handlers from *registry* (tests)."""
    for kind in NETWORK_TYPES:
        registry.unregister(kind)
