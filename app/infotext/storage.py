"""Reading and writing the infotext inside image files (spec §4.5). Pure PIL, no torch.

- PNG: a `parameters` text chunk (tEXt, or iTXt when the text is not latin-1); other info
  keys passed as `existing_info` are kept.
- JPEG / WebP / AVIF: EXIF UserComment (tag 0x9286 in the Exif IFD) encoded the way piexif's
  "unicode" encoding does it: `b"UNICODE\\0"` followed by UTF-16BE text. The EXIF block is built
  with PIL's `Image.Exif`, so piexif is not needed.
- GIF: the `comment` extension (UTF-8).
- NovelAI PNGs (`Software: NovelAI`) are converted on reading into an A1111 infotext.

`png_info` reads and parses in one call (the PNG Info tab).
"""

from __future__ import annotations

import io
import json
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from app.infotext.parse import parse_generation_parameters
from app.infotext.samplers import SAMPLER_NAMES

#: Info keys that `read_info_from_image` drops from the returned items (as A1111 does).
IGNORED_INFO_KEYS = frozenset({
    "jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "exif", "loop", "background", "timestamp",
    "duration", "progressive", "progression", "icc_profile", "chromaticity", "photoshop",
})

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF", "gif": "GIF"}


def normalize_format(fmt: str) -> str:
    """`"png"`, `".JPG"`, `"jpeg"`, `"WEBP"` ... -> the PIL format name; ValueError otherwise."""
    key = fmt.lower().lstrip(".")
    if key not in _FORMATS:
        raise ValueError(f"unsupported image format {fmt!r}; expected one of {', '.join(sorted(_FORMATS))}")
    return _FORMATS[key]


# ------------------------------------------------------------------------------ EXIF UserComment
def encode_user_comment(text: str) -> bytes:
    """piexif's `UserComment.dump(text, encoding="unicode")`: `UNICODE\\0` + UTF-16BE."""
    return b"UNICODE\x00" + text.encode("utf-16-be")


def decode_user_comment(data: bytes | str) -> str:
    """Decode an EXIF UserComment: UNICODE (UTF-16, BE unless it is clearly LE), ASCII, JIS,
    undefined (all-zero prefix) or no prefix at all (decoded as UTF-8, errors ignored)."""
    if isinstance(data, str):
        return data
    prefix, body = data[:8], data[8:]
    if prefix == b"UNICODE\x00":
        le_hint = len(body) >= 2 and body[0] != 0 and body[1] == 0
        text = body.decode("utf-16-le" if le_hint else "utf-16-be", errors="ignore")
        return text.rstrip("\x00")
    if prefix == b"ASCII\x00\x00\x00":
        return body.decode("ascii", errors="ignore").rstrip("\x00")
    if prefix == b"JIS\x00\x00\x00\x00\x00":
        return body.decode("shift_jis", errors="ignore").rstrip("\x00")
    if prefix == b"\x00" * 8:
        return body.decode("utf-8", errors="ignore").rstrip("\x00")
    return data.decode("utf-8", errors="ignore").rstrip("\x00")


def exif_with_user_comment(text: str, base: Image.Exif | None = None) -> bytes:
    """EXIF bytes holding `text` as UserComment (other tags of `base` are kept)."""
    exif = base if base is not None else Image.Exif()
    exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = encode_user_comment(text)
    return exif.tobytes()


def _user_comment(image: Image.Image) -> str | None:
    try:
        raw = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except Exception:  # malformed EXIF must never break reading the image
        return None
    if raw is None:
        return None
    return decode_user_comment(raw) or None


# -------------------------------------------------------------------------------------- writing
def storable_text(text: str) -> str:
    """`text` with lone UTF-16 surrogates (which no UTF-8/UTF-16 encoder accepts) replaced by U+FFFD, so a
    strange prompt can never make an image unsavable. Text without them is returned unchanged."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def _prepare_for_format(image: Image.Image, pil_format: str) -> Image.Image:
    if pil_format in ("JPEG", "WEBP", "AVIF"):
        if image.mode == "I;16":
            image = image.point(lambda v: v * 0.0038910505836576).convert("RGB" if pil_format != "JPEG" else "L")
        if pil_format == "JPEG" and image.mode not in ("RGB", "L", "CMYK"):
            image = image.convert("RGB")
        elif pil_format != "JPEG" and image.mode not in ("RGB", "RGBA", "L"):
            image = image.convert("RGBA" if "A" in image.mode else "RGB")
    return image


def encode_image(
    image: Image.Image,
    infotext: str | None,
    fmt: str = "png",
    *,
    jpeg_quality: int = 80,
    existing_info: Mapping[str, Any] | None = None,
    webp_lossless: bool = False,
) -> bytes:
    """Encode `image` to bytes in `fmt` with `infotext` embedded (None embeds nothing).

    PNG keeps the `existing_info` text keys (written before `parameters`).
    """
    pil_format = normalize_format(fmt)
    image = _prepare_for_format(image, pil_format)
    infotext = storable_text(infotext) if infotext is not None else None
    buf = io.BytesIO()
    if pil_format == "PNG":
        info = PngImagePlugin.PngInfo()
        items = {k: v for k, v in (existing_info or {}).items() if isinstance(k, str) and k not in IGNORED_INFO_KEYS}
        if infotext is not None:
            items["parameters"] = infotext
        for key, value in items.items():
            info.add_text(storable_text(key), storable_text(value if isinstance(value, str) else str(value)))
        image.save(buf, format="PNG", pnginfo=info)
    elif pil_format in ("JPEG", "WEBP", "AVIF"):
        kwargs: dict[str, Any] = {"quality": jpeg_quality}
        if pil_format == "WEBP":
            kwargs["lossless"] = webp_lossless
        if infotext is not None:
            kwargs["exif"] = exif_with_user_comment(infotext)
        image.save(buf, format=pil_format, **kwargs)
    else:  # GIF
        if infotext is not None:
            image.save(buf, format="GIF", comment=infotext.encode("utf-8"))
        else:
            image.save(buf, format="GIF")
    return buf.getvalue()


def image_with_infotext(image: Image.Image, infotext: str | None, fmt: str = "png", **kwargs: Any) -> Image.Image:
    """A re-opened copy of `image` encoded in `fmt` with `infotext` embedded (for in-memory use)."""
    data = encode_image(image, infotext, fmt, **kwargs)
    result = Image.open(io.BytesIO(data))
    result.load()
    return result


def save_image_file(
    image: Image.Image,
    path: str | os.PathLike[str],
    infotext: str | None,
    fmt: str | None = None,
    *,
    jpeg_quality: int = 80,
    existing_info: Mapping[str, Any] | None = None,
    webp_lossless: bool = False,
) -> Path:
    """Write `image` to `path` with the infotext embedded, atomically (temp file + os.replace).

    `fmt` defaults to the path's extension. Raises OSError/ValueError on failure (callers that
    need a friendly error wrap it; see `app.outputs.save.ImageSaveError`).
    """
    target = Path(path)
    data = encode_image(image, infotext, fmt or target.suffix, jpeg_quality=jpeg_quality,
                        existing_info=existing_info, webp_lossless=webp_lossless)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


# -------------------------------------------------------------------------------------- reading
def _plain(value: Any) -> Any:
    """Make an info value JSON-friendly (bytes are decoded, tuples become lists)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="ignore")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return str(value)


def novelai_infotext(description: str, comment: str, width: int, height: int) -> str:
    """A1111's conversion of a NovelAI PNG (Description + Comment JSON) into an infotext."""
    info = json.loads(comment)
    sampler = _sampler_name(str(info["sampler"]))
    return (
        f"{description}\nNegative prompt: {info['uc']}\n"
        f"Steps: {info['steps']}, Sampler: {sampler}, CFG scale: {info['scale']}, Seed: {info['seed']}, "
        f"Size: {width}x{height}, Clip skip: 2, ENSD: 31337"
    )


def _sampler_name(novelai_sampler: str) -> str:
    return SAMPLER_NAMES.get(novelai_sampler.lower(), "Euler a")


def read_info_from_image(image: Image.Image) -> tuple[str | None, dict[str, Any]]:
    """The infotext stored in `image` and its other info items (as `/sdapi/v1/png-info` returns).

    Order of precedence as in A1111: EXIF UserComment over a PNG `parameters` chunk; a GIF
    `comment` when there is no EXIF; a NovelAI PNG is converted. Items exclude `parameters` and
    the technical keys in `IGNORED_INFO_KEYS`; bytes values are decoded to text.
    """
    items = dict(image.info or {})
    try:  # PNG text chunks after the image data are only in `.text` (which loads the image)
        for key, value in getattr(image, "text", {}).items():
            items.setdefault(key, value)
    except Exception:  # a truncated file: keep what the header gave us
        pass
    geninfo = items.pop("parameters", None)
    if isinstance(geninfo, bytes):
        geninfo = geninfo.decode("utf-8", errors="ignore")
    if "exif" in items:
        comment = _user_comment(image)
        if comment:
            geninfo = comment
    elif "comment" in items:
        comment = items["comment"]
        geninfo = comment.decode("utf-8", errors="ignore") if isinstance(comment, bytes) else str(comment)
    for key in IGNORED_INFO_KEYS:
        items.pop(key, None)
    plain = {str(k): _plain(v) for k, v in items.items()}
    if plain.get("Software") == "NovelAI" and "Comment" in plain:
        try:
            geninfo = novelai_infotext(str(plain.get("Description", "")), str(plain["Comment"]),
                                       image.width, image.height)
        except (ValueError, KeyError, TypeError):
            pass  # not the NovelAI JSON we know: keep what we found
    return geninfo, plain


def png_info(image: Any, *, skip_fields: tuple[str, ...] | list[str] = (), **parse_options: Any) -> dict[str, Any]:
    """`/sdapi/v1/png-info` and the PNG Info tab: `{"info", "items", "parameters"}` of an image.

    An image without an infotext gives `info` "" and the parse defaults, as in A1111.
    """
    text, items = read_info_from_image(image)
    text = text or ""
    return {"info": text, "items": items,
            "parameters": parse_generation_parameters(text, skip_fields, **parse_options)}
