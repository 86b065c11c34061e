"""Textual-inversion database: every file format, shape checks, errors, refresh, hashes (spec §2)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin
from safetensors.torch import save_file

from app.models.embedding_files import (
    _lcg_low_nibbles,
    embedding_from_b64,
    extract_image_data_embed,
    ti_hashes,
)
from app.models.embeddings import EmbeddingDatabase

SD1 = {"clip_l": 32}
SDXL = {"clip_l": 32, "clip_g": 64}


def _a1111_pt(path, rows=3, dim=32, seed=0, **meta):
    vec = torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed))
    data = {"string_to_token": {"*": 265}, "string_to_param": {"*": vec}, "name": "ignored-for-pt", **meta}
    torch.save(data, path)
    return vec


def _json_tensors(obj):
    if isinstance(obj, torch.Tensor):
        return {"TORCHTENSOR": obj.tolist()}
    if isinstance(obj, dict):
        return {k: _json_tensors(v) for k, v in obj.items()}
    return obj


def _png_with_chunk(path, data):
    info = PngImagePlugin.PngInfo()
    info.add_text("sd-ti-embedding", base64.b64encode(json.dumps(_json_tensors(data)).encode()).decode())
    Image.new("RGB", (16, 16), (200, 100, 50)).save(path, pnginfo=info)


def _png_with_pixels(path, data, h=16):
    """Hide data like A1111's insert_image_data_embed (low nibbles, XOR LCG, side blocks, black separators)."""
    raw = np.frombuffer(zlib.compress(json.dumps(_json_tensors(data)).encode(), 9), np.uint8)
    n = raw.shape[0] + (h - raw.shape[0] % h)
    n += (h * 3) - (n % (h * 3))
    low = np.resize(raw & 0x0F, n).reshape(h, -1, 3)
    high = np.resize(raw >> 4, n).reshape(h, -1, 3)
    key = _lcg_low_nibbles(low.size).reshape(low.shape)
    low, high = (low ^ key) | 0x30, (high ^ key) | 0x30  # high nibbles: decoration, ignored by the reader
    pic = np.full((h, 10, 3), 201, np.uint8)
    sep = np.zeros((h, 1, 3), np.uint8)
    Image.fromarray(np.concatenate([low, sep, pic, sep, high], axis=1).astype(np.uint8)).save(path)


@pytest.fixture
def emb_dir(tmp_path):
    d = tmp_path / "embeddings"
    (d / "sub").mkdir(parents=True)
    return d


def test_a1111_pt_loads_with_metadata(emb_dir):
    vec = _a1111_pt(emb_dir / "MyStyle.pt", step=500, sd_checkpoint="abcd1234", sd_checkpoint_name="model")
    db = EmbeddingDatabase([emb_dir])
    db.load(SD1)
    emb = db.embeddings["MyStyle"]  # name = file stem, not the name stored in a .pt
    assert torch.equal(emb.vec, vec) and emb.vectors == 3 and emb.shape == 32
    assert db.loaded == {
        "MyStyle": {"step": 500, "sd_checkpoint": "abcd1234", "sd_checkpoint_name": "model", "shape": 32, "vectors": 3}
    }
    assert db.api_response() == {"loaded": db.loaded, "skipped": {}}


def test_every_format_loads(emb_dir):
    torch.save({"<cat-toy>": torch.randn(32)}, emb_dir / "concept.bin")
    save_file({"emb_params": torch.randn(2, 32)}, str(emb_dir / "sub" / "neg.safetensors"))
    save_file({"clip_l": torch.randn(2, 32), "clip_g": torch.randn(2, 64)}, str(emb_dir / "xl.safetensors"))
    _png_with_chunk(emb_dir / "pic.png", {"string_to_param": {"*": torch.randn(4, 32)}, "name": "inside", "step": 7})
    _png_with_pixels(emb_dir / "hidden.png", {"string_to_param": {"*": torch.randn(2, 32)}, "name": "stego"})
    db = EmbeddingDatabase([emb_dir])
    db.load(SD1)
    assert sorted(db.embeddings) == ["concept", "inside", "neg", "stego"]
    assert db.embeddings["concept"].vectors == 1  # 1-D diffusers concept promoted to one row
    assert db.embeddings["neg"].vectors == 2
    assert db.embeddings["inside"].vectors == 4 and db.embeddings["inside"].step == 7
    assert db.embeddings["stego"].vectors == 2
    assert db.skipped == {
        "xl": {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": 96, "vectors": 2}
    }
    assert "96" in db.skip_reasons["xl"] and "32" in db.skip_reasons["xl"]
    assert db.errors == {}


def test_sdxl_embedding_loads_on_sdxl_and_plain_is_skipped(emb_dir):
    vl, vg = torch.randn(2, 32), torch.randn(2, 64)
    save_file({"clip_l": vl, "clip_g": vg}, str(emb_dir / "xl.safetensors"))
    save_file({"emb_params": torch.randn(1, 32)}, str(emb_dir / "sd1only.safetensors"))
    db = EmbeddingDatabase([emb_dir])
    db.load(SDXL)
    emb = db.embeddings["xl"]
    assert emb.shape == 96 and emb.vectors == 2
    assert torch.equal(emb.vectors_for("clip_l"), vl) and torch.equal(emb.vectors_for("clip_g"), vg)
    assert list(db.skipped) == ["sd1only"] and "96" in db.skip_reasons["sd1only"]


def test_wrong_width_is_skipped_with_reason(emb_dir):
    _a1111_pt(emb_dir / "wide.pt", dim=768)
    db = EmbeddingDatabase([emb_dir])
    db.load(SD1)
    assert db.embeddings == {} and list(db.skipped) == ["wide"]
    assert db.skip_reasons["wide"] == "vector width 768 does not match the current model's 32 (clip_l 32)"
    db.set_model({"clip_l": 768})
    assert list(db.embeddings) == ["wide"] and db.skipped == {}


class Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def test_corrupt_and_unsafe_files_are_reported_by_name(emb_dir):
    _a1111_pt(emb_dir / "good.pt")
    (emb_dir / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    (emb_dir / "garbage.pt").write_bytes(b"this is not a torch file at all")
    with open(emb_dir / "evil.pt", "wb") as fh:
        pickle.dump({"string_to_param": {"*": Evil()}}, fh)
    torch.save({"a": torch.zeros(1, 32), "b": torch.zeros(1, 32)}, emb_dir / "two.pt")
    torch.save({"foo": "bar"}, emb_dir / "notemb.pt")
    (emb_dir / "empty.pt").write_bytes(b"")
    db = EmbeddingDatabase([emb_dir])
    db.load(SD1)
    assert list(db.embeddings) == ["good"]
    assert sorted(db.errors) == ["broken", "evil", "garbage", "notemb", "two"]
    assert "safetensors" in db.errors["evil"] and "evil.pt" in db.errors["evil"]
    assert "multiple terms" in db.errors["two"]
    assert "Couldn't identify notemb.pt" in db.errors["notemb"]


def test_previews_and_plain_images_are_ignored(emb_dir):
    _a1111_pt(emb_dir / "style.pt")
    Image.new("RGB", (8, 8), (10, 20, 30)).save(emb_dir / "style.preview.png")
    Image.new("RGB", (8, 8), (10, 20, 30)).save(emb_dir / "photo.png")
    (emb_dir / "notes.txt").write_text("hello")
    db = EmbeddingDatabase([emb_dir])
    db.load(SD1)
    assert list(db.embeddings) == ["style"] and db.errors == {} and db.skipped == {}


def test_refresh_if_changed(emb_dir):
    _a1111_pt(emb_dir / "a.pt")
    db = EmbeddingDatabase([emb_dir])
    db.load(SD1)
    v = db.version
    assert db.refresh_if_changed() is False and db.version == v
    _a1111_pt(emb_dir / "sub" / "b.pt")
    assert db.refresh_if_changed() is True
    assert sorted(db.embeddings) == ["a", "b"]
    (emb_dir / "a.pt").unlink()
    assert db.refresh_if_changed() is True and sorted(db.embeddings) == ["b"]


def test_hashes_and_ti_hashes_infotext(emb_dir):
    _a1111_pt(emb_dir / "bad:name,x.pt")
    _a1111_pt(emb_dir / "other.pt", seed=1)
    db = EmbeddingDatabase([emb_dir])
    db.load(SD1)
    full = hashlib.sha256((emb_dir / "other.pt").read_bytes()).hexdigest()
    emb = db.embeddings["other"]
    assert emb.sha256 == full and emb.shorthash == full[:12]
    h1 = db.embeddings["bad:name,x"].shorthash
    assert ti_hashes([db.embeddings["bad:name,x"], emb, emb]) == f"badnamex: {h1}, other: {full[:12]}"


def test_hasher_hook_is_used(emb_dir):
    _a1111_pt(emb_dir / "a.pt")
    calls = []

    def hasher(path, key):
        calls.append(key)
        return "f" * 64

    db = EmbeddingDatabase([emb_dir], hasher=hasher)
    db.load(SD1)
    assert db.embeddings["a"].shorthash == "f" * 12 and calls == ["textual_inversion/a"]


def test_b64_and_pixel_decoders_roundtrip(tmp_path):
    data = {"string_to_param": {"*": torch.arange(6.0).reshape(2, 3)}, "name": "n"}
    text = base64.b64encode(json.dumps(_json_tensors(data)).encode()).decode()
    assert torch.equal(embedding_from_b64(text)["string_to_param"]["*"], data["string_to_param"]["*"])
    _png_with_pixels(tmp_path / "x.png", data)
    with Image.open(tmp_path / "x.png") as img:
        back = extract_image_data_embed(img)
    assert back["name"] == "n" and torch.equal(back["string_to_param"]["*"], data["string_to_param"]["*"])
    assert extract_image_data_embed(Image.new("RGB", (8, 8), (9, 9, 9))) is None


def test_missing_folder_is_fine(tmp_path):
    db = EmbeddingDatabase([tmp_path / "nope"])
    db.load(SD1)
    assert db.loaded == {} and db.errors == {}


def test_hash_cache_object_is_used(emb_dir, tmp_path):
    from app.models.hashes import HashCache

    _a1111_pt(emb_dir / "a.pt")
    cache = HashCache(tmp_path / "cache.json")
    db = EmbeddingDatabase([emb_dir], hasher=cache)
    db.load(SD1)
    full = hashlib.sha256((emb_dir / "a.pt").read_bytes()).hexdigest()
    assert db.embeddings["a"].sha256 == full
    assert cache.cached("textual_inversion/a", emb_dir / "a.pt") == full
