"""Images in and out of the API: base64 (raw or `data:` URI), optional http(s) URLs, encoded outputs.

Input rules (spec §10.2): raw base64 or `data:image/...;base64,`; an http(s) URL only when the setting
`api_enable_requests` is on, and never to a loopback/private/link-local address while
`api_forbid_local_requests` is on (the default). Undecodable data → `ApiError(422, "Invalid encoded image ...")`
naming the field. Output: bare base64 (no `data:` prefix) in the `samples_format` setting with the infotext
embedded (PNG `parameters` chunk; EXIF UserComment for jpg/webp).

Decoding limits (docs/SECURITY.md §4): the size in the image header is checked before any pixel is decoded
(`api_max_image_megapixels` per image, `api_max_request_megapixels` for all images of one request, via a
`PixelBudget`), PIL's decompression-bomb error is a 413 too, and at most `api_image_decode_concurrency` images
are decoded at once (`app.api.limits.decode_slot`).
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import socket
import urllib.parse
import urllib.request
from typing import Any

from PIL import Image, UnidentifiedImageError

from app.api.errors import ApiError
from app.api.limits import decode_slot, limit

#: Largest image accepted from a URL (bytes).
MAX_URL_BYTES = 64 * 1024 * 1024
URL_TIMEOUT_S = 20


def _setting(settings: Any, key: str, default: Any) -> Any:
    value = settings.get(key) if settings is not None else None
    return default if value is None else value


def _check_url_host(url: str, field: str) -> None:
    host = urllib.parse.urlsplit(url).hostname
    if not host:
        raise ApiError(422, f"{field}: the URL has no host name")
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError as exc:
        raise ApiError(422, f"{field}: cannot resolve host {host!r}: {exc}") from None
    for info in infos:
        addr = ipaddress.ip_address(info[4][0].split("%")[0])
        if addr.is_loopback or addr.is_private or addr.is_link_local or addr.is_reserved or addr.is_unspecified \
                or addr.is_multicast:
            raise ApiError(403, f"{field}: requests to local addresses are forbidden ({host} is {addr}); "
                                "set api_forbid_local_requests to false to allow them")


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to another http(s) URL that passes the same local-address check."""

    def __init__(self, field: str, forbid_local: bool) -> None:
        self.field = field
        self.forbid_local = forbid_local

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        if not newurl.startswith(("http://", "https://")):
            raise ApiError(403, f"{self.field}: redirect to a non-http URL refused ({newurl})")
        if self.forbid_local:
            _check_url_host(newurl, self.field)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _fetch_url(url: str, field: str, settings: Any) -> bytes:
    if not _setting(settings, "api_enable_requests", True):
        raise ApiError(403, f"{field}: image URLs are disabled (setting api_enable_requests)")
    forbid_local = bool(_setting(settings, "api_forbid_local_requests", True))
    if forbid_local:
        _check_url_host(url, field)
    opener = urllib.request.build_opener(_CheckedRedirects(field, forbid_local))
    request = urllib.request.Request(url, headers={"User-Agent": "Atelier"})
    try:
        with opener.open(request, timeout=URL_TIMEOUT_S) as response:
            data = response.read(MAX_URL_BYTES + 1)
    except OSError as exc:
        raise ApiError(422, f"{field}: could not fetch {url}: {exc}") from None
    if len(data) > MAX_URL_BYTES:
        raise ApiError(413, f"{field}: the image at {url} is larger than {MAX_URL_BYTES} bytes")
    return data


class PixelBudget:
    """The decoded pixels one request may still use (setting `api_max_request_megapixels`; 0 = no limit)."""

    def __init__(self, settings: Any) -> None:
        megapixels = limit(settings, "api_max_request_megapixels")
        self.total = int(megapixels * 1_000_000) if megapixels > 0 else 0
        self.used = 0

    def take(self, field: str, pixels: int) -> None:
        if self.total and self.used + pixels > self.total:
            raise ApiError(413, f"{field}: the images of this request have more than {self.total / 1e6:g} "
                                "megapixels in all (setting api_max_request_megapixels)")
        self.used += pixels


def _check_pixels(image: Image.Image, field: str, settings: Any, budget: PixelBudget | None) -> None:
    width, height = image.size
    megapixels = limit(settings, "api_max_image_megapixels")
    if megapixels > 0 and width * height > megapixels * 1_000_000:
        raise ApiError(413, f"{field}: the image is {width}x{height} ({width * height / 1e6:.1f} megapixels), more "
                            f"than the limit of {megapixels:g} megapixels (setting api_max_image_megapixels)")
    if budget is not None:
        budget.take(field, width * height)


def decode_image(value: Any, field: str = "image", settings: Any = None,
                 budget: PixelBudget | None = None) -> Image.Image:
    """A PIL image (fully loaded) from a base64 string, a `data:` URI or (when allowed) an http(s) URL.

    The header's size is checked against the pixel limits (and `budget`, the request's pixel budget) before
    the pixels are decoded; decoding waits for a free `decode_slot`."""
    if not isinstance(value, str) or not value.strip():
        raise ApiError(422, f"Invalid encoded image in {field}: expected a base64 string")
    text = value.strip()
    if text.startswith(("http://", "https://")):
        data = _fetch_url(text, field, settings)
    else:
        if text.startswith("data:"):
            text = text.split(";base64,", 1)[1] if ";base64," in text else ""
        try:
            data = base64.b64decode(text + "=" * (-len(text) % 4), validate=False)
        except (binascii.Error, ValueError):
            raise ApiError(422, f"Invalid encoded image in {field}: not base64") from None
    with decode_slot(settings):
        try:
            image = Image.open(io.BytesIO(data))  # reads the header (and text chunks), no pixels yet
            _check_pixels(image, field, settings, budget)
            image.load()
        except Image.DecompressionBombError as exc:
            raise ApiError(413, f"{field}: decompression bomb refused: {exc}") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
            raise ApiError(422, f"Invalid encoded image in {field}: {type(exc).__name__}: {exc}") from None
    return image


def encode_image(image: Image.Image, infotext: str | None, settings: Any = None, fmt_setting: str = "samples_format") -> str:
    """Bare base64 of `image` in the format of setting `fmt_setting` (default `samples_format`), with the infotext
    embedded (unless `enable_pnginfo` is off)."""
    from app.infotext.storage import encode_image as encode_bytes

    fmt = str(_setting(settings, fmt_setting, "png") or "png").lower()
    if fmt not in ("png", "jpg", "jpeg", "webp", "avif", "gif"):
        fmt = "png"
    quality = int(_setting(settings, "jpeg_quality", 80))
    lossless = bool(_setting(settings, "webp_lossless", False))
    embed = infotext if _setting(settings, "enable_pnginfo", True) else None
    data = encode_bytes(image, embed, fmt, jpeg_quality=quality, webp_lossless=lossless)
    return base64.b64encode(data).decode("ascii")
