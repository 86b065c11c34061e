"""The public plugin contract (versioned): what an Atelier-native plugin implements.

An extension folder may hold ``atelier_plugin.py``; every ``Plugin`` subclass defined in it is
instantiated once and registered. All hooks are optional and run on the job worker thread; a hook
that raises is reported in the job's warnings and the plugin is skipped for the rest of that job.

    class Grain(Plugin):
        id = "grain"
        title = "Film grain"
        extra_fields = (ExtraField("grain_strength", "Grain strength", "slider", 0.0, minimum=0, maximum=1),)

        def after_image(self, info: ImageInfo):
            strength = self.value(info.params, "grain_strength")
            ...
            info.extra_generation_params["Grain"] = strength
            return new_image            # or None to keep the image

Hook order for a job: ``adjust_params`` (before the job is planned) → ``on_job_start`` (prompts and
seeds are known; may rewrite ``all_prompts``) → ``on_step`` per denoising step → ``after_image``
per image (before its infotext is written and it is saved) → ``on_image_saving`` / ``on_image_saved``
around each file written → ``on_job_end`` with the job's result. ``on_model_loaded`` runs when the model
manager has loaded a checkpoint. Where each hook is called: ``app/plugins/__init__.py`` ("Wiring").

Pure module: no torch, no gradio, no fastapi imports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from pathlib import Path

    from app.params import GenerationParams

#: Bumped when a hook signature or a dataclass below changes incompatibly.
API_VERSION = 1

#: Kinds of ExtraField the UI knows how to render.
FIELD_KINDS = ("checkbox", "slider", "number", "textbox", "dropdown", "radio")
JOB_KINDS = ("txt2img", "img2img")


class PluginError(Exception):
    """A plugin or extension could not be loaded or used (the message names which and why)."""


@dataclass(frozen=True)
class ExtraField:
    """A value a plugin reads from ``params.extras[name]``; the UI renders it, the API accepts it by name
    (top-level in ``extras`` or positionally/by name in ``alwayson_scripts[<plugin title>]["args"]``)."""

    name: str
    label: str
    kind: str = "textbox"
    default: Any = None
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in FIELD_KINDS:
            raise ValueError(f"ExtraField {self.name!r}: kind must be one of {', '.join(FIELD_KINDS)}, got {self.kind!r}")
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"ExtraField name must be a non-empty identifier, got {self.name!r}")
        object.__setattr__(self, "choices", tuple(self.choices))

    def coerce(self, value: Any) -> Any:
        """``value`` converted to this field's type; ValueError naming the field when it does not fit."""
        where = f"extra field {self.name!r}"
        try:
            if self.kind == "checkbox":
                if isinstance(value, str):
                    if value.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError(value)
                    return value.strip().lower() in ("true", "1", "yes")
                return bool(value)
            if self.kind in ("slider", "number"):
                if isinstance(value, bool):
                    raise ValueError(value)
                number = float(value)
                if isinstance(self.default, int) and not isinstance(self.default, bool) and number.is_integer():
                    number = int(number)
                if self.minimum is not None and number < self.minimum:
                    raise ValueError(f"{where}: {number} is below the minimum {self.minimum}")
                if self.maximum is not None and number > self.maximum:
                    raise ValueError(f"{where}: {number} is above the maximum {self.maximum}")
                return number
        except (TypeError, ValueError) as exc:
            if str(exc).startswith(where):
                raise
            raise ValueError(f"{where}: {value!r} is not a valid {self.kind} value") from None
        if self.kind in ("dropdown", "radio") and self.choices and value not in self.choices:
            raise ValueError(f"{where}: {value!r} is not one of {', '.join(map(str, self.choices))}")
        return value if self.kind != "textbox" else ("" if value is None else str(value))

    def describe(self) -> dict[str, Any]:
        """The ``/sdapi/v1/script-info`` arg shape."""
        return {"label": self.label, "value": self.default, "minimum": self.minimum, "maximum": self.maximum,
                "step": self.step, "choices": list(self.choices) or None}


@dataclass
class JobInfo:
    """A job whose prompts and seeds are known (``on_job_start``). Lists and dicts are the job's own:
    assign or mutate ``all_prompts`` / ``all_negative_prompts`` to change what is generated;
    ``extra_generation_params`` are written to every image's infotext."""

    params: GenerationParams
    kind: str
    all_prompts: list[str]
    all_negative_prompts: list[str]
    seeds: list[int]
    subseeds: list[int]
    extra_generation_params: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@dataclass
class StepInfo:
    """One finished denoising step (read-only view). ``latents`` is the current latent tensor (do not
    modify it); call ``request_interrupt()`` to stop the job after this step."""

    params: GenerationParams
    kind: str
    step: int
    total_steps: int
    latents: Any = None
    interrupt_requested: bool = False

    def request_interrupt(self) -> None:
        self.interrupt_requested = True


@dataclass
class ImageInfo:
    """One finished image, before its infotext is written and it is saved. ``after_image`` returns a
    new PIL image or None (keep). Keys added to ``extra_generation_params`` go into the infotext of
    this and the following images of the job (A1111 behaviour of ``p.extra_generation_params``)."""

    params: GenerationParams
    kind: str
    index: int
    image: Any
    seed: int
    prompt: str
    negative_prompt: str
    extra_generation_params: dict[str, Any]


@dataclass
class SaveInfo:
    """One image file being written (``on_image_saving``: before anything is written, ``path`` is the file it will
    be written to; may replace ``image``, ``infotext`` (the text stored in the file) or ``path``) or just written
    (``on_image_saved``: ``path`` is the file)."""

    params: GenerationParams
    kind: str
    image: Any
    infotext: str
    path: Path | None = None


@dataclass(frozen=True)
class UpscalerSpec:
    """An upscaler a plugin adds: ``upscale(image: PIL.Image, scale: float) -> PIL.Image``."""

    name: str
    upscale: Callable[[Any, float], Any]
    scale: float = 4.0


class Plugin:
    """Base class of Atelier-native plugins. Override only the hooks you need."""

    #: Stable id (registries are keyed by it); defaults to ``<extension>/<ClassName>``.
    id: ClassVar[str] = ""
    #: Shown in the UI and used as the ``alwayson_scripts`` key (case-insensitive).
    title: ClassVar[str] = ""
    api_version: ClassVar[int] = API_VERSION
    #: Job kinds the job hooks run for.
    kinds: ClassVar[Sequence[str]] = JOB_KINDS
    extra_fields: ClassVar[Sequence[ExtraField]] = ()

    # -- hooks ----------------------------------------------------------------------------------
    def setup(self, registry: Any) -> None:
        """Called once after loading: ``registry.register_upscaler(UpscalerSpec)`` goes here."""

    def register_routes(self, app: Any) -> None:
        """Called once with the FastAPI app when the server starts (add routes here)."""

    def adjust_params(self, params: GenerationParams) -> GenerationParams | None:
        """Before the job is planned: return changed params (or change them in place and return None)."""
        return None

    def on_job_start(self, info: JobInfo) -> None:
        """Prompts and seeds are known; may rewrite prompts and add infotext entries."""

    def on_step(self, info: StepInfo) -> None:
        """After each denoising step."""

    def after_image(self, info: ImageInfo) -> Any:
        """Per image: return a replacement PIL image, or None to keep it."""
        return None

    def on_image_saving(self, info: SaveInfo) -> None:
        """Before an image file is written to ``info.path``: replace ``info.image`` or ``info.infotext`` to change
        what is saved (or ``info.path``, where)."""

    def on_image_saved(self, info: SaveInfo) -> None:
        """After an image file was written to ``info.path``."""

    def on_model_loaded(self, model: Any) -> None:
        """After the model manager loaded a checkpoint (``model`` is its ``ModelHandle``: ``title``, ``sha256``...)."""

    def on_job_end(self, info: JobInfo, result: Any) -> None:
        """After the last image (``result`` is the job's ``app.jobs.job.JobResult``; it may be changed in place)."""

    # -- helpers --------------------------------------------------------------------------------
    def values(self, params: GenerationParams) -> dict[str, Any]:
        """This plugin's field values for a job: defaults ← ``params.extras[name]`` ←
        ``params.extras["alwayson_scripts"][title]`` (a list in field order, or a dict by name)."""
        out = {f.name: f.default for f in self.extra_fields}
        raw: object = params.extras  # typed a dict, but nothing enforces it: a plugin may have set anything
        extras = raw if isinstance(raw, dict) else {}
        for f in self.extra_fields:
            if f.name in extras:
                out[f.name] = f.coerce(extras[f.name])
        args = script_args_for(params, self.title) if self.title else None
        if isinstance(args, dict):
            args = args.get("args", args)
        if isinstance(args, dict):
            for f in self.extra_fields:
                if f.name in args:
                    out[f.name] = f.coerce(args[f.name])
        elif isinstance(args, (list, tuple)):
            for f, value in zip(self.extra_fields, args, strict=False):
                out[f.name] = f.coerce(value)
        return out

    def value(self, params: GenerationParams, name: str) -> Any:
        values = self.values(params)
        if name not in values:
            raise KeyError(f"plugin {self.id or type(self).__name__!r} has no extra field {name!r}")
        return values[name]


def script_args_for(params: Any, title: str) -> Any:
    """The ``alwayson_scripts`` entry of ``params.extras`` for ``title`` (case-insensitive), or None."""
    extras = getattr(params, "extras", None)
    table = extras.get("alwayson_scripts") if isinstance(extras, dict) else None
    if not isinstance(table, dict) or not title:
        return None
    wanted = title.strip().lower()
    for key, value in table.items():
        if str(key).strip().lower() == wanted:
            return value
    return None
