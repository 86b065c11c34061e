"""Extra Networks cards from the catalog (app.models.catalog.cards): the text a card inserts, search / sort /
subfolder filter, the user-metadata JSON round trip (A1111's keys, other keys kept), previews and the preview rule
of the thumbnail route."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from app.models.catalog import cards as C
from app.models.catalog.index import Catalog
from app.paths import Paths
from tests.models.test_catalog import st_bytes


def _png(color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def library(tmp_path: Path) -> Catalog:
    paths = Paths.from_data_dir(tmp_path)
    lora_dir, emb_dir, ckpt_dir = paths.lora_dirs[0], paths.embeddings_dirs[0], paths.ckpt_dirs[0]
    (lora_dir / "styles" / "anime").mkdir(parents=True)
    (lora_dir / "detail.safetensors").write_bytes(st_bytes({"ss_output_name": "detailer"}))
    (lora_dir / "styles" / "anime" / "bright.safetensors").write_bytes(st_bytes({}))
    (lora_dir / "styles" / "anime" / "bright.preview.png").write_bytes(_png())
    emb_dir.mkdir(parents=True)
    (emb_dir / "badhands.safetensors").write_bytes(st_bytes({}, {"emb_params": b"\x00" * 8}))
    ckpt_dir.mkdir(parents=True)
    (ckpt_dir / "base.safetensors").write_bytes(st_bytes({}))
    os.utime(lora_dir / "detail.safetensors", (1_000_000, 1_000_000))
    os.utime(lora_dir / "styles" / "anime" / "bright.safetensors", (2_000_000, 2_000_000))
    return Catalog(paths, no_hashing=True)


def test_lora_cards_insert_the_tag_with_preferred_weight_and_activation_text(library: Catalog) -> None:
    cards = {c.name: c for c in C.list_cards(library, "lora", default_multiplier=0.8)}
    assert cards["detail"].prompt == "<lora:detailer:0.8>"  # alias from the file, the default multiplier
    assert cards["bright"].folder == "styles/anime"
    assert cards["bright"].preview is not None and cards["bright"].preview.endswith("bright.preview.png")
    C.save_user_metadata(cards["detail"].filename, {"activation text": "intricate", "preferred weight": "0.6",
                                                    "negative text": "blurry"})
    again = {c.name: c for c in C.list_cards(library, "lora", lora_name_preference="Filename")}
    assert again["detail"].prompt == "<lora:detail:0.6> intricate"
    assert again["detail"].negative == "(blurry:1)"


def test_embedding_and_checkpoint_cards(library: Catalog) -> None:
    (emb,) = C.list_cards(library, "textual_inversion")
    assert (emb.name, emb.prompt) == ("badhands", "badhands")
    (ckpt,) = C.list_cards(library, "checkpoints")
    assert ckpt.name == "base" and ckpt.checkpoint == library.checkpoints()[0].title and ckpt.prompt == ""
    assert C.list_cards(library, "hypernetworks") == []
    with pytest.raises(ValueError, match="unknown extra network kind"):
        C.list_cards(library, "nope")


def test_search_sort_and_subfolders(library: Catalog) -> None:
    cards = C.list_cards(library, "lora")
    assert C.subfolders(cards) == ["All", "styles", "styles/anime"]
    assert [c.name for c in C.filter_cards(cards, folder="styles")] == ["bright"]
    assert [c.name for c in C.filter_cards(cards, search="DETAIL")] == ["detail"]
    assert [c.name for c in C.sort_cards(cards, "name")] == ["bright", "detail"]
    assert [c.name for c in C.sort_cards(cards, "date", descending=True)] == ["bright", "detail"]
    assert [c.name for c in C.sort_cards(cards, "date")] == ["detail", "bright"]
    assert [c.name for c in C.sort_cards(cards, "path")] == ["detail", "bright"]  # "detail…" < "styles/…"
    C.save_user_metadata(cards[0].filename if cards[0].name == "detail" else cards[1].filename,
                         {"description": "makes things sharper"})
    assert [c.name for c in C.filter_cards(C.list_cards(library, "lora"), search="sharper")] == ["detail"]
    with pytest.raises(ValueError, match="unknown sort key"):
        C.sort_cards(cards, "size")


def test_user_metadata_round_trip_keeps_other_keys(library: Catalog) -> None:
    model = Path(library.loras()[0].filename)
    sidecar = C.metadata_path(model)
    sidecar.write_text(json.dumps({"sd version": "SD1", "custom": {"x": 1}, "notes": "old"}), encoding="utf-8")
    result = C.save_user_metadata(model, {"description": "d", "activation text": "a b", "preferred weight": 0.75,
                                          "negative text": "", "notes": "new"})
    on_disk = json.loads(sidecar.read_text(encoding="utf-8"))
    assert on_disk == result == {"sd version": "SD1", "custom": {"x": 1}, "notes": "new", "description": "d",
                                 "activation text": "a b", "preferred weight": 0.75, "negative text": ""}
    with pytest.raises(ValueError, match="preferred weight must be a number"):
        C.save_user_metadata(model, {"preferred weight": "heavy"})
    assert json.loads(sidecar.read_text(encoding="utf-8")) == on_disk  # unchanged after the refused write


def test_replace_preview_and_the_preview_rule(library: Catalog, tmp_path: Path) -> None:
    model = Path(next(i.filename for i in library.loras() if i.name == "bright"))
    old = model.with_name("bright.png")
    old.write_bytes(_png("blue"))  # shown before `.preview.png`: removed when the preview is replaced
    written = C.save_preview(model, _png("green"))
    assert written == model.with_name("bright.preview.png") and not old.exists()
    assert Image.open(written).getpixel((0, 0)) == (0, 128, 0)
    with pytest.raises(ValueError, match="PNG"):
        C.save_preview(model, b"not an image")
    roots = [library.paths.lora_dirs[0]]
    assert C.allowed_preview(str(written), roots) == written.resolve()
    assert C.allowed_preview(str(model), roots) is None  # a model file is never served
    outside = tmp_path / "secret.png"
    outside.write_bytes(_png())
    assert C.allowed_preview(str(outside), roots) is None
    assert C.allowed_preview(str(roots[0] / ".." / ".." / "secret.png"), roots) is None
    assert C.allowed_preview("", roots) is None
