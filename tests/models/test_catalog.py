"""Model catalog: names/titles/aliases (spec §5), VAE list and resolution (§9.2), LoRA (§3.2), embeddings,
upscalers, cache reuse."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from app.models import hashes
from app.models.catalog.extra_files import EmbeddingFile, UpscalerFile
from app.models.catalog.index import (
    Catalog,
    CheckpointInfo,
    VaeInfo,
    natural_sort_key,
    read_safetensors_metadata,
)
from app.models.hashes import old_model_hash, sha256_file
from app.paths import Paths

MIB2 = 2 * 1024 * 1024
ZEROS_SHA = "5647f05ec18958947d32874eeb788fa396a05d0bab7c1b71f112ceb7e9b31eee"


def st_bytes(metadata: dict[str, str] | None = None, tensors: dict[str, bytes] | None = None) -> bytes:
    """A valid safetensors file written by hand (uint8 1-D tensors)."""
    header: dict[str, object] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    payload = b""
    for name, data in (tensors or {"w": b"\x01\x02"}).items():
        header[name] = {"dtype": "U8", "shape": [len(data)], "data_offsets": [len(payload), len(payload) + len(data)]}
        payload += data
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + payload


def put(path: Path, data: bytes = b"small") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths.from_data_dir(tmp_path / "data")


@pytest.fixture
def sd(paths: Paths) -> Path:
    return paths.ckpt_dirs[0]


# -- checkpoints -------------------------------------------------------------------------------


def test_checkpoint_names_nested(paths: Paths, sd: Path) -> None:
    put(sd / "sub" / "foo.safetensors", bytes(MIB2))
    cat = Catalog(paths)
    [info] = cat.checkpoints()
    assert info.name == "sub/foo.safetensors"
    assert info.name_for_extra == "foo"
    assert info.model_name == "sub_foo"
    assert info.title == "sub/foo.safetensors"  # no hash known yet
    assert info.short_title == "foo"
    assert info.old_hash == "de2f2560"
    assert info.sha256 is None and info.shorthash is None
    assert info.filename == str(sd / "sub" / "foo.safetensors")

    hashed = cat.ensure_hash(info)
    assert hashed.sha256 == ZEROS_SHA
    assert hashed.shorthash == "5647f05ec1"
    assert hashed.title == "sub/foo.safetensors [5647f05ec1]"
    assert hashed.short_title == "foo [5647f05ec1]"
    assert cat.checkpoints() == [hashed]
    cached = json.loads(paths.cache_file.read_text())["hashes"]["checkpoint/sub/foo.safetensors"]
    assert cached["sha256"] == ZEROS_SHA


def test_vae_files_and_other_extensions_excluded(paths: Paths, sd: Path) -> None:
    for name in ["a.ckpt", "b.safetensors", "B2.SAFETENSORS", "c.vae.safetensors", "d.vae.ckpt", "e.pt", "f.txt"]:
        put(sd / name)
    put(sd / ".hidden" / "g.safetensors")
    put(sd / ".h.safetensors")
    names = [c.name for c in Catalog(paths).checkpoints()]
    assert names == ["a.ckpt", "B2.SAFETENSORS", "b.safetensors"]  # natural sort: "b" + 2 < "b.safetensors"


def test_natural_sort(paths: Paths, sd: Path) -> None:
    for name in ["m10.ckpt", "M2.ckpt", "m1.ckpt", "a/z.ckpt", "b.ckpt"]:
        put(sd / name)
    titles = [c.title for c in Catalog(paths).checkpoints()]
    assert titles == ["a/z.ckpt", "b.ckpt", "m1.ckpt", "M2.ckpt", "m10.ckpt"]
    assert sorted(["x10", "x9", "X1"], key=natural_sort_key) == ["X1", "x9", "x10"]


def test_titles_use_cached_hashes_at_scan(paths: Paths, sd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = put(sd / "foo.safetensors", bytes(MIB2))
    Catalog(paths).ensure_hash(Catalog(paths).checkpoints()[0])
    calls: list[object] = []
    monkeypatch.setattr(hashes, "sha256_path", lambda p: calls.append(p) or "0" * 64)
    cat = Catalog(paths)
    [info] = cat.checkpoints()
    assert info.title == "foo.safetensors [5647f05ec1]"
    assert cat.ensure_hash(info) == info
    assert calls == []  # mtime unchanged → cached, never rehashed
    os.utime(f, (os.path.getmtime(f) + 10, os.path.getmtime(f) + 10))
    cat.refresh()
    [stale] = cat.checkpoints()
    assert stale.title == "foo.safetensors"  # newer mtime invalidates the cached hash
    assert cat.ensure_hash(stale).shorthash == "0000000000"
    assert len(calls) == 1


def test_refresh_takes_hashes_another_process_wrote(paths: Paths, sd: Path) -> None:
    put(sd / "foo.safetensors", bytes(MIB2))
    server = Catalog(paths)
    assert [c.title for c in server.checkpoints()] == ["foo.safetensors"]
    worker = Catalog(paths)  # the worker process hashes the file it loads (cache.json)
    worker.ensure_hash(worker.checkpoints()[0])
    server.refresh_checkpoints()
    assert [c.title for c in server.checkpoints()] == ["foo.safetensors [5647f05ec1]"]


def test_no_hashing_keeps_plain_titles(paths: Paths, sd: Path) -> None:
    put(sd / "foo.safetensors", bytes(MIB2))
    cat = Catalog(paths, no_hashing=True)
    [info] = cat.checkpoints()
    same = cat.ensure_hash(info)
    assert same.title == "foo.safetensors" and same.sha256 is None
    assert not paths.cache_file.exists()


def test_diffusers_folder_is_a_checkpoint(paths: Paths, sd: Path) -> None:
    put(sd / "pipes" / "my-pipe" / "model_index.json", b"{}")
    put(sd / "pipes" / "my-pipe" / "unet" / "diffusion_pytorch_model.safetensors", b"w")
    put(sd / "x.safetensors")
    cat = Catalog(paths)
    by_name = {c.name: c for c in cat.checkpoints()}
    assert set(by_name) == {"pipes/my-pipe", "x.safetensors"}
    folder = by_name["pipes/my-pipe"]
    assert folder.is_folder and folder.name_for_extra == "my-pipe" and folder.model_name == "pipes_my-pipe"
    hashed = cat.ensure_hash(folder)
    assert hashed.title == f"pipes/my-pipe [{hashes.sha256_folder(sd / 'pipes' / 'my-pipe')[:10]}]"
    assert cat.find_checkpoint("my-pipe") == hashed


def test_ckpt_file_outside_dirs(tmp_path: Path, paths: Paths, sd: Path) -> None:
    outside = put(tmp_path / "elsewhere" / "ext.safetensors", b"small")
    cat = Catalog(replace(paths, ckpt_file=outside))
    [info] = cat.checkpoints()
    assert info.name == "ext.safetensors" and info.filename == str(outside)
    put(sd / "inside.ckpt")
    cat.refresh()
    assert [c.name for c in cat.checkpoints()] == ["ext.safetensors", "inside.ckpt"]
    assert cat.checkpoint_for_file(outside) == info
    assert cat.checkpoint_for_file(tmp_path / "unknown.ckpt") is None
    other = put(tmp_path / "elsewhere" / "two.ckpt")
    assert Catalog(paths).add_checkpoint_file(other).name == "two.ckpt"
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        Catalog(paths).add_checkpoint_file(tmp_path / "nope.ckpt")


def test_extra_ckpt_dir_names_are_relative_to_it(tmp_path: Path, paths: Paths, sd: Path) -> None:
    extra = tmp_path / "more"
    put(extra / "deep" / "m.ckpt")
    put(sd / "n.ckpt")
    cat = Catalog(replace(paths, ckpt_dirs=(sd, extra)))
    assert [c.name for c in cat.checkpoints()] == ["deep/m.ckpt", "n.ckpt"]


@pytest.fixture
def hashed_catalog(paths: Paths, sd: Path) -> tuple[Catalog, CheckpointInfo]:
    put(sd / "sub" / "foo.safetensors", bytes(MIB2))
    put(sd / "bar.ckpt", bytes(i % 256 for i in range(MIB2)))
    put(sd / "foo-long-name.safetensors", b"tiny")
    cat = Catalog(paths)
    info = cat.ensure_hash(cat.find_checkpoint("sub/foo.safetensors"))
    return cat, info


@pytest.mark.parametrize(
    "alias",
    [
        "de2f2560",  # old hash
        "sub_foo",  # model_name
        "sub/foo.safetensors [5647f05ec1]",  # title
        "sub/foo.safetensors",  # name
        "foo",  # name_for_extra
        "sub/foo.safetensors [de2f2560]",  # name [oldhash]
        "5647f05ec1",  # shorthash
        ZEROS_SHA,  # full sha256
        "foo [5647f05ec1]",  # name_for_extra [shorthash]
    ],
)
def test_find_checkpoint_aliases(hashed_catalog: tuple[Catalog, CheckpointInfo], alias: str) -> None:
    cat, info = hashed_catalog
    assert cat.find_checkpoint(alias) == info


def test_find_checkpoint_fallbacks(hashed_catalog: tuple[Catalog, CheckpointInfo]) -> None:
    cat, info = hashed_catalog
    assert cat.find_checkpoint("7daca209").name == "bar.ckpt"
    # shortest title containing the string: "foo" is an exact alias, "fo" is not
    # "foo-long-name.safetensors" (unhashed, 25 chars) is shorter than "sub/foo.safetensors [5647f05ec1]"
    assert cat.find_checkpoint("fo").name == "foo-long-name.safetensors"
    assert cat.find_checkpoint("oo.safetensors [") == info
    assert cat.find_checkpoint("sub/f") == info
    # a title with a stale hash still finds the file by name
    assert cat.find_checkpoint("bar.ckpt [0123456789]").name == "bar.ckpt"
    assert cat.find_checkpoint("nothing-like-this") is None
    assert cat.find_checkpoint("") is None
    assert cat.find_checkpoint(None) is None


def test_unhashed_title_has_no_hash_aliases(paths: Paths, sd: Path) -> None:
    put(sd / "a.ckpt", bytes(MIB2))
    cat = Catalog(paths)
    assert cat.find_checkpoint("5647f05ec1") is None
    assert cat.find_checkpoint("a.ckpt [5647f05ec1]").name == "a.ckpt"  # fallback strips the hash


# -- VAE -----------------------------------------------------------------------------------


@pytest.fixture
def vae_tree(paths: Paths, sd: Path) -> Paths:
    put(sd / "foo.safetensors")
    put(sd / "foo.vae.pt")
    put(sd / "sub" / "other.vae.safetensors")
    vae = paths.vae_dirs[0]
    put(vae / "kl-f8.safetensors")
    put(vae / "x" / "vae10.ckpt")
    put(vae / "vae2.pt")
    put(vae / "readme.txt")
    return paths


def test_vae_list_and_choices(vae_tree: Paths) -> None:
    cat = Catalog(vae_tree)
    names = [v.name for v in cat.vaes()]
    assert names == ["foo.vae.pt", "kl-f8.safetensors", "other.vae.safetensors", "vae2.pt", "vae10.ckpt"]
    assert cat.vae_choices() == ["Automatic", "None", *names]
    assert cat.find_vae("vae10.ckpt") == VaeInfo("vae10.ckpt", str(vae_tree.vae_dirs[0] / "x" / "vae10.ckpt"))


def test_resolve_vae_order(tmp_path: Path, vae_tree: Paths, sd: Path) -> None:
    cat = Catalog(vae_tree)
    foo = cat.find_checkpoint("foo.safetensors")
    near = cat.find_vae("foo.vae.pt")
    kl = cat.find_vae("kl-f8.safetensors")
    flag = put(tmp_path / "flag.vae.safetensors")
    # 1. --vae-path beats everything
    assert cat.resolve_vae("kl-f8.safetensors", foo, vae_path_flag=flag) == (
        VaeInfo("flag.vae.safetensors", str(flag)),
        "--vae-path",
    )
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        cat.resolve_vae("Automatic", foo, vae_path_flag=tmp_path / "missing.pt")
    # 2. an explicit setting beats the per-model choices
    assert cat.resolve_vae("kl-f8.safetensors", foo) == (kl, "setting")
    assert cat.resolve_vae("None", foo) == (None, "setting")
    assert cat.resolve_vae("unknown.pt", foo) == (None, "none")
    # 4. Automatic → the VAE near the checkpoint
    assert cat.resolve_vae("Automatic", foo) == (near, "near checkpoint")
    # ... unless per-model preferences win over the setting
    assert cat.resolve_vae("kl-f8.safetensors", foo, overrides_per_model=False) == (near, "near checkpoint")
    # 3. the checkpoint's user metadata sidecar beats "near"
    (sd / "foo.json").write_text(json.dumps({"vae": "vae2.pt"}))
    assert cat.resolve_vae("Automatic", foo) == (cat.find_vae("vae2.pt"), "user metadata")
    (sd / "foo.json").write_text(json.dumps({"vae": "None"}))
    assert cat.resolve_vae("Automatic", foo) == (None, "user metadata")
    # 5. nothing near and Automatic → none
    put(sd / "lonely.ckpt")
    cat.refresh()
    assert cat.resolve_vae("Automatic", cat.find_checkpoint("lonely.ckpt")) == (None, "none")
    assert cat.resolve_vae("Automatic", None) == (None, "none")


def test_resolve_vae_uses_paths_vae_file(tmp_path: Path, vae_tree: Paths) -> None:
    flag = put(tmp_path / "v.pt")
    cat = Catalog(replace(vae_tree, vae_file=flag))
    assert cat.resolve_vae("None", cat.find_checkpoint("foo.safetensors"))[1] == "--vae-path"


def test_vae_hash_cached(vae_tree: Paths) -> None:
    cat = Catalog(vae_tree)
    kl = cat.find_vae("kl-f8.safetensors")
    assert cat.vae_hash(kl) == "81db8ebbbb"
    data = json.loads(vae_tree.cache_file.read_text())["hashes"]
    assert data["vae/kl-f8.safetensors"]["sha256"][:10] == "81db8ebbbb"
    assert data["vae"]["sha256"][:10] == "81db8ebbbb"  # A1111's constant title, written for compatibility
    assert Catalog(vae_tree, no_hashing=True).vae_hash(cat.find_vae("vae2.pt")) is None
    assert Catalog(vae_tree, no_hashing=True).vae_hash(kl) == "81db8ebbbb"  # cached values are still used


# -- LoRA ----------------------------------------------------------------------------------


def test_lora_listing_alias_metadata_sidecars(paths: Paths) -> None:
    lora = paths.lora_dirs[0]
    meta = {
        "ss_output_name": "Detail Tweaker",
        "ss_base_model_version": "sdxl_base_v1-0",
        "ss_tag_frequency": '{"a": {"b": 2}}',
    }
    put(lora / "sub" / "add_detail.safetensors", st_bytes(meta))
    (lora / "sub" / "add_detail.json").write_text(json.dumps({"activation text": "detailed", "preferred weight": 0.8}))
    put(lora / "sub" / "add_detail.preview.png", b"png")
    put(lora / "plain.pt", b"pickle")
    put(paths.models_dir / "LyCORIS" / "loha.safetensors", st_bytes({"ss_v2": "True"}))
    put(lora / "nometa.safetensors", st_bytes(None))
    put(lora / "notes.txt")
    cat = Catalog(paths)
    by_name = {x.name: x for x in cat.loras()}
    assert list(by_name) == ["nometa", "plain", "add_detail", "loha"]
    detail = by_name["add_detail"]
    assert detail.alias == "Detail Tweaker"
    assert detail.metadata["ss_tag_frequency"] == {"a": {"b": 2}}
    assert detail.user_metadata == {"activation text": "detailed", "preferred weight": 0.8}
    assert detail.preview == str(lora / "sub" / "add_detail.preview.png")
    assert detail.sd_version == "SDXL"
    assert by_name["loha"].sd_version == "SD2"
    assert by_name["plain"].sd_version == "Unknown" and by_name["plain"].alias == "plain"
    assert by_name["nometa"].sd_version == "Unknown" and by_name["nometa"].preview is None
    assert cat.find_lora("Detail Tweaker") == detail
    assert cat.find_lora("add_detail") == detail
    assert cat.find_lora("missing") is None


def test_lora_forbidden_alias(paths: Paths) -> None:
    lora = paths.lora_dirs[0]
    put(lora / "a.safetensors", st_bytes({"ss_output_name": "same"}))
    put(lora / "b.safetensors", st_bytes({"ss_output_name": "same"}))
    put(lora / "c.safetensors", st_bytes({"ss_output_name": "none"}))
    cat = Catalog(paths)
    assert cat.find_lora("same") is None  # shared by two files → forbidden
    assert cat.find_lora("a").name == "a"
    assert cat.find_lora("none") is None
    c = cat.find_lora("c")
    assert cat.lora_preferred_name(c) == "c"
    assert cat.lora_preferred_name(cat.find_lora("a")) == "a"


def test_lora_hashes(paths: Paths) -> None:
    lora = paths.lora_dirs[0]
    header = b'{"__metadata__": {"a": "b"}}'
    put(lora / "vec.safetensors", len(header).to_bytes(8, "little") + header + bytes(range(16)))
    put(lora / "pt.pt", b"small")
    put(lora / "given.safetensors", st_bytes({"sshs_model_hash": "abcdef0123456789"}))
    cat = Catalog(paths)
    vec, pt, given = cat.find_lora("vec"), cat.find_lora("pt"), cat.find_lora("given")
    assert vec.hash is None and cat.lora_hash(vec)[:12] == "be45cb2605bf"
    assert cat.find_lora("vec").shorthash == "be45cb2605bf"
    assert cat.lora_hash(pt)[:10] == "81db8ebbbb"  # full-file sha256 for non-safetensors
    assert given.shorthash == "abcdef012345"
    data = json.loads(paths.cache_file.read_text())
    assert "lora/vec" in data["hashes-addnet"] and "lora/pt" in data["hashes"]
    assert Catalog(paths).find_lora("vec").shorthash == "be45cb2605bf"  # read back from the cache at scan


def test_broken_lora_header_is_reported_not_raised(paths: Paths) -> None:
    put(paths.lora_dirs[0] / "broken.safetensors", (99999).to_bytes(8, "little") + b'{"a')
    [info] = Catalog(paths).loras()
    assert info.name == "broken" and info.alias == "broken"
    assert info.error and "broken.safetensors" in info.error


# -- safetensors header ------------------------------------------------------------------------


def test_read_safetensors_metadata(tmp_path: Path) -> None:
    f = put(tmp_path / "m.safetensors", st_bytes({"k": "v"}, {"b": b"12", "a": b"3"}))
    assert read_safetensors_metadata(f) == ({"k": "v"}, ["b", "a"])


def test_read_safetensors_metadata_from_library(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    from safetensors.numpy import save_file

    f = tmp_path / "lib.safetensors"
    save_file({"x": np.zeros((2, 3), dtype=np.float32)}, str(f), metadata={"ss_output_name": "lib"})
    assert read_safetensors_metadata(f) == ({"ss_output_name": "lib"}, ["x"])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x05\x00",
        (500).to_bytes(8, "little") + b"{}",
        (4).to_bytes(8, "little") + b"{abc",
        (2).to_bytes(8, "little") + b"[]",
        (2).to_bytes(8, "little") + b"\xff\xfe",
        (30).to_bytes(8, "little") + b'{"__metadata__": [1, 2, 3]}   ',
    ],
)
def test_read_safetensors_metadata_invalid(tmp_path: Path, data: bytes) -> None:
    f = put(tmp_path / "bad.safetensors", data)
    with pytest.raises(ValueError, match="bad.safetensors"):
        read_safetensors_metadata(f)


# -- embeddings and upscalers ------------------------------------------------------------------


def test_embedding_files(paths: Paths) -> None:
    emb = paths.embeddings_dirs[0]
    for name in [
        "neg/EasyNegative.safetensors",
        "a.pt",
        "b.bin",
        "c.png",
        "c.preview.png",
        "d.webp",
        "e.json",
        "f.txt",
    ]:
        put(emb / name)
    put(emb / ".hidden.pt")
    put(emb / "empty.pt", b"")
    files = Catalog(paths).embedding_files()
    assert files == [
        EmbeddingFile("a", emb / "a.pt"),
        EmbeddingFile("b", emb / "b.bin"),
        EmbeddingFile("c", emb / "c.png"),
        EmbeddingFile("d", emb / "d.webp"),
        EmbeddingFile("EasyNegative", emb / "neg" / "EasyNegative.safetensors"),
    ]
    name, path = files[0]
    assert (name, path) == ("a", emb / "a.pt")


def test_embedding_hash(paths: Paths) -> None:
    f = put(paths.embeddings_dirs[0] / "tok.pt", b"small")
    cat = Catalog(paths)
    assert cat.embedding_hash(f)[:12] == sha256_file(f)[:12]
    assert "textual_inversion/tok" in json.loads(paths.cache_file.read_text())["hashes"]


def test_upscaler_files(paths: Paths) -> None:
    put(paths.esrgan_dirs[0] / "4x-UltraSharp.pth")
    put(paths.esrgan_dirs[0] / "notes.txt")
    put(paths.realesrgan_dirs[0] / "RealESRGAN_x4plus.pth")
    put(paths.swinir_dirs[0] / "sub" / "SwinIR_4x.safetensors")
    put(paths.dat_dirs[0] / "DAT_x2.pt")
    assert Catalog(paths).upscaler_files() == [
        UpscalerFile("4x-UltraSharp", paths.esrgan_dirs[0] / "4x-UltraSharp.pth", "ESRGAN"),
        UpscalerFile("RealESRGAN_x4plus", paths.realesrgan_dirs[0] / "RealESRGAN_x4plus.pth", "RealESRGAN"),
        UpscalerFile("SwinIR_4x", paths.swinir_dirs[0] / "sub" / "SwinIR_4x.safetensors", "SwinIR"),
        UpscalerFile("DAT_x2", paths.dat_dirs[0] / "DAT_x2.pt", "DAT"),
    ]


# -- refresh, robustness -----------------------------------------------------------------------


def test_refresh_picks_up_changes_and_missing_dirs(tmp_path: Path) -> None:
    paths = Paths.from_data_dir(tmp_path / "empty")  # no folders exist at all
    cat = Catalog(paths)
    assert (cat.checkpoints(), cat.vaes(), cat.loras(), cat.embedding_files(), cat.upscaler_files()) == ([],) * 5
    put(paths.ckpt_dirs[0] / "new.ckpt")
    assert cat.checkpoints() == []  # lists are snapshots until refresh
    cat.refresh()
    assert [c.name for c in cat.checkpoints()] == ["new.ckpt"]


def test_concurrent_refresh_and_reads(paths: Paths, sd: Path) -> None:
    for i in range(20):
        put(sd / f"m{i}.ckpt")
    cat = Catalog(paths)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                cat.refresh()
                assert len(cat.checkpoints()) == 20
                assert cat.find_checkpoint("m7") is not None
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_corrupt_cache_json_does_not_break_catalog(paths: Paths, sd: Path) -> None:
    put(sd / "foo.safetensors", bytes(MIB2))
    paths.cache_file.parent.mkdir(parents=True, exist_ok=True)
    paths.cache_file.write_text("{broken")
    cat = Catalog(paths)
    [info] = cat.checkpoints()
    assert info.title == "foo.safetensors"
    assert cat.ensure_hash(info).title == "foo.safetensors [5647f05ec1]"
    assert cat.hash_cache.load_error
    assert json.loads(paths.cache_file.read_text())["hashes"]


def test_catalog_module_has_no_torch() -> None:
    import subprocess
    import sys

    code = "import sys, app.models.catalog.index, app.models.hashes; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_api_items(vae_tree: Paths) -> None:
    cat = Catalog(vae_tree)
    info = cat.ensure_hash(cat.find_checkpoint("foo.safetensors"))
    assert info.as_api() == {
        "title": "foo.safetensors [81db8ebbbb]",
        "model_name": "foo",
        "hash": "81db8ebbbb",
        "sha256": sha256_file(info.filename),
        "filename": info.filename,
        "config": None,
    }
    vae = cat.find_vae("vae2.pt")
    assert vae.as_api() == {"model_name": "vae2.pt", "filename": vae.filename}


@pytest.mark.slow
def test_tiny_model_set(tmp_path: Path) -> None:
    """The files the loader's tiny-model writer produces are listed with the right names."""
    from app.devtools.tiny_models import write_tiny_models

    written = write_tiny_models(tmp_path, families=("sd1",))
    cat = Catalog(Paths.from_data_dir(tmp_path))
    [ckpt] = cat.checkpoints()
    assert (ckpt.name, ckpt.name_for_extra, ckpt.old_hash) == (
        "tiny-sd1.safetensors",
        "tiny-sd1",
        old_model_hash(written["ckpt:sd1"]),
    )
    assert cat.ensure_hash(ckpt).shorthash == sha256_file(written["ckpt:sd1"])[:10]
    assert [v.name for v in cat.vaes()] == ["tiny.vae.safetensors"]
    [lora] = cat.loras()
    assert (lora.name, lora.alias, lora.sd_version) == ("tiny-lora", "tiny-lora", "SD1")
    assert lora.as_api()["metadata"]["ss_network_module"] == "networks.lora"
    assert sorted(e.name for e in cat.embedding_files()) == ["tiny-emb", "tiny-emb2"]
    assert cat.upscaler_files() == [UpscalerFile("tiny-esrgan-4x", written["esrgan"], "ESRGAN")]


def test_symlinks_followed_loops_and_dangling_links_skipped(tmp_path: Path, paths: Paths, sd: Path) -> None:
    shared = tmp_path / "shared-models"
    put(shared / "linked.safetensors")
    sd.mkdir(parents=True, exist_ok=True)
    (sd / "ext").symlink_to(shared, target_is_directory=True)
    (shared / "loop").symlink_to(sd, target_is_directory=True)  # a cycle back to the root
    (sd / "dangling.ckpt").symlink_to(tmp_path / "gone.ckpt")
    put(sd / "real.ckpt")
    names = [c.name for c in Catalog(paths).checkpoints()]
    assert names == ["ext/linked.safetensors", "real.ckpt"]


def test_overlapping_ckpt_dirs_list_each_file_once(paths: Paths, sd: Path) -> None:
    put(sd / "inner" / "m.ckpt")
    put(sd / "top.ckpt")
    cat = Catalog(replace(paths, ckpt_dirs=(sd, sd / "inner")))
    assert sorted(c.name for c in cat.checkpoints()) == ["m.ckpt", "top.ckpt"]  # relative to the deepest dir
