"""Loading a diffusers folder (``model_index.json`` + component folders) for ``app.models.load.loader``: its family from
the component configs, the pipeline class after checking that the folder names only diffusers/transformers
components (custom code in a model folder is never run), and ``from_pretrained`` offline with private tokenizers
where the folder has none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.models.load.checkpoint_io import CheckpointLoadError
from app.models.load.config_infer import ModelFamily
from app.models.load.detect import folder_family
from app.models.load.pipeline_build import (
    LoadedModel,
    device_and_dtypes,
    fresh_tokenizer,
    loaded_model,
    pad_token,
    place_pipeline,
)

#: the libraries a diffusers folder's ``model_index.json`` may name for its components
_FOLDER_LIBRARIES = ("diffusers", "transformers")


def pipeline_class(path: Path, index: Any) -> Any:
    """The diffusers pipeline class of a folder, after checking its ``model_index.json``: a diffusers
    pipeline class and components from diffusers (or one of its pipeline packages)/transformers only (never a module or code file named by
    the folder; diffusers itself reads the weights with ``weights_only=True`` and refuses remote code)."""
    import diffusers  # deferred: diffusers is a heavy import, only needed when a model is built

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


def load_folder(path: Path, device_policy: Any, family: ModelFamily | None) -> LoadedModel:
    device, dtype, _ = device_and_dtypes(device_policy)
    index = json.loads((path / "model_index.json").read_text("utf-8"))
    cls = pipeline_class(path, index)
    sched_cfg = json.loads((path / "scheduler" / "scheduler_config.json").read_text("utf-8"))
    family = family or folder_family(path, index, sched_cfg)
    kwargs: dict[str, Any] = {"local_files_only": True, "dtype": dtype}
    if family == "zimage":
        return _load_zimage_folder(path, cls, kwargs, sched_cfg, device, device_policy)
    if not (path / "tokenizer").is_dir():
        kwargs["tokenizer"] = fresh_tokenizer(pad_token(family))
    if family.startswith("sdxl") and not (path / "tokenizer_2").is_dir():
        kwargs["tokenizer_2"] = fresh_tokenizer(pad_token(family, 2))
    if "safety_checker" in index:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        pipe = cls.from_pretrained(str(path), **kwargs)  # trust_remote_code stays False
    except (OSError, ValueError) as exc:
        raise CheckpointLoadError(f"could not load diffusers folder {path}: {exc}") from exc
    place_pipeline(pipe, device, device_policy, family.startswith("sdxl"))
    return loaded_model(family, pipe, sched_cfg, path)


def _load_zimage_folder(path: Path, cls: Any, kwargs: dict[str, Any], sched_cfg: dict[str, Any], device: Any,
                        device_policy: Any) -> LoadedModel:
    """A diffusers Z-Image folder (``ZImagePipeline``); without a tokenizer folder the shipped Qwen3 one is used."""
    from app.prompts.qwen_tokenizer import qwen3_tokenizer

    if not (path / "tokenizer").is_dir():
        kwargs["tokenizer"] = qwen3_tokenizer()
    try:
        pipe = cls.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError) as exc:
        raise CheckpointLoadError(f"could not load diffusers folder {path}: {exc}") from exc
    place_pipeline(pipe, device, device_policy, False)
    sched_cfg = {**sched_cfg, "atelier_flow_timestep": "1-sigma"}
    loaded = loaded_model("zimage", pipe, sched_cfg, path)
    loaded.prediction_type = "flow"
    return loaded
