"""Load Stable Diffusion checkpoints (single files or diffusers folders) into diffusers pipelines, offline.

One code path for every single file, tiny or real: read the state dict once (safe unpickling rules
apply to ``.ckpt``), detect the family, infer the architecture from tensor shapes on top of the
shipped family config, convert the keys with diffusers' own ``convert_ldm_*`` functions and assign
the tensors into models created without weight initialisation. Tokenizers come from
``app.prompts.tokenizer`` (no hub access ever).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from app.configs import load_family_config
from app.models import config_infer as ci
from app.models.checkpoint_io import (
    CheckpointLoadError,
    UnsafeCheckpointError,
    detect_file_format,
    read_key_shapes,
    read_state_dict,
)
from app.models.config_infer import ModelFamily, detect_family

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
logger = logging.getLogger(__name__)
_IGNORED_UNEXPECTED = ("position_ids",)


@dataclass
class LoadedModel:
    """A loaded checkpoint. ``scheduler_config`` is a private deep copy of the original config."""

    family: ModelFamily
    pipe: Any
    scheduler_config: dict[str, Any]
    prediction_type: str
    is_sdxl: bool
    is_inpainting: bool
    source_path: Path
    vae_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # detected_family, sidecar_yaml, markers (single files)


def _policy(device_policy: Any) -> tuple[torch.device, torch.dtype, torch.dtype]:
    if device_policy is None:
        return torch.device("cpu"), torch.float32, torch.float32
    device = torch.device(getattr(device_policy, "device", "cpu"))
    dtype = getattr(device_policy, "dtype", torch.float32)
    return device, dtype, getattr(device_policy, "vae_dtype", dtype)


def _empty_init() -> contextlib.AbstractContextManager[Any]:
    try:
        from accelerate import init_empty_weights
    except ImportError:  # slower (random init), same result
        return contextlib.nullcontext()
    return init_empty_weights(include_buffers=False)


def _assign(model: torch.nn.Module, sd: dict[str, torch.Tensor], dtype: torch.dtype, what: str, src: Path) -> None:
    """Put *sd* into *model* (created on meta); every parameter must be provided."""
    sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    result = model.load_state_dict(sd, strict=False, assign=True)
    missing = [k for k in result.missing_keys if not k.endswith(_IGNORED_UNEXPECTED)]
    if missing:
        raise CheckpointLoadError(
            f"{src}: {what} weights do not match the inferred architecture; missing {len(missing)} "
            f"tensors, e.g. {', '.join(missing[:4])}"
        )
    unexpected = [k for k in result.unexpected_keys if not k.endswith(_IGNORED_UNEXPECTED)]
    if unexpected:
        logger.info("%s: ignored %d unexpected %s tensors (e.g. %s)", src, len(unexpected), what, unexpected[:3])
    model.eval()


def _build_unet(sd: dict[str, torch.Tensor], family: ModelFamily, dtype: torch.dtype, src: Path, pooled: int | None):
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    cfg = ci.infer_unet_config(sd, family, pooled_dim=pooled)
    with _empty_init():
        unet = UNet2DConditionModel.from_config(cfg)
    _assign(unet, convert_ldm_unet_checkpoint(sd, unet.config), dtype, "UNet", src)
    return unet


def _build_vae(sd: dict[str, torch.Tensor], family: ModelFamily, dtype: torch.dtype, src: Path):
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    cfg = ci.infer_vae_config(sd, family)
    prefix = ci.vae_prefix(sd)
    vae_sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)} if prefix else dict(sd)
    with _empty_init():
        vae = AutoencoderKL.from_config(cfg)
    _assign(vae, convert_ldm_vae_checkpoint(vae_sd, vae.config), dtype, "VAE", src)
    return vae


def _build_text_encoder(sd: dict[str, torch.Tensor], family: ModelFamily, which: int, dtype: torch.dtype, src: Path):
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    base = family.removesuffix("-inpaint")
    cfg = ci.infer_clip_config(sd, family, which)
    cls = CLIPTextModelWithProjection if which == 2 else CLIPTextModel
    with _empty_init():
        model = cls(CLIPTextConfig(**{k: v for k, v in cfg.items() if k != "architectures"}))
    if base in ("sd1", "sdxl") and which == 1:
        prefix = ci.SD1_CLIP_PREFIX if base == "sd1" else ci.SDXL_CLIP1_PREFIX
        te_sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    else:
        prefix = ci.SDXL_CLIP2_PREFIX if which == 2 else ci.SD2_CLIP_PREFIX
        unused = f"{prefix}transformer.resblocks.{cfg['num_hidden_layers']}."
        sub = {k: v for k, v in sd.items() if k.startswith(prefix) and not k.startswith(unused)}
        te_sd = convert_open_clip_checkpoint(model, sub, prefix=prefix)
        if which == 1:  # SD2: a plain CLIPTextModel has no projection
            te_sd.pop("text_projection.weight", None)
    # transformers >= 5.6 flattened CLIPTextModel (no ``text_model.``); older versions and
    # CLIPTextModelWithProjection keep the wrapper. Match whatever the installed model has.
    inner = "text_model." if hasattr(model, "text_model") else ""
    te_sd = {
        k if k.startswith("text_projection") else inner + k.removeprefix("text_model."): v for k, v in te_sd.items()
    }
    _assign(model, te_sd, dtype, f"text encoder {which}", src)
    return model


def _fresh_tokenizer(pad_token: str) -> Any:
    """A private tokenizer per pipeline (textual inversion adds tokens to it)."""
    from app.prompts.tokenizer import clip_tokenizer

    return copy.deepcopy(clip_tokenizer(pad_token))


def _make_scheduler(config: dict[str, Any]) -> Any:
    import diffusers

    cls = getattr(diffusers, config.get("_class_name", "PNDMScheduler"))
    return cls.from_config(copy.deepcopy(config))


def _sd2_probe_is_v(unet: Any) -> bool:
    """A1111's test for SD2 without markers: a v-model's prediction at t=999 is far below its input."""
    with torch.no_grad():
        dim = unet.config.cross_attention_dim
        x = torch.full((1, unet.config.in_channels, 8, 8), 0.5, dtype=unet.dtype)
        cond = torch.full((1, 2, dim), 0.5, dtype=unet.dtype)
        out = unet(x, torch.tensor([999]), encoder_hidden_states=cond).sample
    return bool((out - x).float().mean().item() < -1)


def _assemble(family: ModelFamily, unet: Any, vae: Any, te: Any, te2: Any, scheduler: Any) -> Any:
    import diffusers

    if family.startswith("sdxl"):
        cls = (
            diffusers.StableDiffusionXLInpaintPipeline
            if family == "sdxl-inpaint"
            else diffusers.StableDiffusionXLPipeline
        )
        return cls(
            vae=vae,
            text_encoder=te,
            text_encoder_2=te2,
            tokenizer=_fresh_tokenizer("<|endoftext|>"),
            tokenizer_2=_fresh_tokenizer("!"),
            unet=unet,
            scheduler=scheduler,
            force_zeros_for_empty_prompt=True,
            add_watermarker=False,
        )
    cls = diffusers.StableDiffusionInpaintPipeline if family == "sd1-inpaint" else diffusers.StableDiffusionPipeline
    pad = "!" if family in ("sd2", "sd2v") else "<|endoftext|>"
    return cls(
        vae=vae,
        text_encoder=te,
        tokenizer=_fresh_tokenizer(pad),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _place(pipe: Any, device: torch.device, device_policy: Any, is_sdxl: bool) -> None:
    """Move to the policy's device, except when the policy offloads (the manager sets up offload hooks)."""
    offload = getattr(device_policy, "offload", "none")
    if hasattr(device_policy, "offload_for"):
        offload = device_policy.offload_for(is_sdxl)
    if device.type != "cpu" and offload in (None, "none"):
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)


def _load_single_file(path: Path, device_policy: Any, family: ModelFamily | None, allow_unsafe: bool) -> LoadedModel:
    device, dtype, vae_dtype = _policy(device_policy)
    # 1. read once, 2. family, 3. build components from inferred configs, 4. scheduler, 5. pipeline
    sd = read_state_dict(path, allow_unsafe=allow_unsafe)
    detected = detect_family(sd, source_path=path)
    family = family or detected
    sidecar = ci.sidecar_yaml(path)
    pooled = None
    if family.startswith("sdxl") and ci.SDXL_CLIP2_PREFIX + "text_projection" in sd:
        pooled = int(sd[ci.SDXL_CLIP2_PREFIX + "text_projection"].shape[1])
    try:
        unet = _build_unet(sd, family, dtype, path, pooled)
        if family == "sd2" and detected == "sd2" and sidecar is None and ci.V_PRED_KEY not in sd:
            if _sd2_probe_is_v(unet):
                family = "sd2v"
        vae = _build_vae(sd, family, vae_dtype, path)
        te = _build_text_encoder(sd, family, 1, dtype, path)
        te2 = _build_text_encoder(sd, family, 2, dtype, path) if family.startswith("sdxl") else None
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
    pipe = _assemble(family, unet, vae, te, te2, _make_scheduler(sched_cfg))
    _place(pipe, device, device_policy, family.startswith("sdxl"))
    extra = {"detected_family": detected, "sidecar_yaml": sidecar, "markers": markers}
    return _loaded_model(family, pipe, sched_cfg, path, extra)


def _loaded_model(family: ModelFamily, pipe: Any, sched_cfg: dict[str, Any], path: Path,
                  extra: dict[str, Any] | None = None) -> LoadedModel:
    """The ``LoadedModel`` of a placed pipeline (the scheduler config is kept as an untouched copy)."""
    return LoadedModel(
        family=family,
        pipe=pipe,
        scheduler_config=copy.deepcopy(sched_cfg),
        prediction_type=sched_cfg.get("prediction_type", "epsilon"),
        is_sdxl=family.startswith("sdxl"),
        is_inpainting=family.endswith("-inpaint"),
        source_path=path,
        extra=extra if extra is not None else {},
    )


def _folder_family(path: Path, index: dict[str, Any] | None = None, sched: dict[str, Any] | None = None) -> ModelFamily:
    """Family of a diffusers folder (its parsed ``model_index.json`` / scheduler config may be passed in)."""
    index = index if index is not None else json.loads((path / "model_index.json").read_text("utf-8"))
    sched = sched if sched is not None else json.loads((path / "scheduler" / "scheduler_config.json").read_text("utf-8"))
    unet = json.loads((path / "unet" / "config.json").read_text("utf-8"))
    inpaint = unet.get("in_channels") == 9
    if "text_encoder_2" in index:
        return "sdxl-inpaint" if inpaint else "sdxl"
    te = json.loads((path / "text_encoder" / "config.json").read_text("utf-8"))
    if te.get("hidden_act") == "gelu":
        return "sd2v" if sched.get("prediction_type") == "v_prediction" else "sd2"
    return "sd1-inpaint" if inpaint else "sd1"


#: the libraries a diffusers folder's ``model_index.json`` may name for its components
_FOLDER_LIBRARIES = ("diffusers", "transformers")


def _pipeline_class(path: Path, index: Any) -> Any:
    """The diffusers pipeline class of a folder, after checking its ``model_index.json``: a diffusers
    pipeline class and components from diffusers (or one of its pipeline packages)/transformers only (never a module or code file named by
    the folder; diffusers itself reads the weights with ``weights_only=True`` and refuses remote code)."""
    import diffusers

    if not isinstance(index, dict):
        raise CheckpointLoadError(f"{path}/model_index.json is not a JSON object")
    name = index.get("_class_name", "DiffusionPipeline")
    cls = getattr(diffusers, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, diffusers.DiffusionPipeline)):
        raise CheckpointLoadError(f"{path}/model_index.json: _class_name {name!r} is not a diffusers pipeline")
    for key, value in index.items():
        if key.startswith("_") or value is None or isinstance(value, (bool, int, float, str)):
            continue  # pipeline config values (requires_safety_checker, ...)
        ok = isinstance(value, (list, tuple)) and len(value) == 2 and (
            (value[0] is None and value[1] is None)
            or (isinstance(value[0], str) and isinstance(value[1], str) and value[1].isidentifier()
                and (value[0] in _FOLDER_LIBRARIES or hasattr(diffusers.pipelines, value[0])))
        )
        if not ok:
            raise CheckpointLoadError(
                f"{path}/model_index.json: component {key!r} = {value!r} is not loaded: only components "
                f"from {' or '.join(_FOLDER_LIBRARIES)} are (custom code in a model folder is never run)"
            )
    return cls


def _load_folder(path: Path, device_policy: Any, family: ModelFamily | None) -> LoadedModel:
    device, dtype, _ = _policy(device_policy)
    index = json.loads((path / "model_index.json").read_text("utf-8"))
    cls = _pipeline_class(path, index)
    sched_cfg = json.loads((path / "scheduler" / "scheduler_config.json").read_text("utf-8"))
    family = family or _folder_family(path, index, sched_cfg)
    kwargs: dict[str, Any] = {"local_files_only": True, "dtype": dtype}
    pad = "!" if family in ("sd2", "sd2v") else "<|endoftext|>"
    if not (path / "tokenizer").is_dir():
        kwargs["tokenizer"] = _fresh_tokenizer(pad)
    if family.startswith("sdxl") and not (path / "tokenizer_2").is_dir():
        kwargs["tokenizer_2"] = _fresh_tokenizer("!")
    if "safety_checker" in index:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        pipe = cls.from_pretrained(str(path), **kwargs)  # trust_remote_code stays False
    except (OSError, ValueError) as exc:
        raise CheckpointLoadError(f"could not load diffusers folder {path}: {exc}") from exc
    _place(pipe, device, device_policy, family.startswith("sdxl"))
    return _loaded_model(family, pipe, sched_cfg, path)


def detect_file_family(path: str | Path, allow_unsafe: bool = False) -> ModelFamily:
    """The family of a checkpoint file or diffusers folder without building it (safetensors: header only).

    Undecidable SD2 files (no yaml, no marker) report ``sd2``; ``load_pipeline`` may refine to ``sd2v``.
    """
    path = Path(path)
    if detect_file_format(path) == "diffusers-folder":
        return _folder_family(path)
    return detect_family(read_key_shapes(path, allow_unsafe=allow_unsafe), source_path=path)


def load_pipeline(
    path: str | Path,
    device_policy: Any = None,
    family: ModelFamily | None = None,
    vae_path: str | Path | None = None,
    allow_unsafe: bool = False,
) -> LoadedModel:
    """Load a checkpoint file or diffusers folder into a ready diffusers pipeline (never touches the hub).

    *family* overrides detection; *vae_path* replaces the baked-in VAE; *allow_unsafe* is
    ``--disable-safe-unpickle``. *device_policy* needs ``.device``, ``.dtype``, ``.vae_dtype``
    (default CPU fp32).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = Path(path)
    if family is not None and family not in ci.ModelFamily.__args__:  # type: ignore[attr-defined]
        raise ValueError(f"unknown model family {family!r}")
    if detect_file_format(path) == "diffusers-folder":
        loaded = _load_folder(path, device_policy, family)
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
    from app.models.ldm_convert import vae_to_ldm

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
        device, _, dtype = _policy(device_policy)
    vae = _build_vae(sd, fam, dtype, path)
    if like is not None:
        vae.register_to_config(scaling_factor=like.pipe.vae.config.scaling_factor)
    return vae.to(device)
