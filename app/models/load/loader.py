"""Load Stable Diffusion checkpoints (single files or diffusers folders) and Z-Image split files into diffusers
pipelines, offline.

A file's kind comes from its header (``app.models.load.detect``): a Z-Image diffusion model goes to
``app.models.load.zimage_load`` with its text encoder and VAE (``parts``; missing ones are found next to it, in the
ComfyUI folders of the same models dir: ``text_encoders``/``clip`` and ``VAE``/``vae``).

The entry points (``load_pipeline``, ``load_vae``, ``detect_file_family``) and the single-file path here; the
diffusers-folder path is ``app.models.load.diffusers_folder``, the build helpers (models, tokenizers, schedulers,
pipeline assembly, ``LoadedModel``) are ``app.models.load.pipeline_build``.

One code path for every single file, tiny or real: read the state dict once (safe unpickling rules
apply to ``.ckpt``), detect the family, infer the architecture from tensor shapes on top of the
shipped family config, convert the keys with diffusers' own ``convert_ldm_*`` functions and assign
the tensors into models created without weight initialisation. Tokenizers come from
``app.prompts.tokenizer`` (no hub access ever).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from app.configs import load_family_config
from app.models.load import config_infer as ci
from app.models.load.checkpoint_io import (
    CheckpointLoadError,
    UnsafeCheckpointError,
    detect_file_format,
    read_key_shapes,
    read_state_dict,
)
from app.models.load.config_infer import ModelFamily, detect_family
from app.models.load.detect import detect_file_role, folder_family
from app.models.load.diffusers_folder import load_folder
from app.models.load.ldm_convert import vae_to_ldm
from app.models.load.pipeline_build import (
    LoadedModel,
    assemble_pipeline,
    build_text_encoder,
    build_unet,
    build_vae,
    device_and_dtypes,
    loaded_model,
    make_scheduler,
    place_pipeline,
)

__all__ = [
    "CheckpointLoadError",
    "LoadedModel",
    "ModelFamily",
    "UnsafeCheckpointError",
    "detect_family",
    "detect_file_format",
    "detect_file_family",
    "load_pipeline",
    "load_vae",
    "read_key_shapes",
    "read_state_dict",
]


def _sd2_probe_is_v(unet: Any) -> bool:
    """A1111's test for SD2 without markers: a v-model's prediction at t=999 is far below its input."""
    with torch.no_grad():
        dim = unet.config.cross_attention_dim
        x = torch.full((1, unet.config.in_channels, 8, 8), 0.5, dtype=unet.dtype)
        cond = torch.full((1, 2, dim), 0.5, dtype=unet.dtype)
        out = unet(x, torch.tensor([999]), encoder_hidden_states=cond).sample
    return bool((out - x).float().mean().item() < -1)


def _load_single_file(path: Path, device_policy: Any, family: ModelFamily | None, allow_unsafe: bool) -> LoadedModel:
    device, dtype, vae_dtype = device_and_dtypes(device_policy)
    # 1. read once, 2. family, 3. build components from inferred configs, 4. scheduler, 5. pipeline
    sd = read_state_dict(path, allow_unsafe=allow_unsafe)
    detected = detect_family(sd, source_path=path)
    family = family or detected
    sidecar = ci.sidecar_yaml(path)
    pooled = None
    if family.startswith("sdxl") and ci.clip2_prefix(family) + "text_projection" in sd:
        pooled = int(sd[ci.clip2_prefix(family) + "text_projection"].shape[1])
    try:
        unet = build_unet(sd, family, dtype, path, pooled)
        if family == "sd2" and detected == "sd2" and sidecar is None and ci.V_PRED_KEY not in sd:
            if _sd2_probe_is_v(unet):
                family = "sd2v"
        vae = build_vae(sd, family, vae_dtype, path)
        te = None if family == "sdxl-refiner" else build_text_encoder(sd, family, 1, dtype, path)
        te2 = build_text_encoder(sd, family, 2, dtype, path) if family.startswith("sdxl") else None
    except CheckpointLoadError:
        raise
    except (KeyError, ValueError, RuntimeError, IndexError) as exc:
        raise CheckpointLoadError(
            f"{path} is not a complete {family} checkpoint (detected {detected}): {type(exc).__name__}: {exc}"
        ) from exc
    markers = sorted(k for k in (ci.V_PRED_KEY, ci.ZTSNR_KEY) if k in sd)
    del sd
    # Scheduler: the family's, with the file's parameterization (sidecar yaml first, then the
    # ``v_pred`` key some SD2/SDXL v-models carry) and zero-terminal-SNR (``ztsnr`` key).
    sched_cfg = load_family_config(family, "scheduler")
    if sidecar is not None:
        if ci.yaml_says_v(sidecar):
            sched_cfg["prediction_type"] = "v_prediction"
    elif ci.V_PRED_KEY in markers:
        sched_cfg["prediction_type"] = "v_prediction"
    if ci.ZTSNR_KEY in markers:
        sched_cfg["rescale_betas_zero_snr"] = True
    pipe = assemble_pipeline(family, unet, vae, te, te2, make_scheduler(sched_cfg))
    place_pipeline(pipe, device, device_policy, family.startswith("sdxl"))
    extra = {"detected_family": detected, "sidecar_yaml": sidecar, "markers": markers}
    return loaded_model(family, pipe, sched_cfg, path, extra)


def detect_file_family(path: str | Path, allow_unsafe: bool = False) -> ModelFamily:
    """The family of a checkpoint file or diffusers folder without building it (safetensors: header only).

    Undecidable SD2 files (no yaml, no marker) report ``sd2``; ``load_pipeline`` may refine to ``sd2v``.
    """
    path = Path(path)
    if detect_file_format(path) == "diffusers-folder":
        return folder_family(path)
    split = _split_family(path)
    if split is not None:
        return split  # type: ignore[return-value]
    return detect_family(read_key_shapes(path, allow_unsafe=allow_unsafe), source_path=path)


def _split_family(path: Path) -> str | None:
    """The family of a split-file diffusion model (from its header), None for anything else."""
    if detect_file_format(path) not in ("safetensors", "gguf"):
        return None
    role = detect_file_role(path)
    if role.family == "flux" and role.role in ("diffusion_model", "checkpoint"):
        return str(role.detail.get("variant", "flux"))
    if role.family == "sd3" and role.role in ("diffusion_model", "checkpoint"):
        return "sd3"
    if role.role == "diffusion_model":
        if role.family != "zimage":
            raise CheckpointLoadError(f"{path}: {role.reason or role.family + ' diffusion models are not supported'}")
        return role.family
    return None


def default_parts(path: Path, given: Mapping[str, str | Path] | None = None) -> dict[str, Path]:
    """The parts of the split-file model *path*: *given* ones, the rest found in the ComfyUI folders of its models dir
    (``MissingPartError`` naming the folder when there is none)."""
    from app.models.catalog.parts import FAMILY_PARTS, list_modules, resolve_parts

    chosen = {k: Path(v) for k, v in (given or {}).items() if v is not None}
    role = detect_file_role(path)
    family = role.family or "zimage"
    inside = tuple(role.detail.get("inside", ()))  # an SD3 checkpoint's own parts
    if set(FAMILY_PARTS[family]) <= set(chosen) | set(inside):
        return chosen
    folder = next((p for p in path.resolve().parents if p.name in ("diffusion_models", "unet")), path.parent)
    models = folder.parent
    dirs = {"text_encoder": [models / "text_encoders", models / "clip"], "vae": [models / "VAE", models / "vae"]}
    dirs["text_encoder_2"] = dirs["text_encoder"]
    modules = list_modules(dirs["text_encoder"], dirs["vae"])
    dirs["text_encoder_3"] = dirs["text_encoder"]
    found = resolve_parts(family, role.detail, modules, (), dirs, path.name, skip=(*chosen, *inside))
    return {**found, **chosen}


def load_pipeline(
    path: str | Path,
    device_policy: Any = None,
    family: ModelFamily | None = None,
    vae_path: str | Path | None = None,
    allow_unsafe: bool = False,
    parts: Mapping[str, str | Path] | None = None,
) -> LoadedModel:
    """Load a checkpoint file, diffusers folder or split-file diffusion model into a ready diffusers pipeline
    (never touches the hub).

    *family* overrides detection; *vae_path* replaces the baked-in VAE; *allow_unsafe* is
    ``--disable-safe-unpickle``. *device_policy* needs ``.device``, ``.dtype``, ``.vae_dtype``
    (default CPU fp32). *parts* (``{"text_encoder": path, "vae": path}``) names the files of a split-file model;
    missing ones are found next to it (``default_parts``).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = Path(path)
    if family is not None and family not in ci.ModelFamily.__args__:  # type: ignore[attr-defined]
        raise ValueError(f"unknown model family {family!r}")
    split = _split_family(path) if detect_file_format(path) != "diffusers-folder" else None
    if split == "zimage":
        from app.models.load.zimage_load import load_zimage

        return load_zimage(path, default_parts(path, parts), device_policy, allow_unsafe=allow_unsafe)
    if split in ("flux", "flux-schnell", "flux-fill"):
        from app.models.load.flux_load import load_flux

        whole = detect_file_role(path).role == "checkpoint"  # all-in-one: parts only when given
        given = {k: Path(v) for k, v in (parts or {}).items() if v is not None}
        return load_flux(path, given if whole else default_parts(path, parts), device_policy, allow_unsafe)
    if split == "sd3":
        from app.models.load.sd3_load import load_sd3

        return load_sd3(path, default_parts(path, parts), device_policy, allow_unsafe)
    if detect_file_format(path) == "diffusers-folder":
        loaded = load_folder(path, device_policy, family)
    else:
        loaded = _load_single_file(path, device_policy, family, allow_unsafe)
    if vae_path is not None:
        vae = load_vae(vae_path, like=loaded, allow_unsafe=allow_unsafe)
        loaded.pipe.register_modules(vae=vae)
        loaded.vae_path = Path(vae_path)
    return loaded


def load_vae(
    path: str | Path,
    like: LoadedModel | None = None,
    device_policy: Any = None,
    allow_unsafe: bool = False,
    family: ModelFamily | None = None,
) -> Any:
    """An ``AutoencoderKL`` from a VAE file (LDM keys with or without prefix, or diffusers keys).

    The scaling factor comes from *like*'s family (or *family*, default sd1); dtype/device follow
    *like*'s current VAE, else *device_policy*.
    """
    path = Path(path)
    fam: ModelFamily = like.family if like is not None else (family or "sd1")
    sd = read_state_dict(path, allow_unsafe=allow_unsafe)
    if any(k.startswith("encoder.down_blocks.") for k in sd):  # diffusers-keyed VAE file
        n_levels = len({k.split(".")[2] for k in sd if k.startswith("encoder.down_blocks.")})
        sd = vae_to_ldm(sd, {"block_out_channels": [0] * n_levels}, prefix="")
    try:
        ci.vae_prefix(sd)
    except ValueError as exc:
        raise CheckpointLoadError(f"not a VAE file: {path} ({exc})") from None
    if like is not None:
        ref = like.pipe.vae
        dtype, device = ref.dtype, ref.device
    else:
        device, _, dtype = device_and_dtypes(device_policy)
    vae = build_vae(sd, fam, dtype, path)
    if like is not None:
        vae.register_to_config(scaling_factor=like.pipe.vae.config.scaling_factor)
    return vae.to(device)
