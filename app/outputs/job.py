"""A job's files: samples, extra copies, the grid and params.txt, where A1111's settings say (spec §9.4).

The engine hands every finished image (and, with ``save_init_img``, each img2img init image) with its infotext and naming facts to a ``JobSaver`` as soon as
it is made (so an interrupted job, or one of generate-forever's, keeps what it made); the saver decides
from the settings whether and where it is written, writes it with :mod:`app.outputs.save` and records
the path or, when the write fails, why: a job warning and an entry of ``save_errors`` (the API's
``info["save_errors"]``). The image is still returned. ``save_images=False`` writes no image.
Pure: no torch, no engine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.outputs import save
from app.outputs.filenames import NamingContext
from app.settings import setting_value

__all__ = ["JobSaver", "extras_folder", "save_extras_image"]

#: Job kind -> (samples setting, samples default, grids setting, grids default); other kinds use txt2img's.
_KIND_DIRS = {
    "txt2img": ("outdir_txt2img_samples", "outputs/txt2img-images", "outdir_txt2img_grids", "outputs/txt2img-grids"),
    "img2img": ("outdir_img2img_samples", "outputs/img2img-images", "outdir_img2img_grids", "outputs/img2img-grids"),
}


class JobSaver:
    """Writes one job's files; ``saved_paths`` and ``save_errors`` say what happened.

    ``settings`` is the job's effective settings (``get(key, default)``), ``paths`` the data folder
    layout (``data_dir``, ``params_file``; None writes relative folders as given and no params.txt),
    ``warn`` adds a job warning.
    """

    def __init__(self, kind: str, params: Any, settings: Any, paths: Any, warn: Callable[[str], None]):
        self.kind = kind if kind in _KIND_DIRS else "txt2img"
        self.params = params
        self.settings = settings
        self.paths = paths
        self.warn = warn
        self.saved_paths: list[str] = []
        #: Why images/grids of this job are not on disk; they are still returned.
        self.save_errors: list[str] = []
        self._params_written = False

    # -- what the settings ask for ----------------------------------------------------------------
    def wants_samples(self) -> bool:
        return bool(self.params.save_images) and bool(self.settings.get("samples_save", True))

    def wants_grid(self) -> bool:
        p = self.params
        return bool(p.save_images) and bool(p.save_grid) and bool(self.settings.get("grid_save", True))

    # -- writing --------------------------------------------------------------------------------
    def write_params_txt(self, text: str) -> None:
        """``params.txt``: the infotext of the job's first image (once per job; never fails the job)."""
        if self._params_written:
            return
        self._params_written = True
        target = getattr(self.paths, "params_file", None)
        if target is None or self.settings.get("no_prompt_history", False):
            return
        try:
            save.write_params_txt(target, text)
        except Exception as exc:  # params.txt is a convenience; never fail the job for it
            self.warn(f"could not write {target}: {exc}")

    def save(self, image: Any, text: str, naming: NamingContext, grid: bool = False, suffix: str = "",
             before_write: save.BeforeWrite | None = None) -> Path | None:
        """Write a sample (or the grid) into its folder; None (and a warning) when that fails. ``before_write``:
        see ``app.outputs.save.save_image`` (the extension hooks, once the file name is known)."""
        try:
            path = self._write(image, text, naming, grid, suffix, before_write)
        except Exception as exc:  # the image is still returned; the user learns why it is not on disk
            msg = f"could not save {'grid' if grid else 'image'}: {type(exc).__name__}: {exc}"
            self.warn(msg)
            self.save_errors.append(msg)
            return None
        self.saved_paths.append(str(path))
        return path

    def save_init_image(self, image: Any, name: str) -> None:
        """Setting ``save_init_img``: an init image into ``outdir_init_images`` as *name* (A1111: its MD5).

        Not part of the result; a failure is only a warning.
        """
        folder = Path(str(self.settings.get("outdir_init_images", "") or "outputs/init-images"))
        base = getattr(self.paths, "data_dir", None)
        if not folder.is_absolute() and base is not None:
            folder = Path(base) / folder
        try:
            save.save_image(image, folder, forced_filename=name, save_to_dirs=False,
                            existing_info={k: v for k, v in image.info.items() if isinstance(v, str)})
        except Exception as exc:  # noqa: BLE001 - a convenience copy; the job goes on
            self.warn(f"could not save the init image: {type(exc).__name__}: {exc}")

    def _outdir(self, grid: bool) -> Path:
        key_s, default_s, key_g, default_g = _KIND_DIRS[self.kind]
        if self.params.outpath_samples and not grid:
            raw = self.params.outpath_samples
        else:
            raw = self.settings.get(key_g if grid else key_s, "") or (default_g if grid else default_s)
        path = Path(raw)
        base = getattr(self.paths, "data_dir", None)
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        return path

    def _write(self, image: Any, text: str, naming: NamingContext, grid: bool, suffix: str,
               before_write: save.BeforeWrite | None) -> Path:
        st = self.settings
        common = {
            "before_write": before_write,
            "infotext": text,
            "context": naming,
            "extension": str(st.get("samples_format", "png") or "png"),
            "jpeg_quality": int(st.get("jpeg_quality", 80)),
            "pnginfo": bool(st.get("enable_pnginfo", True)),
            "add_number": bool(st.get("save_images_add_number", True)),
            "directories_filename_pattern": str(st.get("directories_filename_pattern", "[date]") or "[date]"),
        }
        if grid:
            return save.save_grid(
                image, self._outdir(True), grid_extended_filename=bool(st.get("grid_extended_filename", False)),
                save_to_dirs=bool(st.get("grid_save_to_dirs", True)), **common,
            )
        return save.save_image(
            image,
            self._outdir(False),
            seed=naming.seed,
            prompt=naming.prompt,
            save_to_dirs=bool(st.get("save_to_dirs", True)),
            samples_filename_pattern=str(st.get("samples_filename_pattern", "") or ""),
            save_txt=bool(st.get("save_txt", False)),
            suffix=suffix,
            **common,
        )


# ------------------------------------------------------------------------------ extras
def extras_folder(settings: Any, paths: Any, output_dir: str = "") -> Path:
    """Where the Extras tab saves: *output_dir*, else ``outdir_extras_samples``, under the data folder."""
    raw = output_dir or setting_value(settings, "outdir_extras_samples", "") or "outputs/extras-images"
    path = Path(str(raw))
    base = getattr(paths, "data_dir", None)
    return path if path.is_absolute() or base is None else Path(base) / path


def save_extras_image(image: Any, original: Any, text: str, name: str, folder: Path, settings: Any) -> Path:
    """An upscaled image with the original's infotext and the ``extras`` text; raises when it cannot be written.

    With ``use_original_name_batch`` an uploaded file name (*name*) gives the file its name.
    """
    existing = {k: v for k, v in original.info.items() if isinstance(k, str) and isinstance(v, str)}
    parameters = existing.pop("parameters", None)
    existing["extras"] = text
    forced = None
    if name and setting_value(settings, "use_original_name_batch", True):
        forced = Path(name).stem
    return save.save_image(
        image,
        folder,
        infotext=parameters,
        existing_info=existing,
        forced_filename=forced,
        short_filename=True,
        save_to_dirs=False,
        extension=str(setting_value(settings, "samples_format", "png") or "png"),
        jpeg_quality=int(setting_value(settings, "jpeg_quality", 80)),
        pnginfo=bool(setting_value(settings, "enable_pnginfo", True)),
    )
