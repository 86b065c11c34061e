"""Checkpoint Merger (A1111's tab, spec §8): job kind "merge", run on the worker (torch).

Methods, with multiplier M and models A (primary), B (secondary), C (tertiary):
- "Weighted sum": A·(1-M) + B·M, for every tensor both have (A's other tensors kept as they are);
- "Add difference": A + (B - C)·M, for every tensor all three have;
- "No interpolation": A as it is (with fp16, a baked VAE, or new metadata).
A tensor the models have in different shapes is a clear error (different architectures), except the UNet's first
convolution of an inpainting / instruct-pix2pix model, whose extra input channels are kept from A (A1111's rule);
models with too few tensors in common (less than half of A's UNet) are refused before anything is written.

"Discard weights with matching name" (`discard_weights`, a regular expression, A1111's `re.search`): every tensor
whose key matches is left out of the output (e.g. `^model_ema` drops the EMA weights). "Copy config from"
(`config_source`, A1111's index: 0 "A, B or C", 1 "B", 2 "C", 3 "Don't"): the per-checkpoint config `name.yaml`
next to the chosen input (the first of A, B, C that has one, for 0) is copied next to the output as `<output>.yaml`;
an input without one copies nothing (most checkpoints have none: their family is read from the file's keys).

Memory: the inputs are read tensor by tensor with safetensors' lazy `safe_open` (other formats are read whole by the
safe loader first) and the output is streamed: its header is laid out from the primary model's dtypes and shapes,
then each merged tensor is written as soon as it is computed (`merge_io.write_safetensors`). Peak: one tensor of each
input plus the merged tensor (for a .ckpt input, that whole model), never a whole model per input. The output is
always `.safetensors` (never a pickle), written to a temp file and renamed into the first checkpoint folder; an
existing file is not replaced; an interrupted or failed merge leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from app.engine.modes.merge_io import TORCH_DTYPES, Spec, Tensors, open_tensors, write_safetensors
from app.errors import UserError

METHODS = ("No interpolation", "Weighted sum", "Add difference")
_SKIP = ("cond_stage_model.transformer.text_model.embeddings.position_ids",)
_FIRST_CONV = "model.diffusion_model.input_blocks.0.0.weight"
_BAD_NAME = re.compile(r'[\\/:*?"<>|\x00-\x1f]')
CONFIG_SOURCES = ("A, B or C", "B", "C", "Don't")  # A1111's "Copy config from" choices; the index is sent


@dataclass(frozen=True)
class MergeModel:
    """One input: its file, display name and sha256 (for the recipe)."""

    filename: str
    name: str
    sha256: str | None = None
    legacy_hash: str = ""


@dataclass(frozen=True)
class MergeRequest:
    primary: MergeModel
    secondary: MergeModel | None
    tertiary: MergeModel | None
    method: str = "Weighted sum"
    multiplier: float = 0.3
    half: bool = False
    vae: str | None = None  # a VAE file to bake in
    save_metadata: bool = True
    custom_name: str = ""
    discard_weights: str = ""  # a regular expression: matching keys are left out of the output
    config_source: int = 0  # index into CONFIG_SOURCES


def default_name(req: MergeRequest) -> str:
    """A1111's file name: `A_0.7-B_0.3-Weighted_sum-merged` (`A-No_interpolation-merged` without B)."""
    def stem(model: MergeModel) -> str:
        return Path(model.name).stem.replace("/", "_")

    if req.method == "No interpolation" or req.secondary is None:
        return f"{stem(req.primary)}-No_interpolation-merged"
    m = req.multiplier
    return (f"{stem(req.primary)}_{round(1 - m, 2)}-{stem(req.secondary)}_{round(m, 2)}-"
            f"{req.method.replace(' ', '_')}-merged")


def output_path(req: MergeRequest, folder: Path) -> Path:
    name = (req.custom_name or "").strip() or default_name(req)
    if name.lower().endswith(".safetensors"):
        name = name[: -len(".safetensors")]
    if not name or _BAD_NAME.search(name) or name.startswith("."):
        raise UserError(f"bad output name {name!r}: use a plain file name (no folders or special characters)")
    path = folder / f"{name}.safetensors"
    if path.exists():
        raise UserError(f"{path.name} already exists in {folder}; choose another custom name")
    return path


def _check_request(req: MergeRequest) -> None:
    if req.method not in METHODS:
        raise UserError(f"unknown merge method {req.method!r}; use one of {', '.join(METHODS)}")
    if req.method in ("Weighted sum", "Add difference") and req.secondary is None:
        raise UserError(f"{req.method} needs a secondary model")
    if req.method == "Add difference" and req.tertiary is None:
        raise UserError("Add difference needs a tertiary model")
    if not -10.0 <= float(req.multiplier) <= 10.0:
        raise UserError(f"multiplier {req.multiplier} is out of range")
    if req.config_source not in range(len(CONFIG_SOURCES)):
        raise UserError(f"config source {req.config_source!r} must be 0..3 ({', '.join(CONFIG_SOURCES)})")
    discard_pattern(req.discard_weights)


def discard_pattern(text: str) -> re.Pattern[str] | None:
    """The compiled "Discard weights with matching name" expression (None when empty); a bad one is a clear error."""
    if not (text or "").strip():
        return None
    try:
        return re.compile(text)
    except re.error as exc:
        raise UserError(f"Discard weights: {text!r} is not a valid regular expression ({exc})") from None


def config_to_copy(req: MergeRequest) -> Path | None:
    """The `name.yaml` beside the input that "Copy config from" names (A1111's rule), or None."""
    def config(model: MergeModel | None) -> Path | None:
        if model is None:
            return None
        candidate = Path(model.filename).with_suffix(".yaml")
        return candidate if candidate.is_file() else None

    if req.config_source == 0:
        return config(req.primary) or config(req.secondary) or config(req.tertiary)
    if req.config_source == 1:
        return config(req.secondary)
    if req.config_source == 2:
        return config(req.tertiary)
    return None


def _check_architectures(a: Tensors, others: list[tuple[str, Tensors]]) -> None:
    unet = [k for k in a.keys() if k.startswith("model.diffusion_model.")] or a.keys()
    for label, other in others:
        theirs = set(other.keys())
        common = sum(1 for k in unet if k in theirs)
        if common < max(1, len(unet) // 2):
            raise UserError(f"the {label} model has only {common} of the primary model's {len(unet)} UNet tensors: "
                            "the models have different architectures and cannot be merged")


def _combine(key: str, a: torch.Tensor, b: torch.Tensor, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
             label: str) -> torch.Tensor:
    if a.shape == b.shape:
        return fn(a, b)
    if key == _FIRST_CONV and a.dim() == 4 and a.shape[0] == b.shape[0] and a.shape[2:] == b.shape[2:] \
            and a.shape[1] > b.shape[1]:
        out = a.clone()  # inpainting / pix2pix primary: the extra input channels stay A's
        out[:, : b.shape[1]] = fn(a[:, : b.shape[1]], b)
        return out
    raise UserError(f"tensor {key} has shape {tuple(a.shape)} in the primary model and {tuple(b.shape)} in the "
                    f"{label} model: the models have different architectures and cannot be merged")


def _float(t: torch.Tensor) -> bool:
    return t.is_floating_point()


def merged_tensors(req: MergeRequest, a: Tensors, b: Tensors | None, c: Tensors | None,
                   should_stop: Callable[[], bool] = lambda: False,
                   step: Callable[[int, int], None] = lambda i, n: None) -> Iterator[tuple[str, torch.Tensor]]:
    """(key, tensor) of the merged model, computed one key at a time (in A's key order)."""
    m = float(req.multiplier)
    keys = a.keys()
    b_keys = set(b.keys()) if b is not None else set()
    c_keys = set(c.keys()) if c is not None else set()
    for i, key in enumerate(keys):
        if should_stop():
            raise UserError("the merge was interrupted; nothing was written")
        if (i + 1) % max(1, len(keys) // 100) == 0 or i + 1 == len(keys):
            step(i + 1, len(keys))  # about 100 progress events, not one per tensor
        tensor = a.get(key)
        if key not in _SKIP and _float(tensor):
            if req.method == "Weighted sum" and b is not None and key in b_keys:
                tensor = _combine(key, tensor.float(), b.get(key).float(),
                                  lambda x, y: x * (1 - m) + y * m, "secondary").to(tensor.dtype)
            elif req.method == "Add difference" and b is not None and c is not None and key in b_keys \
                    and key in c_keys:
                bt, ct = b.get(key).float(), c.get(key).float()
                if bt.shape != ct.shape:
                    raise UserError(f"tensor {key} has shape {tuple(bt.shape)} in the secondary model and "
                                    f"{tuple(ct.shape)} in the tertiary model: different architectures")
                tensor = _combine(key, tensor.float(), bt - ct, lambda x, d: x + d * m, "secondary").to(tensor.dtype)
        if req.half and _float(tensor):
            tensor = tensor.half()
        yield key, tensor.contiguous()


def _vae_keys(a: Tensors, vae: Tensors, vae_file: str) -> dict[str, str]:
    """checkpoint key -> VAE key for every VAE tensor the checkpoint has (shapes checked before anything is written)."""
    ours = set(a.keys())
    found: dict[str, str] = {}
    for key in vae.keys():
        target = key if key.startswith("first_stage_model.") else f"first_stage_model.{key}"
        if target in ours:
            if vae.spec(key).shape != a.spec(target).shape:
                raise UserError(f"VAE tensor {key} has shape {vae.spec(key).shape}, the checkpoint's "
                                f"{a.spec(target).shape}: this VAE does not fit the model")
            found[target] = key
    if not found:
        raise UserError(f"the VAE {Path(vae_file).name} has no tensor the checkpoint's VAE (first_stage_model) has")
    return found


def recipe_metadata(req: MergeRequest, metas: list[dict[str, str]]) -> dict[str, str]:
    """A1111's `sd_merge_recipe` / `sd_merge_models` and the models' own metadata (A's last, so it wins)."""
    metadata: dict[str, str] = {}
    for meta in reversed(metas):
        metadata.update({k: str(v) for k, v in meta.items()})
    models = [m for m in (req.primary, req.secondary, req.tertiary) if m is not None]
    recipe = {"type": "webui", "primary_model_hash": req.primary.sha256,
              "secondary_model_hash": req.secondary.sha256 if req.secondary else None,
              "tertiary_model_hash": req.tertiary.sha256 if req.tertiary else None,
              "interp_method": req.method, "multiplier": req.multiplier, "save_as_half": req.half,
              "custom_name": req.custom_name, "config_source": req.config_source,
              "bake_in_vae": Path(req.vae).name if req.vae else None, "discard_weights": req.discard_weights,
              "is_inpainting": False, "is_instruct_pix2pix": False}
    merged_models: dict[str, Any] = {}
    for model, meta in zip(models, metas, strict=False):
        if model.sha256:
            entry: dict[str, Any] = {"name": model.name, "legacy_hash": model.legacy_hash,
                                     "sd_merge_recipe": None}
            if meta.get("sd_merge_recipe"):
                try:
                    entry["sd_merge_recipe"] = json.loads(meta["sd_merge_recipe"])
                except ValueError:
                    entry["sd_merge_recipe"] = None
                merged_models.update(_json_object(meta.get("sd_merge_models")))
            merged_models[model.sha256] = entry
    metadata["sd_merge_recipe"] = json.dumps(recipe)
    metadata["sd_merge_models"] = json.dumps(merged_models)
    metadata["format"] = "pt"
    return metadata


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def merge(req: MergeRequest, folder: Path, should_stop: Callable[[], bool] = lambda: False,
          step: Callable[[int, int], None] = lambda i, n: None) -> Path:
    """Merge and write the output file (streamed, tensor by tensor); returns its path."""
    _check_request(req)
    target = output_path(req, folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{target.name}.tmp"
    with ExitStack() as stack:
        a, meta_a = open_tensors(req.primary.filename, stack)
        b, meta_b = open_tensors(req.secondary.filename, stack) if req.secondary is not None and \
            req.method != "No interpolation" else (None, {})
        c, meta_c = open_tensors(req.tertiary.filename, stack) if req.tertiary is not None and \
            req.method == "Add difference" else (None, {})
        _check_architectures(a, [(label, t) for label, t in (("secondary", b), ("tertiary", c)) if t is not None])
        vae, vae_map = None, {}
        if req.vae:
            vae, _ = open_tensors(req.vae, stack)
            vae_map = _vae_keys(a, vae, req.vae)
        discard = discard_pattern(req.discard_weights)
        plan = []
        for key in a.keys():
            if discard is not None and discard.search(key):
                continue
            spec = a.spec(key)
            plan.append((key, Spec("F16", spec.shape) if req.half and spec.is_float else spec))
        dtypes = {key: spec.dtype for key, spec in plan}

        def tensors() -> Iterator[tuple[str, torch.Tensor]]:
            for key, tensor in merged_tensors(req, a, b, c, should_stop, step):
                if key not in dtypes:
                    continue  # discarded
                if vae is not None and key in vae_map:
                    tensor = vae.get(vae_map[key]).to(TORCH_DTYPES[dtypes[key]]).contiguous()
                yield key, tensor

        metas = [meta_a] + ([meta_b] if b is not None else []) + ([meta_c] if c is not None else [])
        metadata = recipe_metadata(req, metas) if req.save_metadata else {"format": "pt"}
        config = config_to_copy(req)
        yaml_target = target.with_suffix(".yaml")
        copied = False
        try:
            write_safetensors(tmp, plan, tensors(), metadata)
            if config is not None:  # before the model appears, so a listing never sees it without its config
                shutil.copyfile(config, yaml_target)
                copied = True
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            if copied:
                yaml_target.unlink(missing_ok=True)
            raise
    return target


# -- the job ------------------------------------------------------------------------------------------------------------
def _model(catalog: Any, title: str, label: str) -> MergeModel | None:
    if not title or title == "None":
        return None
    info = catalog.find_checkpoint(title)
    if info is None:
        raise UserError(f"{label} model {title!r} not found (refresh the checkpoint list)")
    if info.is_folder:
        raise UserError(f"{label} model {info.name} is a diffusers folder; the merger reads single files")
    info = catalog.ensure_hash(info)
    return MergeModel(info.filename, info.name, info.sha256, info.old_hash)


def request_from(options: dict[str, Any], catalog: Any) -> MergeRequest:
    """A `MergeRequest` from the job's `params.extras["merge"]` (checkpoint titles and a VAE name, as the tab sends)."""
    primary = _model(catalog, str(options.get("primary") or ""), "primary")
    if primary is None:
        raise UserError("choose a primary model")
    vae_name = str(options.get("vae") or "None")
    vae = None
    if vae_name != "None":
        found = catalog.find_vae(vae_name)
        if found is None:
            raise UserError(f"VAE {vae_name!r} not found")
        vae = found.filename
    try:
        multiplier = float(options.get("multiplier", 0.3))
    except (TypeError, ValueError):
        raise UserError(f"multiplier must be a number, got {options.get('multiplier')!r}") from None
    return MergeRequest(primary, _model(catalog, str(options.get("secondary") or ""), "secondary"),
                        _model(catalog, str(options.get("tertiary") or ""), "tertiary"),
                        method=str(options.get("method") or "Weighted sum"), multiplier=multiplier,
                        half=bool(options.get("half", False)), vae=vae,
                        save_metadata=bool(options.get("save_metadata", True)),
                        custom_name=str(options.get("custom_name") or ""),
                        discard_weights=str(options.get("discard_weights") or ""),
                        config_source=_config_source(options.get("config_source", 0)))


def _config_source(value: Any) -> int:
    """"Copy config from" as A1111's index (0..3) or one of its labels."""
    if isinstance(value, str) and value in CONFIG_SOURCES:
        return CONFIG_SOURCES.index(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"config source must be one of {', '.join(CONFIG_SOURCES)}, got {value!r}") from None


def run_merge_job(ctx: Any) -> Any:
    """`JobService` runner for kind "merge": writes the merged checkpoint and adds it to the catalog."""
    from app.jobs.job import JobResult

    options = ctx.params.extras.get("merge") if isinstance(getattr(ctx.params, "extras", None), dict) else None
    if not isinstance(options, dict):
        raise UserError("a merge job needs params.extras['merge'] (primary, secondary, tertiary, method, ...)")
    catalog = ctx.manager.catalog
    req = request_from(options, catalog)
    folder = Path(ctx.paths.ckpt_dirs[0])
    ctx.begin(1, 0, "Merging checkpoints")
    path = merge(req, folder, lambda: bool(ctx.interrupted), lambda i, n: ctx.step(i, n))
    catalog.refresh_checkpoints()
    info = catalog.checkpoint_for_file(path) or catalog.add_checkpoint_file(path)
    return JobResult(info={"filename": str(path), "title": info.title}, value=str(path))
