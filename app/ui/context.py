"""`UiContext`: what every tab's handlers share (the runtime, settings, ui-config, last-used values, the
generate-forever loops) and the dynamic choice lists (samplers, upscalers, styles, scripts)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.engine.image import upscalers
from app.engine.sampling.names import sampler_labels, schedule_labels
from app.params import RUNNABLE_SCRIPTS
from app.plugins import registry_for
from app.prompts.styles import StyleDatabase
from app.ui.forever import ForeverLoop
from app.ui.form import NO_SCRIPT, SAME_CHECKPOINT, SAME_SAMPLER, SAME_SCHEDULER, hires_upscaler_choices
from app.ui.last_used import LastUsed

log = logging.getLogger(__name__)


class UiContext:
    """Shared state of one built UI. `runtime` is an `app.runtime.Runtime` (or a test double with `settings`,
    `ui_config`, `paths`, `args`, `service`, `catalog`)."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.ui_config = getattr(runtime, "ui_config", None)
        self.paths = runtime.paths
        self.last_used = LastUsed.for_data_dir(self.paths.data_dir)
        self.forever: dict[str, ForeverLoop] = {}
        self.session_jobs: dict[str, str] = {}  # browser session -> its latest job id (Interrupt acts on it)
        self._style_db: Any = None

    # -- shared objects ---------------------------------------------------------------------------------------------
    @property
    def service(self) -> Any:
        return getattr(self.runtime, "service", None)

    @property
    def catalog(self) -> Any:
        try:
            return self.runtime.catalog
        except Exception:  # noqa: BLE001 - the UI still builds without a catalog
            log.exception("the model catalog is not available")
            return None

    def remember_job(self, session: str | None, job: Any) -> None:
        if session:
            if len(self.session_jobs) > 1000:
                self.session_jobs.clear()
            self.session_jobs[session] = job.id

    def interrupt(self, session: str | None) -> None:
        """Interrupt this session's job (running: stop it; queued: cancel it), else the running job."""
        service = self.service
        if service is None:
            return
        job_id = self.session_jobs.get(session or "")
        job = service.get(job_id) if job_id and hasattr(service, "get") else None
        if job is not None and not job.done:
            service.interrupt(job_id)
        else:
            service.interrupt()

    def forever_loop(self, kind: str) -> ForeverLoop:
        """The tab's generate-forever loop: the runtime's durable one (`runtime.loops`, resumed after a restart),
        or one in memory for a test double without loops."""
        loops = getattr(self.runtime, "loops", None)
        if loops is not None and hasattr(loops, "ui_loop"):
            return loops.ui_loop(kind)
        if kind not in self.forever:
            self.forever[kind] = ForeverLoop(lambda: self.service, kind)
        return self.forever[kind]

    @property
    def style_db(self) -> Any:
        """`StyleDatabase` over the styles files (`--styles-file`, default styles.csv; new styles go to the first,
        as in the API's list), or None when they cannot be read."""
        if self._style_db is None:
            files = list(getattr(self.paths, "styles_files", ()) or [self.paths.styles_file])
            try:
                self._style_db = StyleDatabase(files)
            except Exception:  # noqa: BLE001
                log.exception("could not read %s", files)
                return None
        return self._style_db

    def reload_styles(self) -> int | None:
        """Re-read the styles files (A1111's 🔄 next to the styles): the number of styles, None when unreadable."""
        db = self.style_db
        if db is None:
            return None
        try:
            db.reload()
        except Exception:  # noqa: BLE001 - a bad file must not break the page
            log.exception("could not re-read the styles files")
            return None
        return len(db.styles)

    def restore_values(self, kind: str) -> dict[str, Any]:
        """The last-used values to start the form with ({} when the setting is off)."""
        if not self.settings.get("restore_last_used_values", True):
            return {}
        return self.last_used.get(kind)

    # -- dynamic choices --------------------------------------------------------------------------------------------
    def choices(self, name: str, tab: str) -> list[str]:
        """The choice list a `FieldSpec.choices` string names."""
        if name == "samplers":
            return sampler_labels()
        if name == "schedulers":
            return schedule_labels()
        if name == "hr_samplers":
            return [SAME_SAMPLER, *self.choices("samplers", tab)]
        if name == "hr_schedulers":
            return [SAME_SCHEDULER, *self.choices("schedulers", tab)]
        if name == "hr_checkpoints":
            return [SAME_CHECKPOINT, *self.checkpoint_titles()]
        if name == "refiner_checkpoints":  # A1111: "" (no refiner) first, then the checkpoint titles
            return ["", *self.checkpoint_titles()]
        if name == "hr_upscalers":
            return self.hires_upscalers()
        if name == "styles":
            return self.style_names()
        if name == "scripts":
            return self.script_names(tab)
        raise ValueError(f"unknown choice list {name!r}")

    def current_family(self) -> Any:
        """The family of the checkpoint selected in settings (read from its header; SD 1.x when unknown)."""
        from app.families import family_for_id, get_family

        try:
            info = self.catalog.find_checkpoint(str(self.settings.get("sd_model_checkpoint", "") or ""))
            if info is None:
                checkpoints = self.catalog.checkpoints()
                info = checkpoints[0] if checkpoints else None
            return family_for_id(_file_family(str(info.filename))) if info is not None else get_family("sd1")
        except Exception:  # a size hint must never break the page
            return get_family("sd1")

    def checkpoint_titles(self) -> list[str]:
        catalog = self.catalog
        try:
            return [c.title for c in catalog.checkpoints()] if catalog is not None else []
        except Exception:  # noqa: BLE001
            log.exception("could not list checkpoints")
            return []

    def canonical_checkpoint(self, value: Any) -> Any:
        """The catalog's current title for a checkpoint given by title, name or hash (A1111's lookup: before and after
        hashing, `name.safetensors` and `name.safetensors [abcdef0123]` are the same model); other values as given.

        Why: gradio checks a dropdown's value against the choices it last sent, and a first run hashes the files
        while the page is open, so the page can hold either form."""
        catalog = self.catalog
        if not isinstance(value, str) or not value or catalog is None:
            return value
        try:
            info = catalog.find_checkpoint(value)
        except Exception:  # noqa: BLE001 - a lookup never breaks the page
            log.exception("could not look up the checkpoint %r", value)
            return value
        return info.title if info is not None else value

    def vae_names(self) -> list[str]:
        catalog = self.catalog
        try:
            return ["Automatic", "None", *[v.name for v in catalog.vaes()]] if catalog is not None else ["Automatic"]
        except Exception:  # noqa: BLE001
            return ["Automatic", "None"]

    def upscaler_registry(self) -> upscalers.UpscalerRegistry:
        """The runtime's upscaler registry (the one its jobs use); a test double without one gets a registry
        for this data dir."""
        registry = getattr(self.runtime, "upscalers", None)
        if isinstance(registry, upscalers.UpscalerRegistry):
            return registry
        return upscalers.UpscalerRegistry(self.paths, self.settings)

    def hires_upscalers(self) -> list[str]:
        try:
            registry = self.upscaler_registry()
            return upscalers.hires_upscaler_names(registry)
        except Exception:  # noqa: BLE001
            log.exception("could not list hires upscalers")
            return hires_upscaler_choices(["Lanczos", "Nearest"])

    def upscaler_names(self) -> list[str]:
        """Extras upscalers: None, Lanczos, Nearest and the model files."""
        names = ["None", "Lanczos", "Nearest"]
        try:
            return ["None", *[n for n in self.upscaler_registry().names() if n != "None"]]
        except Exception:  # noqa: BLE001
            log.exception("could not list upscalers")
        catalog = self.catalog
        if catalog is not None:
            try:
                names += [u.name for u in catalog.upscaler_files()]
            except Exception:  # noqa: BLE001
                log.exception("could not list upscaler files")
        return names

    def style_names(self) -> list[str]:
        db = self.style_db
        if db is None:
            return []
        if hasattr(db, "names"):
            return list(db.names())
        styles = getattr(db, "styles", {})
        return list(styles.keys() if isinstance(styles, Mapping) else styles)

    def script_names(self, tab: str) -> list[str]:
        names = [NO_SCRIPT]
        names += [title for title, kinds in RUNNABLE_SCRIPTS.items() if tab in kinds]
        return names + [t for t in self.plugin_script_titles(tab) if t not in names]

    def plugin_script_titles(self, tab: str) -> list[str]:
        """Selectable scripts that enabled extensions registered for this tab."""
        scripts = getattr(registry_for(self.runtime), "scripts", []) or []
        return [str(s.title) for s in scripts if bool(getattr(s, "is_img2img", False)) == (tab == "img2img")]

    def params_txt(self) -> str:
        """The last generation's infotext (params.txt) unless the flags hide it."""
        args = getattr(self.runtime, "args", None)
        if args is not None and (getattr(args, "hide_ui_dir_config", False) or getattr(args, "no_prompt_history", False)):
            return ""
        path = Path(getattr(self.paths, "params_file", Path(self.paths.data_dir) / "params.txt"))
        try:
            return path.read_text(encoding="utf8")
        except OSError:
            return ""


@lru_cache(maxsize=64)
def _file_family(filename: str) -> str:
    """A checkpoint's family id from its header or its diffusers folder's config files, torch-free (cached: the
    token counter asks on every keystroke). A pickled ``.ckpt`` cannot be read without unpickling: SD 1.x sizes."""
    from app.models.catalog.parts import file_role
    from app.models.load.detect import folder_family

    path = Path(filename)
    if path.is_dir():
        return str(folder_family(path))
    return str(file_role(path).family or "sd1")
