"""Hash vectors (spec §5, §3.4) and the cache.json hash cache."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from app.models import hashes
from app.models.hashes import (
    HashCache,
    addnet_hash_safetensors,
    old_model_hash,
    path_mtime,
    sha256_file,
    sha256_folder,
)

MIB2 = 2 * 1024 * 1024

FILE_VECTORS = [
    # (content, old hash, AutoV2, full sha256 or None)
    (bytes(MIB2), "de2f2560", "5647f05ec1", "5647f05ec18958947d32874eeb788fa396a05d0bab7c1b71f112ceb7e9b31eee"),
    (bytes(i % 256 for i in range(MIB2)), "7daca209", "91d3beb88a", None),
    (b"small", "e3b0c442", "81db8ebbbb", None),
]


@pytest.mark.parametrize(("content", "old", "autov2", "full"), FILE_VECTORS, ids=["zeros", "ramp", "small"])
def test_file_hash_vectors(tmp_path: Path, content: bytes, old: str, autov2: str, full: str | None) -> None:
    f = tmp_path / "model.safetensors"
    f.write_bytes(content)
    assert old_model_hash(f) == old
    digest = sha256_file(f)
    assert digest[:10] == autov2
    assert len(digest) == 64
    if full:
        assert digest == full


def test_old_hash_missing_file(tmp_path: Path) -> None:
    assert old_model_hash(tmp_path / "nope.ckpt") == "NOFILE"


def _safetensors_bytes(header: bytes, payload: bytes) -> bytes:
    return len(header).to_bytes(8, "little") + header + payload


def test_addnet_hash_vector(tmp_path: Path) -> None:
    header = b'{"__metadata__": {"a": "b"}}'
    assert len(header) == 28
    f = tmp_path / "lora.safetensors"
    f.write_bytes(_safetensors_bytes(header, bytes(range(16))))
    assert addnet_hash_safetensors(f)[:12] == "be45cb2605bf"
    assert sha256_file(f)[:12] == "fb1aa9fc4363"


def test_addnet_hash_ignores_header_changes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    a.write_bytes(_safetensors_bytes(b'{"__metadata__": {"a": "b"}}', b"payload"))
    b.write_bytes(_safetensors_bytes(b'{"__metadata__": {"x": "yz"}}  ', b"payload"))
    assert addnet_hash_safetensors(a) == addnet_hash_safetensors(b)
    assert sha256_file(a) != sha256_file(b)


@pytest.mark.parametrize("data", [b"", b"\x01\x02", (1000).to_bytes(8, "little") + b"{}"])
def test_addnet_hash_rejects_truncated(tmp_path: Path, data: bytes) -> None:
    f = tmp_path / "bad.safetensors"
    f.write_bytes(data)
    with pytest.raises(ValueError, match="bad.safetensors"):
        addnet_hash_safetensors(f)


def test_folder_hash_and_mtime(tmp_path: Path) -> None:
    folder = tmp_path / "pipe"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    (folder / "unet" / "w.bin").write_bytes(b"abc")
    first = sha256_folder(folder)
    assert first == sha256_folder(folder)
    (folder / "unet" / "w.bin").write_bytes(b"abd")
    assert sha256_folder(folder) != first
    os.utime(folder / "unet" / "w.bin", (5e9, 5e9))
    assert path_mtime(folder) == 5e9


# -- HashCache ---------------------------------------------------------------------------------


def test_cache_roundtrip_format(tmp_path: Path) -> None:
    f = tmp_path / "m.safetensors"
    f.write_bytes(b"small")
    cache_file = tmp_path / "cache.json"
    cache = HashCache(cache_file)
    assert cache.sha256(f, "checkpoint/m.safetensors")[:10] == "81db8ebbbb"
    data = json.loads(cache_file.read_text())
    entry = data["hashes"]["checkpoint/m.safetensors"]
    assert entry["sha256"].startswith("81db8ebbbb")
    assert entry["mtime"] == os.path.getmtime(f)
    # a fresh object reads it back without hashing
    assert HashCache(cache_file).cached("checkpoint/m.safetensors", f) == entry["sha256"]


def test_cache_reuse_and_recompute_on_newer_mtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "m.ckpt"
    f.write_bytes(b"small")
    os.utime(f, (1000.0, 1000.0))
    calls: list[str] = []
    real = hashes.sha256_path

    def spy(path: os.PathLike[str]) -> str:
        calls.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(hashes, "sha256_path", spy)
    cache = HashCache(tmp_path / "cache.json")
    cache.sha256(f, "checkpoint/m.ckpt")
    assert len(calls) == 1
    HashCache(tmp_path / "cache.json").sha256(f, "checkpoint/m.ckpt")
    assert len(calls) == 1  # mtime unchanged: cached
    f.write_bytes(b"other")
    os.utime(f, (2000.0, 2000.0))
    value = HashCache(tmp_path / "cache.json").sha256(f, "checkpoint/m.ckpt")
    assert len(calls) == 2
    assert value == sha256_file(f)
    # an older mtime than cached is still considered valid (A1111: only newer invalidates)
    os.utime(f, (1500.0, 1500.0))
    assert HashCache(tmp_path / "cache.json").cached("checkpoint/m.ckpt", f) == value


def test_cache_compute_false_and_missing(tmp_path: Path) -> None:
    cache = HashCache(tmp_path / "cache.json")
    f = tmp_path / "m.ckpt"
    f.write_bytes(b"x")
    assert cache.sha256(f, "checkpoint/m.ckpt", compute=False) is None
    assert not (tmp_path / "cache.json").exists()
    assert cache.sha256(tmp_path / "missing.ckpt", "checkpoint/missing.ckpt") is None


def test_cache_addnet_section(tmp_path: Path) -> None:
    f = tmp_path / "l.safetensors"
    f.write_bytes(_safetensors_bytes(b'{"__metadata__": {"a": "b"}}', bytes(range(16))))
    cache = HashCache(tmp_path / "cache.json")
    assert cache.sha256(f, "lora/l", addnet=True)[:12] == "be45cb2605bf"
    data = json.loads((tmp_path / "cache.json").read_text())
    assert "lora/l" in data["hashes-addnet"]
    assert "lora/l" not in data.get("hashes", {})


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "\xff\xfe garbage", ""])
def test_corrupt_cache_is_reported_and_replaced(tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture) -> None:
    cache_file = tmp_path / "cache.json"
    cache_file.write_text(content, encoding="latin-1")
    f = tmp_path / "m.ckpt"
    f.write_bytes(b"small")
    cache = HashCache(cache_file)
    with caplog.at_level("WARNING"):
        assert cache.sha256(f, "checkpoint/m.ckpt")[:10] == "81db8ebbbb"
    assert cache.load_error is not None and "cache.json" in cache.load_error
    assert "corrupt" in caplog.text
    assert json.loads(cache_file.read_text())["hashes"]["checkpoint/m.ckpt"]["sha256"][:10] == "81db8ebbbb"
    assert (tmp_path / "cache.json.corrupt").exists()


def test_malformed_entries_are_ignored(tmp_path: Path) -> None:
    cache_file = tmp_path / "cache.json"
    f = tmp_path / "m.ckpt"
    f.write_bytes(b"small")
    cache_file.write_text(json.dumps({"hashes": {"checkpoint/m.ckpt": {"mtime": "x", "sha256": 5}, "b": 3}}))
    cache = HashCache(cache_file)
    assert cache.cached("checkpoint/m.ckpt", f) is None
    assert cache.sha256(f, "checkpoint/m.ckpt")[:10] == "81db8ebbbb"


def test_unknown_sections_preserved_and_writers_merge(tmp_path: Path) -> None:
    cache_file = tmp_path / "cache.json"
    cache_file.write_text(json.dumps({"safetensors-metadata": {"lora/x": {"mtime": 1, "value": {}}}}))
    a_file, b_file = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    a_file.write_bytes(b"a")
    b_file.write_bytes(b"b")
    a, b = HashCache(cache_file), HashCache(cache_file)
    a.section()  # both load the file before either writes
    b.section()
    a.sha256(a_file, "checkpoint/a.ckpt")
    b.sha256(b_file, "checkpoint/b.ckpt")
    data = json.loads(cache_file.read_text())
    assert set(data["hashes"]) == {"checkpoint/a.ckpt", "checkpoint/b.ckpt"}
    assert "safetensors-metadata" in data
    assert not list(tmp_path.glob(".cache.json.*"))  # no temp files left behind


def test_cache_thread_safe(tmp_path: Path) -> None:
    cache = HashCache(tmp_path / "cache.json")
    files = []
    for i in range(12):
        f = tmp_path / f"m{i}.ckpt"
        f.write_bytes(str(i).encode())
        files.append(f)
    errors: list[BaseException] = []

    def work(chunk: list[Path]) -> None:
        try:
            for f in chunk:
                cache.sha256(f, f"checkpoint/{f.name}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(files[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    data = json.loads((tmp_path / "cache.json").read_text())
    assert {k: v["sha256"] for k, v in data["hashes"].items()} == {
        f"checkpoint/{f.name}": sha256_file(f) for f in files
    }


def test_memory_only_cache(tmp_path: Path) -> None:
    f = tmp_path / "m.ckpt"
    f.write_bytes(b"small")
    cache = HashCache(None)
    value = cache.sha256(f, "checkpoint/m.ckpt")
    assert cache.cached("checkpoint/m.ckpt", f) == value
    assert list(tmp_path.iterdir()) == [f]
