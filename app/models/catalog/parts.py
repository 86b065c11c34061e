"""Split-file models (ComfyUI layout): the files in the diffusion-model, text-encoder and VAE folders, what each is
(from its header, ``app.models.load.detect``), and which text encoder and VAE go with a diffusion model.

- ``ModuleFile``: a text encoder or VAE file with its detected family; the ``forge_additional_modules`` setting and
  ``GET /sdapi/v1/sd-modules`` list these (Forge calls them "modules").
- ``resolve_parts(model_role, modules, chosen, dirs)``: for a Z-Image diffusion model, the text encoder (a Qwen3
  decoder as wide as the transformer's caption features) and the VAE (the FLUX VAE). Files named in *chosen*
  (``forge_additional_modules``: paths or file names) come first, in their order; a chosen file that does not fit the
  model is skipped (one list serves every model, as in Forge), and without a fitting choice the first fitting file in
  natural name order is used. None fits: ``MissingPartError`` naming the kind of file, an example file name and the
  absolute folder it belongs in.

Pure module (no torch): detection reads safetensors/GGUF headers only; results are cached by (path, size, mtime).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.models.catalog.scan import natural_sort_key, walk_files

log = logging.getLogger(__name__)

MODULE_EXTENSIONS = (".safetensors", ".sft", ".gguf")
#: kind -> (example file name, what a user calls it)
PART_EXAMPLES = {"text_encoder": ("qwen_3_4b.safetensors", "text encoder"), "vae": ("ae.safetensors", "VAE")}
#: per-family overrides of PART_EXAMPLES
FAMILY_EXAMPLES: dict[str, dict[str, tuple[str, str]]] = {
    "flux": {"text_encoder": ("clip_l.safetensors", "CLIP-L text encoder"),
             "text_encoder_2": ("t5xxl_fp16.safetensors", "T5-XXL text encoder")},
    "sd3": {"text_encoder": ("clip_l.safetensors", "CLIP-L text encoder"),
            "text_encoder_2": ("clip_g.safetensors", "CLIP-G text encoder"),
            "text_encoder_3": ("t5xxl_fp16.safetensors", "T5-XXL text encoder"),
            "vae": ("sd3_vae.safetensors", "SD3 VAE")},
}
#: the families of text encoders / VAEs each split-file model family accepts; a kind ``text_encoder_N`` is a second
#: (third) text encoder, a file of the role ``text_encoder``
FAMILY_PARTS: dict[str, dict[str, tuple[str, ...]]] = {
    "zimage": {"text_encoder": ("qwen3_4b", "qwen3"), "vae": ("flux_vae",)},
    "flux": {"text_encoder": ("clip_l",), "text_encoder_2": ("t5xxl",), "vae": ("flux_vae",)},
    # SD3's VAE has the FLUX VAE's shapes (told apart by name only: a file named *sd3* is preferred)
    "sd3": {"text_encoder": ("clip_l", "clip_g"), "text_encoder_2": ("clip_l", "clip_g"), "text_encoder_3": ("t5xxl",),
            "vae": ("flux_vae",)},
}
#: parts a model runs without when none is found (SD3.5 without T5: the prompt goes through the two CLIPs only)
OPTIONAL_PARTS = {("sd3", "text_encoder_3")}
#: per family and kind: a word in the file name that makes a fitting file the automatic choice
NAME_HINTS: dict[tuple[str, str], str] = {("sd3", "vae"): "sd3"}
_MODEL_NAMES = {"zimage": "Z-Image", "flux": "FLUX.1", "sd3": "SD3.5"}


def part_role(kind: str) -> str:
    """The file role of a part kind (``text_encoder_2`` is a ``text_encoder`` file)."""
    return "text_encoder" if kind.startswith("text_encoder") else kind


class MissingPartError(FileNotFoundError):
    """A split-file model lacks a text encoder or VAE file; the message names the file kind and the folder."""


@dataclass(frozen=True)
class ModuleFile:
    """A text encoder or VAE file: ``name`` = basename, ``filename`` = absolute path, plus its detected role."""

    name: str
    filename: str
    role: str
    family: str | None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def as_api(self) -> dict[str, str]:
        """The ``/sdapi/v1/sd-modules`` item (Forge's shape: ``model_name``, ``filename``)."""
        return {"model_name": self.name, "filename": self.filename}


_cache: dict[tuple[str, int, float], Any] = {}
_cache_lock = threading.Lock()


def file_role(path: Path) -> Any:
    """``detect_file_role`` of *path*, cached by (path, size, mtime) so rescans stay cheap."""
    from app.models.load.detect import FileRole, detect_file_role  # torch-free modules

    try:
        st = path.stat()
    except OSError as exc:
        return FileRole(None, "unknown", str(exc))
    key = (os.path.abspath(path), st.st_size, st.st_mtime)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    role = detect_file_role(path)
    with _cache_lock:
        _cache[key] = role
    return role


def list_modules(text_encoder_dirs: Sequence[Path], vae_dirs: Sequence[Path]) -> list[ModuleFile]:
    """Text encoders (from their folders) and VAEs (from the VAE folders), naturally sorted by name; files whose
    header says they are something else are left out."""
    found: dict[str, ModuleFile] = {}
    for dirs, role in ((text_encoder_dirs, "text_encoder"), (vae_dirs, "vae")):
        for path in walk_files(dirs, MODULE_EXTENSIONS):
            detected = file_role(path)
            if detected.role != role:
                if detected.role == "unknown":
                    log.info("ignoring %s: %s", path, detected.reason)
                continue
            found.setdefault(os.path.abspath(path), ModuleFile(path.name, os.path.abspath(path), role,
                                                               detected.family, dict(detected.detail)))
    return sorted(found.values(), key=lambda m: natural_sort_key(m.name))


def fits(model_family: str, model_detail: Mapping[str, Any], module: ModuleFile, kind: str) -> bool:
    """Whether *module* can be the *kind* part of a *model_family* diffusion model."""
    wanted = FAMILY_PARTS.get(model_family, {}).get(kind, ())
    if module.role != part_role(kind) or module.family not in wanted:
        return False
    if kind == "text_encoder" and "cap_feat_dim" in model_detail:
        return module.detail.get("hidden_size") == model_detail["cap_feat_dim"]
    return _fits_width(model_family, model_detail, module, kind)


def _fits_width(model_family: str, model_detail: Mapping[str, Any], module: ModuleFile, kind: str) -> bool:
    """The text encoder widths a FLUX / SD3 model takes (when both sides say them): T5 as wide as the model's
    context input; FLUX's CLIP-L as wide as its pooled input; SD3's pooled input is CLIP-L ++ CLIP-G, so CLIP-L is
    the narrower half (768 of 2048) and CLIP-G the wider (1280)."""
    width = module.detail.get("hidden_size")
    if width is None:
        return True
    if module.family == "t5xxl":
        return model_detail.get("context_dim", width) == width
    pooled = model_detail.get("pooled_dim")
    if pooled is None:
        return True
    if model_family == "sd3":
        return 2 * width < pooled if kind == "text_encoder" else 2 * width > pooled
    return width == pooled


def find_module(modules: Iterable[ModuleFile], wanted: str) -> ModuleFile | None:
    """The module a ``forge_additional_modules`` entry names: an absolute path, else a file name."""
    mods = list(modules)
    absolute = os.path.abspath(wanted) if os.path.isabs(wanted) else None
    for m in mods:
        if absolute is not None and m.filename == absolute:
            return m
    return next((m for m in mods if m.name == os.path.basename(wanted)), None)


def resolve_parts(
    model_family: str,
    model_detail: Mapping[str, Any],
    modules: Sequence[ModuleFile],
    chosen: Sequence[str] = (),
    dirs: Mapping[str, Sequence[Path]] | None = None,
    model_name: str = "",
    skip: Sequence[str] = (),
) -> dict[str, Path]:
    """``{kind: file}`` for each part *model_family* needs, but the kinds in *skip* (see the module doc for the order
    of preference)."""
    if model_family not in FAMILY_PARTS:
        raise ValueError(f"{model_family!r} models have no separate parts")
    picked_by_user = [m for m in (find_module(modules, c) for c in chosen if c) if m is not None]
    parts: dict[str, Path] = {}
    for kind in FAMILY_PARTS[model_family]:
        if kind in skip:
            continue
        choice = next((m for m in picked_by_user if fits(model_family, model_detail, m, kind)), None)
        for m in picked_by_user:
            if m.role == part_role(kind) and m is not choice and choice is None:
                log.info("%s: %s %s does not fit a %s model; choosing automatically", model_name or model_family,
                         kind, m.name, _MODEL_NAMES.get(model_family, model_family))
        if choice is None:
            fitting = [m for m in modules if fits(model_family, model_detail, m, kind)]
            hint = NAME_HINTS.get((model_family, kind))
            choice = next((m for m in fitting if hint and hint in m.name.lower()), fitting[0] if fitting else None)
        if choice is None and (model_family, kind) in OPTIONAL_PARTS:
            log.info("%s: no %s file found; running without it", model_name or model_family, kind)
            continue
        if choice is None:
            example, label = FAMILY_EXAMPLES.get(model_family, {}).get(kind) or PART_EXAMPLES[part_role(kind)]
            folder = (dirs or {}).get(kind) or (dirs or {}).get(part_role(kind)) or ()
            where = f" in {os.path.abspath(folder[0])}" if folder else ""
            width = model_detail.get("cap_feat_dim") if kind == "text_encoder" else None
            need = f" ({width} wide)" if width and width != 2560 else ""
            raise MissingPartError(
                f"{_MODEL_NAMES.get(model_family, model_family)} model {model_name or ''} needs a {label} file"
                f"{need}: put one (e.g. {example}){where}".replace("model  needs", "model needs")
            )
        parts[kind] = Path(choice.filename)
    return parts
