"""The model catalog: every checkpoint, VAE, LoRA, embedding and upscaler file a user has, with A1111's
names, titles, hashes and lookup aliases (spec §5, §9.2, §3.2, §2).

Pure module (no torch): scanning reads file names, a 64 KiB slice for the old hash, safetensors JSON
headers and cached sha256 values; full hashes are computed only by `ensure_hash` / `vae_hash` /
`lora_hash` / `embedding_hash` (never with `no_hashing`).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from app.models.catalog.checkpoint import (
    CHECKPOINT_EXCLUDED_SUFFIXES,
    CHECKPOINT_EXTENSIONS,
    CheckpointInfo,
    checkpoint_info_for,
    is_diffusers_folder,
)
from app.models.catalog.extra_files import EmbeddingFile, UpscalerFile, list_embedding_files, list_upscaler_files
from app.models.catalog.lora import LoraIndex, LoraInfo, list_lora_files, read_lora_info
from app.models.catalog.parts import ModuleFile, file_role, list_modules, resolve_parts
from app.models.catalog.scan import (
    natural_sort_key,
    read_safetensors_header,
    read_safetensors_metadata,
    read_user_metadata,
    walk_dirs,
    walk_files,
)
from app.models.catalog.vae import AUTOMATIC, NONE, VaeInfo, list_vaes, resolve_vae
from app.models.hashes import HashCache

__all__ = [
    "Catalog",
    "CheckpointInfo",
    "LoraInfo",
    "VaeInfo",
    "checkpoint_info_for",
    "natural_sort_key",
    "read_safetensors_header",
    "read_safetensors_metadata",
    "read_user_metadata",
]

log = logging.getLogger(__name__)

_STRIP_CHECKSUM = re.compile(r"\s*\[[^]]+]\s*$")

_T = TypeVar("_T")


class Catalog:
    """All model files under `paths` (an `app.paths.Paths`), scanned on first use and on `refresh()`.

    Thread-safe: scans swap whole lists under a lock; accessors return fresh lists.
    `paths.ckpt_file` (`--ckpt`) is listed too; `paths.vae_file` (`--vae-path`) is honoured by `resolve_vae`.
    """

    def __init__(self, paths: Any, no_hashing: bool = False, hash_cache: HashCache | None = None) -> None:
        self.paths = paths
        self.no_hashing = no_hashing
        cache_file = getattr(paths, "cache_file", None)
        self.hash_cache = hash_cache if hash_cache is not None else HashCache(cache_file)
        self._lock = threading.RLock()
        self._extra_checkpoints: list[Path] = []
        ckpt_file = getattr(paths, "ckpt_file", None)
        if ckpt_file:
            self._extra_checkpoints.append(Path(ckpt_file))
        self._ckpts: dict[str, CheckpointInfo] = {}  # filename → info, registration order
        self._aliases: dict[str, CheckpointInfo] = {}
        self._vaes: list[VaeInfo] | None = None
        self._loras: dict[str, LoraInfo] | None = None  # filename → info, scan order
        self._lora_index = LoraIndex([])
        self._embeddings: list[EmbeddingFile] | None = None
        self._upscalers: list[UpscalerFile] | None = None
        self._ckpts_scanned = False
        self._split_roles: dict[str, Any] = {}  # filename → FileRole of the split-file diffusion models
        self._modules: list[ModuleFile] | None = None

    # -- helpers -----------------------------------------------------------------------------
    def _dirs(self, attr: str) -> tuple[Path, ...]:
        return tuple(Path(d) for d in (getattr(self.paths, attr, None) or ()))

    def _lazy(self, scanned: Callable[[], bool], scan: Callable[[], None], get: Callable[[], _T]) -> _T:
        with self._lock:
            if not scanned():
                scan()
            return get()

    # -- scanning ----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Rescan every kind of file (cheap: only cached hashes are read)."""
        with self._lock:
            self.refresh_checkpoints()
            self.refresh_vaes()
            self.refresh_modules()
            self.refresh_loras()
            self.refresh_embeddings()
            self.refresh_upscalers()

    def refresh_checkpoints(self) -> None:
        """Rescan the checkpoint folders; titles take the hashes cache.json holds now (the worker process may have
        hashed a file since: a first run's titles gain their `[hash]` on the next refresh)."""
        self.hash_cache.reread()
        ckpt_dirs = self._dirs("ckpt_dirs")
        # A1111 scans --ckpt-dir before models/Stable-diffusion; a later file wins a shared alias.
        order = [*ckpt_dirs[1:], *ckpt_dirs[:1]]
        files = walk_files(
            order, CHECKPOINT_EXTENSIONS, exclude_suffixes=CHECKPOINT_EXCLUDED_SUFFIXES, prune=is_diffusers_folder
        )
        folders = walk_dirs(order, is_diffusers_folder)
        dm_dirs = self._dirs("diffusion_model_dirs")
        split_roles: dict[str, Any] = {}
        for path in walk_files(dm_dirs, (".safetensors", ".sft", ".gguf"), prune=is_diffusers_folder):
            role = file_role(path)
            if role.role == "diffusion_model" and role.family in ("zimage", "flux", "sd3") or (
                    role.role == "checkpoint" and role.family == "sd3"):
                split_roles[os.path.abspath(path)] = role
            else:  # e.g. a FLUX.1 file: not loadable yet, so not offered
                log.info("not listed as a model: %s (%s)", path, role.reason or f"{role.family} {role.role}")
        folders += walk_dirs(dm_dirs, is_diffusers_folder)
        infos: dict[str, CheckpointInfo] = {}
        for path in [*self._extra_checkpoints, *files, *folders, *map(Path, split_roles)]:
            if not path.exists():
                log.warning("checkpoint not found: %s", path)
                continue
            info = checkpoint_info_for(path, (*ckpt_dirs, *dm_dirs))
            sha = self.hash_cache.cached(info.cache_title, path)
            if sha:
                info = info.with_sha256(sha)
            infos.pop(info.filename, None)
            infos[info.filename] = info
        with self._lock:
            self._ckpts = infos
            self._split_roles = split_roles
            self._rebuild_aliases()
            self._ckpts_scanned = True

    def _rebuild_aliases(self) -> None:
        aliases: dict[str, CheckpointInfo] = {}
        for info in self._ckpts.values():
            for alias in info.ids:
                aliases[alias] = info
        self._aliases = aliases

    def refresh_vaes(self) -> None:
        """The `sd_vae` list: SD VAE files only (a FLUX VAE is a module of split-file models, never offered here)."""
        vaes = [v for v in list_vaes(self._dirs("ckpt_dirs"), self._dirs("vae_dirs"))
                if not (v.filename.lower().endswith((".safetensors", ".sft"))
                        and file_role(Path(v.filename)).family == "flux_vae")]
        with self._lock:
            self._vaes = vaes

    # -- split-file models: diffusion model + text encoder + VAE ------------------------------
    def _part_dirs(self) -> dict[str, tuple[Path, ...]]:
        vae = self.paths.module_vae_dirs() if hasattr(self.paths, "module_vae_dirs") else self._dirs("vae_dirs")
        return {"text_encoder": self._dirs("text_encoder_dirs"), "vae": tuple(vae)}

    def refresh_modules(self) -> None:
        dirs = self._part_dirs()
        modules = list_modules(dirs["text_encoder"], dirs["vae"])
        with self._lock:
            self._modules = modules

    def modules(self) -> list[ModuleFile]:
        """Text encoder and VAE files (`forge_additional_modules` choices, `/sdapi/v1/sd-modules`)."""
        return self._lazy(lambda: self._modules is not None, self.refresh_modules, lambda: list(self._modules or []))

    def model_role(self, info: CheckpointInfo) -> Any:
        """The detected `FileRole` of a split-file diffusion model, None for checkpoints and folders."""
        self.checkpoints()
        with self._lock:
            return self._split_roles.get(info.filename)

    def model_parts(self, info: CheckpointInfo, chosen: list[str] | tuple[str, ...] = ()) -> dict[str, Path] | None:
        """The text encoder and VAE files of a split-file model (`parts.resolve_parts`; `MissingPartError` when one
        is missing), None for a checkpoint that holds everything."""
        role = self.model_role(info)
        if role is None:
            return None
        return resolve_parts(role.family, role.detail, self.modules(), chosen, self._part_dirs(), info.name,
                             skip=tuple(role.detail.get("inside", ())))

    def _lora_dirs(self) -> list[Path]:
        dirs = list(self._dirs("lora_dirs"))
        models_dir = getattr(self.paths, "models_dir", None)
        if models_dir is not None:  # A1111 always scans --lyco-dir-backcompat (models/LyCORIS)
            lyco = Path(models_dir) / "LyCORIS"
            if all(os.path.abspath(d) != os.path.abspath(lyco) for d in dirs):
                dirs.append(lyco)
        return dirs

    def refresh_loras(self) -> None:
        loras: dict[str, LoraInfo] = {}
        for path in list_lora_files(self._lora_dirs()):
            name = os.path.splitext(path.name)[0]
            cached = self.hash_cache.cached(
                f"lora/{name}", path, section="hashes-addnet" if path.suffix.lower() == ".safetensors" else "hashes"
            )
            info = read_lora_info(path, cached)
            loras[info.filename] = info
        with self._lock:
            self._loras = loras
            self._lora_index = LoraIndex(list(loras.values()))

    def refresh_embeddings(self) -> None:
        out = list_embedding_files(self._dirs("embeddings_dirs"))
        with self._lock:
            self._embeddings = out

    def refresh_upscalers(self) -> None:
        out = list_upscaler_files(self._dirs)
        with self._lock:
            self._upscalers = out

    # -- checkpoints -------------------------------------------------------------------------
    def add_checkpoint_file(self, path: Path | str) -> CheckpointInfo:
        """`--ckpt FILE`: list a checkpoint outside the checkpoint folders (kept across refreshes)."""
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"checkpoint file not found: {p}")
        with self._lock:
            if all(os.path.abspath(x) != os.path.abspath(p) for x in self._extra_checkpoints):
                self._extra_checkpoints.append(p)
            self.refresh_checkpoints()
            return self._ckpts[os.path.abspath(p)]

    def checkpoint_for_file(self, path: Path | str) -> CheckpointInfo | None:
        """The listed checkpoint at this path (file or diffusers folder), if any."""
        self.checkpoints()
        with self._lock:
            return self._ckpts.get(os.path.abspath(path))

    def checkpoints(self) -> list[CheckpointInfo]:
        """Checkpoints by title, naturally sorted (the dropdown order); one entry per title."""

        def get() -> list[CheckpointInfo]:
            by_title = {info.title: info for info in self._ckpts.values()}
            return [by_title[t] for t in sorted(by_title, key=natural_sort_key)]

        return self._lazy(lambda: self._ckpts_scanned, self.refresh_checkpoints, get)

    def checkpoint_titles(self, use_short: bool = False) -> list[str]:
        """Dropdown entries (`sd_checkpoint_dropdown_use_short` → short titles), naturally sorted."""
        return sorted((c.short_title if use_short else c.title for c in self.checkpoints()), key=natural_sort_key)

    def find_checkpoint(self, search: str | None) -> CheckpointInfo | None:
        """A1111's lookup: exact alias, else the shortest title containing `search`, else the same with a
        trailing `[hash]` stripped from `search`. None when nothing matches."""
        if not search:
            return None
        listed = self.checkpoints()
        with self._lock:
            found = self._aliases.get(search)
        if found is not None:
            return found
        for needle in (search, _STRIP_CHECKSUM.sub("", search)):
            if not needle:
                continue
            matches = sorted((c for c in listed if needle in c.title), key=lambda c: len(c.title))
            if matches:
                return matches[0]
        return None

    def ensure_hash(self, info: CheckpointInfo) -> CheckpointInfo:
        """Compute (unless `no_hashing`) and cache the sha256; returns the info with the hashed title."""
        with self._lock:
            current = self._ckpts.get(info.filename, info)
        if current.sha256:
            return current
        sha = self.hash_cache.sha256(current.filename, current.cache_title, compute=not self.no_hashing)
        if not sha:
            return current
        updated = current.with_sha256(sha)
        with self._lock:
            if current.filename in self._ckpts:
                self._ckpts[current.filename] = updated
                self._rebuild_aliases()
        return updated

    # -- VAE ---------------------------------------------------------------------------------
    def vaes(self) -> list[VaeInfo]:
        """VAE files keyed by basename, naturally sorted."""
        return self._lazy(lambda: self._vaes is not None, self.refresh_vaes, lambda: list(self._vaes or []))

    def vae_choices(self) -> list[str]:
        """The `sd_vae` dropdown: "Automatic", "None", then the VAE names."""
        return [AUTOMATIC, NONE, *(v.name for v in self.vaes())]

    def find_vae(self, name: str) -> VaeInfo | None:
        return next((v for v in self.vaes() if v.name == name), None)

    def resolve_vae(
        self,
        setting_value: str | None,
        checkpoint: CheckpointInfo | None,
        vae_path_flag: str | os.PathLike[str] | None = None,
        overrides_per_model: bool = True,
    ) -> tuple[VaeInfo | None, str]:
        """The VAE to load with `checkpoint` and its source (see `catalog_vae.resolve_vae`); the flag
        defaults to `paths.vae_file` (`--vae-path`)."""
        flag = vae_path_flag if vae_path_flag is not None else getattr(self.paths, "vae_file", None)
        filename = checkpoint.filename if checkpoint is not None else None
        return resolve_vae(self.vaes(), setting_value, filename, flag, overrides_per_model)

    def vae_hash(self, info: VaeInfo) -> str | None:
        """First 10 hex of the VAE file's sha256 (None with `no_hashing` and nothing cached).

        Cached as `vae/<basename>`; the constant title `vae` that A1111 uses is written as well, for an
        A1111 install sharing this cache.json (we never read it: it cannot tell VAE files apart).
        """
        cached = self.hash_cache.cached(f"vae/{info.name}", info.filename)
        if cached:
            return cached[:10]
        sha = self.hash_cache.sha256(info.filename, f"vae/{info.name}", compute=not self.no_hashing)
        if not sha:
            return None
        self.hash_cache.store("vae", info.filename, sha)
        return sha[:10]

    # -- LoRA --------------------------------------------------------------------------------
    def loras(self) -> list[LoraInfo]:
        """LoRA/LyCORIS files in scan order (lora dirs, then models/LyCORIS)."""
        return self._lazy(
            lambda: self._loras is not None, self.refresh_loras, lambda: list((self._loras or {}).values())
        )

    def find_lora(self, name: str) -> LoraInfo | None:
        """By alias (`ss_output_name`) or file name, with A1111's forbidden-alias rule."""
        self.loras()
        with self._lock:
            return self._lora_index.find(name)

    def lora_preferred_name(self, info: LoraInfo, preference: str = "Alias from file") -> str:
        """The name the UI inserts into `<lora:…>` (setting `lora_preferred_name`)."""
        self.loras()
        with self._lock:
            return self._lora_index.preferred_name(info, preference)

    def lora_hash(self, info: LoraInfo) -> str | None:
        """Full hash: metadata `sshs_model_hash`, else the addnet hash (safetensors) / file sha256, cached as
        `lora/<name>`. None with `no_hashing` and nothing cached. `Lora hashes:` shows the first 12 hex."""
        if info.hash:
            return info.hash
        sha = self.hash_cache.sha256(
            info.filename, info.cache_title, addnet=info.is_safetensors, compute=not self.no_hashing
        )
        if sha:
            with self._lock:
                if self._loras is not None and info.filename in self._loras:
                    current = self._loras[info.filename]
                    self._loras[info.filename] = replace(current, hash=sha)
                    self._lora_index = LoraIndex(list(self._loras.values()))
        return sha

    # -- embeddings and upscalers ------------------------------------------------------------
    def embedding_files(self) -> list[EmbeddingFile]:
        """Textual-inversion files (`.pt .bin .safetensors .png .webp .jxl .avif`, recursive; zero-byte files,
        `*.preview.<image>` and hidden files skipped)."""
        return self._lazy(
            lambda: self._embeddings is not None, self.refresh_embeddings, lambda: list(self._embeddings or [])
        )

    def embedding_hash(self, path: Path | str, name: str | None = None) -> str | None:
        """Full-file sha256 cached as `textual_inversion/<name>` (None with `no_hashing` and nothing cached)."""
        name = name if name is not None else os.path.splitext(os.path.basename(path))[0]
        return self.hash_cache.sha256(path, f"textual_inversion/{name}", compute=not self.no_hashing)

    def upscaler_files(self) -> list[UpscalerFile]:
        """Upscaler models in the ESRGAN, RealESRGAN, SwinIR and DAT folders (`.pth .pt .safetensors .ckpt`)."""
        return self._lazy(
            lambda: self._upscalers is not None, self.refresh_upscalers, lambda: list(self._upscalers or [])
        )
