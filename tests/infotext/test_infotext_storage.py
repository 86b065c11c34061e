"""Infotext inside image files: PNG chunks, EXIF UserComment, GIF comment, NovelAI (spec §4.5)."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image, PngImagePlugin

from app.infotext.parse import parse_generation_parameters
from app.infotext.storage import (
    decode_user_comment,
    encode_image,
    encode_user_comment,
    image_with_infotext,
    read_info_from_image,
    save_image_file,
)

TEXT = 'a cat, "quoted"\nNegative prompt: dog\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64'
UNICODE_TEXT = "猫と犬, café ☕\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64"


def _image(mode: str = "RGB") -> Image.Image:
    return Image.new(mode, (32, 24), (10, 200, 30, 255)[: len(mode)] if mode != "L" else 128)


def _reopen(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("text", [TEXT, UNICODE_TEXT])
@pytest.mark.parametrize("fmt", ["png", "jpg", "jpeg", "webp", "avif", "gif"])
def test_round_trip_every_format(fmt: str, text: str) -> None:
    image = image_with_infotext(_image("RGBA" if fmt in ("png", "webp") else "RGB"), text, fmt)
    info, items = read_info_from_image(image)
    assert info == text
    assert "parameters" not in items and "exif" not in items
    json.dumps(items)  # the png-info API returns these as JSON


def test_png_uses_itxt_for_non_latin1_and_keeps_existing_info() -> None:
    data = encode_image(_image(), UNICODE_TEXT, "png", existing_info={"Software": "X", "parameters": "old", "dpi": (72, 72)})
    assert b"iTXt" in data and b"tEXtSoftware" in data
    info, items = read_info_from_image(_reopen(data))
    assert info == UNICODE_TEXT and items == {"Software": "X"}
    latin = encode_image(_image(), TEXT, "png")
    assert b"tEXtparameters" in latin


def test_jpeg_rgba_is_converted_and_exif_is_piexif_unicode() -> None:
    image = image_with_infotext(_image("RGBA"), TEXT, "jpg", jpeg_quality=90)
    assert image.format == "JPEG" and image.mode == "RGB"
    raw = image.getexif().get_ifd(0x8769)[0x9286]
    assert raw == b"UNICODE\x00" + TEXT.encode("utf-16-be")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (encode_user_comment("héllo"), "héllo"),
        (b"UNICODE\x00" + "hello".encode("utf-16-le"), "hello"),
        (b"ASCII\x00\x00\x00hello\x00", "hello"),
        (b"\x00" * 8 + "héllo".encode(), "héllo"),
        (b"plain", "plain"),
        ("already text", "already text"),
    ],
)
def test_decode_user_comment_variants(raw: bytes | str, expected: str) -> None:
    assert decode_user_comment(raw) == expected


def test_ascii_user_comment_in_jpeg_is_read() -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"ASCII\x00\x00\x00" + b"cat\nSteps: 1, Seed: 2, CFG scale: 3"
    buf = io.BytesIO()
    _image().save(buf, "JPEG", exif=exif.tobytes())
    info, _ = read_info_from_image(_reopen(buf.getvalue()))
    assert info == "cat\nSteps: 1, Seed: 2, CFG scale: 3"


def test_exif_comment_wins_over_png_parameters() -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = encode_user_comment("from exif")
    pnginfo = PngImagePlugin.PngInfo()
    pnginfo.add_text("parameters", "from chunk")
    buf = io.BytesIO()
    _image().save(buf, "PNG", pnginfo=pnginfo, exif=exif.tobytes())
    assert read_info_from_image(_reopen(buf.getvalue()))[0] == "from exif"


def test_no_info_and_no_infotext_written() -> None:
    assert read_info_from_image(_image()) == (None, {})
    for fmt in ("png", "jpg", "webp", "gif"):
        assert read_info_from_image(_reopen(encode_image(_image(), None, fmt)))[0] is None


def test_novelai_png_is_converted() -> None:
    pnginfo = PngImagePlugin.PngInfo()
    pnginfo.add_text("Software", "NovelAI")
    pnginfo.add_text("Description", "1girl, masterpiece")
    comment = {"steps": 28, "sampler": "k_euler_ancestral", "seed": 42, "scale": 11.0, "uc": "lowres, bad"}
    pnginfo.add_text("Comment", json.dumps(comment))
    buf = io.BytesIO()
    Image.new("RGB", (40, 56)).save(buf, "PNG", pnginfo=pnginfo)
    info, items = read_info_from_image(_reopen(buf.getvalue()))
    assert info == (
        "1girl, masterpiece\nNegative prompt: lowres, bad\n"
        "Steps: 28, Sampler: Euler a, CFG scale: 11.0, Seed: 42, Size: 40x56, Clip skip: 2, ENSD: 31337"
    )
    assert items["Software"] == "NovelAI"
    parsed = parse_generation_parameters(info)
    assert (parsed["Clip skip"], parsed["ENSD"], parsed["Size-1"]) == ("2", "31337", "40")


def test_novelai_with_bad_comment_keeps_other_info() -> None:
    pnginfo = PngImagePlugin.PngInfo()
    pnginfo.add_text("Software", "NovelAI")
    pnginfo.add_text("Comment", "not json")
    buf = io.BytesIO()
    _image().save(buf, "PNG", pnginfo=pnginfo)
    assert read_info_from_image(_reopen(buf.getvalue())) == (None, {"Software": "NovelAI", "Comment": "not json"})


def test_save_image_file_atomic_and_by_extension(tmp_path) -> None:
    target = save_image_file(_image(), tmp_path / "x.webp", TEXT)
    assert [p.name for p in tmp_path.iterdir()] == ["x.webp"]
    with Image.open(target) as image:
        assert image.format == "WEBP" and read_info_from_image(image)[0] == TEXT
    with pytest.raises(ValueError, match="unsupported image format '.bmp2'"):
        save_image_file(_image(), tmp_path / "y.bmp2", TEXT)
    assert [p.name for p in tmp_path.iterdir()] == ["x.webp"]


def test_png_text_chunk_after_image_data_is_found() -> None:
    import struct
    import zlib

    data = encode_image(_image(), None, "png")
    body = b"parameters\x00" + TEXT.encode("latin-1")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    iend = data.rindex(b"IEND") - 4
    late = Image.open(io.BytesIO(data[:iend] + chunk + data[iend:]))
    assert read_info_from_image(late)[0] == TEXT


def test_png_info_helper() -> None:
    from app.infotext.storage import png_info

    result = png_info(image_with_infotext(_image(), TEXT, "png", existing_info={"Software": "X"}))
    assert result["info"] == TEXT and result["items"] == {"Software": "X"}
    assert result["parameters"]["Prompt"] == 'a cat, "quoted"' and result["parameters"]["Seed"] == "1"
    empty = png_info(_image())
    assert empty["info"] == "" and empty["items"] == {} and empty["parameters"]["Clip skip"] == "1"
