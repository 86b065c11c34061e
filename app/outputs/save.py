"""Saving generated images the A1111 way: folders, file-name patterns, numbering, grids (spec §9.4).

Pure PIL (no torch). The engine calls `save_image` once per image (and `save_grid` once per job)
with the folder for the job kind (e.g. `outputs/txt2img-images`); the result is
`outputs/txt2img-images/<YYYY-MM-DD>/00000-<seed>.png` with the infotext embedded.

Files are written under a temporary hidden name in the target folder and then linked/renamed
into place, so a crash never leaves a half-written image under its final name, and two saves
that race for the same number never overwrite each other.
"""

from __future__ import annotations

import math
import os
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image, ImageColor

from app.infotext.storage import encode_image, normalize_format
from app.outputs import fileio
from app.outputs.filenames import FilenameGenerator, NamingContext

_SAVE_LOCK = threading.Lock()
#: `save_image(before_write=...)`: (image, infotext, path it will be written to) -> (image, infotext, path).
BeforeWrite = Callable[[Image.Image, "str | None", Path], "tuple[Image.Image, str | None, Path]"]


class ImageSaveError(Exception):
    """An image (or its text file) could not be written; `path` and `cause` say where and why."""

    def __init__(self, path: Path | str, cause: BaseException | str) -> None:
        self.path = Path(path)
        self.cause = cause
        super().__init__(f"could not save image to {self.path}: {cause}")


def next_sequence_number(folder: str | os.PathLike[str], basename: str = "") -> int:
    """1 + the largest leading number of the files in `folder` (after `basename-`); 0 if none."""
    prefix = f"{basename}-" if basename else ""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    result = -1
    for name in names:
        if name.startswith(prefix):
            head = os.path.splitext(name[len(prefix):])[0].split("-")[0]
            try:
                result = max(result, int(head))
            except ValueError:
                continue
    return result + 1


_UNSAFE_NAME_CHARS = re.compile(r"[\\/:\x00-\x1f\x7f]")


def _safe_component(part: str) -> str:
    """One path component: path separators, `:` (drive letters, NTFS streams) and control characters become `_`."""
    part = _UNSAFE_NAME_CHARS.sub("_", part)
    return "_" if part.strip(" .") == "" else part  # "", ".", "..", ". ." (Windows drops trailing dots/spaces)


def _safe_dirname(name: str) -> str:
    """A directory pattern result as a relative path: no `..`, `.`, empty or absolute components, no drive letters."""
    parts = [_safe_component(p) for p in re.split(r"[\\/]+", name) if p.strip(" .") != ""]
    return os.path.join(*parts) if parts else ""


def _safe_filename(name: str) -> str:
    """A file name from a pattern, a prompt or an uploaded name as ONE component inside its folder (`../x` →
    `.._x`, `C:\\x` → `C__x`, `/etc/x` → `_etc_x`)."""
    return _safe_component(name)


def _check_inside(folder: Path, path: Path) -> None:
    """ImageSaveError unless `path` is `folder` or below it (lexically, after `..` is resolved)."""
    root = os.path.abspath(folder)
    target = os.path.abspath(path)
    try:
        inside = os.path.commonpath([root, target]) == root
    except ValueError:  # different drives on Windows
        inside = False
    if not inside:
        raise ImageSaveError(path, f"refusing to write outside the output folder {root}")


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 text through a temp file in the same folder + os.replace; ImageSaveError on failure."""
    try:
        return fileio.write_text_atomic(path, text, newline="")
    except OSError as exc:
        raise ImageSaveError(Path(path), exc) from exc


def write_params_txt(path: str | os.PathLike[str], infotext: str) -> Path:
    """`params.txt` (the infotext of the first image of the latest generation), atomically."""
    return write_text_atomic(path, infotext)


def _claim(tmp: Path, folder: Path, names: Sequence[str]) -> Path:
    """Move `tmp` to the first of `names` that does not exist yet (never overwriting)."""
    for name in names:
        final = folder / name
        try:
            os.link(tmp, final)
            return final
        except FileExistsError:
            continue
        except OSError:  # no hard links here (e.g. FAT): check-then-rename under the lock
            if not final.exists():
                os.replace(tmp, final)
                return final
    raise FileExistsError(f"no free file name in {folder} (tried {names[0]} ... {names[-1]})")


def save_image(
    image: Image.Image,
    folder: str | os.PathLike[str],
    *,
    infotext: str | None = None,
    context: NamingContext | None = None,
    seed: int | None = None,
    prompt: str | None = None,
    basename: str = "",
    extension: str = "png",
    suffix: str = "",
    forced_filename: str | None = None,
    short_filename: bool = False,
    save_to_dirs: bool = True,
    directories_filename_pattern: str = "[date]",
    samples_filename_pattern: str = "",
    add_number: bool = True,
    jpeg_quality: int = 80,
    save_txt: bool = False,
    pnginfo: bool = True,
    existing_info: dict[str, Any] | None = None,
    before_write: BeforeWrite | None = None,
) -> Path:
    """Save one image as A1111 does and return its path.

    `folder` is the job kind's output folder; with `save_to_dirs` a sub-folder from
    `directories_filename_pattern` is added. The name is `NNNNN-<decoration><suffix>.<ext>`
    (`basename-NNNN...` when `basename` is set, e.g. "grid"), where the decoration is
    `samples_filename_pattern` or `[seed]` (`[seed]-[prompt_spaces]` without dirs), empty with
    `short_filename`. `forced_filename` replaces all of it. The infotext is embedded unless
    `pnginfo` is False; `save_txt` writes it to a `.txt` next to the image.
    `before_write(image, infotext, path)`, when given, runs once the file's path is known and before anything
    is written (A1111's `before_image_saved` sees `params.filename` so): it returns the image, infotext and
    path to write (a path changed by it is written as given, never numbered, and must stay inside `folder`).
    A numbered name is the next free one when it is announced and is kept even if the hook writes its own files
    with that number (sd-dynamic-prompts' `<name>.csv`); only a concurrent save of the same name in between
    moves the image to the next free number.
    Raises ImageSaveError (path + cause) when the folder or file cannot be written.
    """
    ctx = replace(context or NamingContext(), image=image)
    ctx.seed = seed if seed is not None else ctx.seed
    ctx.prompt = prompt if prompt is not None else ctx.prompt
    namegen = FilenameGenerator(ctx)
    ext = extension.lower().lstrip(".")
    normalize_format(ext)
    too_big = (ext in ("jpg", "jpeg") and max(image.size) > 65535) or (ext == "webp" and max(image.size) > 16383)
    if too_big:
        ext = "png"

    # 1. folder (the sub-folder from the pattern can never leave `folder`)
    root = Path(folder)
    target_dir = root
    if save_to_dirs:
        dirname = namegen.apply(directories_filename_pattern or "[prompt_words]").lstrip(" ").rstrip("\\ /")
        target_dir = target_dir / _safe_dirname(dirname)
    _check_inside(root, target_dir)
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageSaveError(target_dir, exc) from exc

    # 2. file name(s): a fixed name (overwritten like A1111 does) or numbered candidates
    fixed_name: str | None = None
    decoration = ""
    basename = _safe_filename(basename) if basename else ""
    if forced_filename is not None:
        fixed_name = _safe_filename(f"{forced_filename}.{ext}")
    else:
        if not short_filename and ctx.seed is not None:
            decoration = samples_filename_pattern or ("[seed]" if save_to_dirs else "[seed]-[prompt_spaces]")
        decoration = _safe_filename(namegen.apply(decoration) + suffix) if decoration or suffix else ""
        if not (add_number or decoration == ""):
            fixed_name = f"{decoration}.{ext}"
        elif decoration:
            decoration = f"-{decoration}"

    def numbered_names() -> list[str]:
        first = next_sequence_number(target_dir, basename)
        stems = (f"{n:05}" if basename == "" else f"{basename}-{n:04}" for n in range(first, first + 500))
        return [f"{stem}{decoration}.{ext}" for stem in stems]

    # 3. the path is known: a caller's hook may change the image, the infotext or the path
    final = target_dir / fixed_name if fixed_name else target_dir
    announced: list[str] = []  # the numbered name a hook was told: tried first (its own files may be counted now)
    if before_write is not None:
        planned = final if fixed_name else target_dir / numbered_names()[0]
        image, infotext, chosen = before_write(image, infotext, planned)
        announced = [] if fixed_name else [planned.name]
        if Path(chosen) != planned:
            final = Path(chosen)
            _check_inside(root, final)
            target_dir, fixed_name = final.parent, final.name
            try:
                target_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ImageSaveError(target_dir, exc) from exc
    _check_inside(root, final)

    # 4. encode, write a temp file, move it into place (numbering decided under the lock)
    try:
        data = encode_image(image, infotext if pnginfo else None, ext, jpeg_quality=jpeg_quality,
                            existing_info=existing_info if pnginfo else None)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # e.g. a mode the format cannot store
        raise ImageSaveError(final, f"cannot encode a {image.mode} image as {ext}: {exc}") from exc
    tmp = target_dir / f".{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        with _SAVE_LOCK:
            if fixed_name is not None:
                os.replace(tmp, final)
            else:
                final = _claim(tmp, target_dir, announced + numbered_names())
    except OSError as exc:
        raise ImageSaveError(final, exc) from exc
    finally:
        if tmp.exists():
            tmp.unlink()

    if save_txt and infotext is not None:
        write_text_atomic(final.with_suffix(".txt"), f"{infotext}\n")
    return final


def make_grid(
    images: Sequence[Image.Image],
    rows: int | None = None,
    *,
    batch_size: int = 1,
    n_rows: int = -1,
    prevent_empty_spots: bool = False,
    background: str = "#ffffff",
) -> Image.Image:
    """A1111's image grid. Rows: `rows`, else `n_rows` (>0), else `batch_size` (n_rows == 0),
    else the largest divisor <= sqrt(n) (`prevent_empty_spots`), else round(sqrt(n)).
    Cells are the largest image size; smaller images are centred."""
    if not images:
        raise ValueError("make_grid: no images")
    n = len(images)
    if rows is None:
        if n_rows > 0:
            rows = n_rows
        elif n_rows == 0:
            rows = batch_size
        elif prevent_empty_spots:
            rows = max(1, math.floor(math.sqrt(n)))
            while n % rows:
                rows -= 1
        else:
            rows = round(math.sqrt(n))
    rows = max(1, min(rows, n))
    cols = math.ceil(n / rows)
    w = max(im.width for im in images)
    h = max(im.height for im in images)
    grid = Image.new("RGB", (cols * w, rows * h), ImageColor.getcolor(background, "RGB"))
    for i, im in enumerate(images):
        grid.paste(im, ((i % cols) * w + (w - im.width) // 2, (i // cols) * h + (h - im.height) // 2))
    return grid


def save_grid(
    grid: Image.Image,
    folder: str | os.PathLike[str],
    *,
    infotext: str | None = None,
    context: NamingContext | None = None,
    extension: str = "png",
    grid_extended_filename: bool = False,
    **kwargs: Any,
) -> Path:
    """Save a grid as `<folder>/<date>/grid-0000.png` (A1111's `grid` basename, short name by default)."""
    return save_image(grid, folder, infotext=infotext, context=context, basename="grid", extension=extension,
                      short_filename=not grid_extended_filename, **kwargs)
