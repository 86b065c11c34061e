"""The wire between the server and its worker process: JSON headers with binary frames, never pickles.

A message is ``>II`` (header length, frame count), the UTF-8 JSON header, then each frame as ``>Q`` length + bytes.
Images travel as PNG frames (previews as JPEG); a header refers to frame ``i`` as ``{"__image__": i, "info": {...}}``
(``info``: the image's text entries, e.g. its infotext). Job params cross as ``GenerationParams.to_dict()`` (the
serialisation the durable queue stores) with the init images and mask as frames, or as plain dicts (extras, model
operations). Message types: server → worker ``init``, ``job``, ``interrupt``, ``skip``, ``shutdown``; worker → server
``ready``, ``started``, ``progress``, ``preview``, ``skip_cleared``, ``done``, ``failed``. Pure module (PIL only).
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Sequence
from typing import Any, BinaryIO

_HEAD = struct.Struct(">II")
_FRAME = struct.Struct(">Q")
#: Largest header accepted (a corrupt stream must not make the reader allocate gigabytes).
MAX_HEADER = 64 << 20


def write_message(stream: BinaryIO, header: dict[str, Any], frames: Sequence[bytes] = ()) -> None:
    """Write one message and flush (callers serialise writers with a lock)."""
    body = json.dumps(header, default=str).encode("utf-8")
    parts = [_HEAD.pack(len(body), len(frames)), body]
    for frame in frames:
        parts.append(_FRAME.pack(len(frame)))
        parts.append(frame)
    stream.write(b"".join(parts))
    stream.flush()


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    chunks: list[bytes] = []
    left = n
    while left > 0:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError("the other side closed the pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_message(stream: BinaryIO) -> tuple[dict[str, Any], list[bytes]]:
    """Read one message; ``EOFError`` when the pipe is closed, ``ValueError`` when the stream is corrupt."""
    size, count = _HEAD.unpack(_read_exact(stream, _HEAD.size))
    if size > MAX_HEADER:
        raise ValueError(f"message header of {size} bytes: the stream is corrupt")
    header = json.loads(_read_exact(stream, size).decode("utf-8"))
    frames = [_read_exact(stream, _FRAME.unpack(_read_exact(stream, _FRAME.size))[0]) for _ in range(count)]
    if not isinstance(header, dict):
        raise ValueError("message header is not a JSON object")
    return header, frames


# -- images ------------------------------------------------------------------------------------------------------------
def encode_image(image: Any, fmt: str = "PNG") -> bytes:
    """An image as PNG (lossless, fast compression) or JPEG (previews) bytes."""
    buf = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(buf, format="JPEG", quality=85)
    else:
        image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode_image(data: bytes) -> Any:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.copy() if img.format != "JPEG" else img.convert("RGB")


def _is_image(value: Any) -> bool:
    return hasattr(value, "save") and hasattr(value, "size") and hasattr(value, "mode") and hasattr(value, "getpixel")


def pack(value: Any, frames: list[bytes], fmt: str = "PNG") -> Any:
    """``value`` as JSON-friendly data; images become frames (appended to ``frames``)."""
    if _is_image(value):
        frames.append(encode_image(value, fmt))
        info = {k: v for k, v in getattr(value, "info", {}).items() if isinstance(v, str)}
        return {"__image__": len(frames) - 1, "info": info}
    if isinstance(value, dict):
        return {str(k): pack(v, frames, fmt) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [pack(v, frames, fmt) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def unpack(value: Any, frames: Sequence[bytes]) -> Any:
    """The inverse of :func:`pack` (frames back to PIL images)."""
    if isinstance(value, dict):
        if set(value) == {"__image__", "info"} and isinstance(value["__image__"], int):
            image = decode_image(frames[value["__image__"]])
            image.info.update(value["info"] or {})
            return image
        return {k: unpack(v, frames) for k, v in value.items()}
    if isinstance(value, list):
        return [unpack(v, frames) for v in value]
    return value


# -- job params ---------------------------------------------------------------------------------------------------------
def pack_params(params: Any, frames: list[bytes]) -> dict[str, Any]:
    """A job's params for the wire: ``{"generation": ..., "images": ...}`` or ``{"plain": ...}``."""
    if params is not None and hasattr(params, "to_dict") and hasattr(params, "img2img"):
        data = params.to_dict()
        img = params.img2img
        images: dict[str, Any] = {}
        if img is not None:
            images = {"init_images": pack(list(img.init_images or []), frames), "mask": pack(img.mask, frames)}
        return {"generation": pack(data, frames), "images": images}
    return {"plain": pack(params, frames)}


def unpack_params(data: dict[str, Any], frames: Sequence[bytes]) -> Any:
    if "generation" in data:
        from app.params import GenerationParams

        params = GenerationParams.from_dict(unpack(data["generation"], frames))
        images = data.get("images") or {}
        if params.img2img is not None and images:
            params.img2img.init_images = unpack(images.get("init_images") or [], frames)
            params.img2img.mask = unpack(images.get("mask"), frames)
        return params
    return unpack(data.get("plain"), frames)


# -- results ------------------------------------------------------------------------------------------------------------
_RESULT_FIELDS = ("infotexts", "seeds", "subseeds", "all_prompts", "all_negative_prompts", "info", "warnings",
                  "saved_paths", "interrupted", "value")


def pack_result(result: Any, frames: list[bytes]) -> dict[str, Any]:
    out = {name: pack(getattr(result, name), frames) for name in _RESULT_FIELDS}
    out["images"] = pack(list(result.images), frames)
    return out


def unpack_result(data: dict[str, Any], frames: Sequence[bytes]) -> Any:
    from app.jobs.job import JobResult

    result = JobResult()
    for name in _RESULT_FIELDS:
        if name in data:
            setattr(result, name, unpack(data[name], frames))
    result.images = unpack(data.get("images") or [], frames)
    return result
