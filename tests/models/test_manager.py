"""ModelManager: loading through the catalog, RAM LRU, per-request VAE swap, clean load errors."""

from __future__ import annotations

import shutil

import pytest
import torch

from app.models.catalog.index import Catalog
from app.models.embeddings import EmbeddingDatabase
from app.models.manager import ModelLoadError, ModelManager, ModelNotFoundError
from app.paths import Paths
from app.settings import Settings


@pytest.fixture(scope="module")
def data_dir(tiny_data_dir, tmp_path_factory):
    """A private copy (tests here add broken files)."""
    out = tmp_path_factory.mktemp("mgr-data")
    shutil.copytree(tiny_data_dir, out, dirs_exist_ok=True)
    return out


def _manager(data_dir, **settings):
    paths = Paths.from_data_dir(data_dir)
    st = Settings(None)
    for key, value in settings.items():
        st.set(key, value, save=False)
    db = EmbeddingDatabase(paths.embeddings_dirs)
    return ModelManager(Catalog(paths), st, None, embeddings=db, paths=paths)


def test_get_loads_once_and_names_the_model(data_dir):
    m = _manager(data_dir)
    h = m.get("tiny-sd1")
    assert h.family == "sd1" and h.model_name == "tiny-sd1"
    assert h.shorthash and len(h.shorthash) == 10
    assert h.title == f"tiny-sd1.safetensors [{h.shorthash}]"
    assert m.get(h.title) is h and m.get("tiny-sd1.safetensors") is h
    assert m.load_count == 1 and m.current is h


def test_empty_name_uses_setting_then_first_checkpoint(data_dir):
    m = _manager(data_dir, sd_model_checkpoint="tiny-sd2v.safetensors")
    assert m.get("").family == "sd2v"
    m2 = _manager(data_dir)
    assert m2.get(None).info.name == "tiny-sd1.safetensors"


def test_lru_keeps_cache_size_plus_active(data_dir):
    m = _manager(data_dir, sd_checkpoint_cache=1)
    m.get("tiny-sd1")
    m.get("tiny-sd2v")
    assert m.load_count == 2
    m.get("tiny-sd1")  # cached: no reload
    assert m.load_count == 2
    m.get("tiny-sdxl")  # evicts sd2v (least recently used)
    assert [p.rsplit("/", 1)[-1] for p in m.loaded_filenames()] == ["tiny-sd1.safetensors", "tiny-sdxl.safetensors"]
    m.get("tiny-sd2v")
    assert m.load_count == 4


def test_vae_swap_in_place_and_restore(data_dir):
    m = _manager(data_dir)
    h = m.get("tiny-sd1", vae="None")
    vae = h.pipe.vae
    baked = {k: v.clone() for k, v in vae.state_dict().items()}
    h = m.get("tiny-sd1", vae="tiny.vae.safetensors")
    assert h.pipe.vae is vae  # same module, new weights
    assert h.vae_name == "tiny.vae.safetensors" and len(h.vae_hash) == 10
    assert any(not torch.equal(baked[k], v) for k, v in vae.state_dict().items())
    m.get("tiny-sd1", vae="None")
    assert h.vae_name is None and h.vae_hash is None
    assert all(torch.equal(baked[k], v) for k, v in vae.state_dict().items())
    m.get("tiny-sd1", vae="Automatic")  # no VAE named like the checkpoint → baked
    assert h.vae_name is None


def test_failed_load_keeps_previous_model(data_dir):
    broken = data_dir / "models" / "Stable-diffusion" / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    m = _manager(data_dir)
    good = m.get("tiny-sd1")
    with pytest.raises(ModelLoadError, match="broken.safetensors"):
        m.get("broken")
    assert m.current is good
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        m.get("no-such-model")
    broken.unlink()


def test_encoder_checks_embeddings_against_model(data_dir):
    m = _manager(data_dir)
    h = m.get("tiny-sd1")
    enc = m.encoder(h)
    assert m.encoder(h) is enc
    assert "tiny-emb" in m.embeddings.loaded
    cond = enc.encode(["a photo of tiny-emb"], 1)
    assert "tiny-emb" in cond.used_embeddings


def test_taesd_preview_decoder_from_original_keys(data_dir):
    from diffusers import AutoencoderTiny
    from safetensors.torch import save_file

    torch.manual_seed(0)
    reference = AutoencoderTiny()
    original = {}
    for key, value in reference.decoder.state_dict().items():
        index, _, rest = key.removeprefix("layers.").partition(".")
        original[f"{int(index) + 1}.{rest}"] = value.contiguous()
    folder = data_dir / "models" / "VAE-taesd"
    folder.mkdir(parents=True, exist_ok=True)
    m = _manager(data_dir)
    h = m.get("tiny-sd1")
    assert m.taesd(h) is None  # no file yet
    save_file(original, str(folder / "taesd_decoder.safetensors"))
    m2 = _manager(data_dir)
    dec = m2.taesd(m2.get("tiny-sd1"))
    lat = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        assert torch.equal(dec.decode(lat).sample, reference.decode(lat).sample)
    (folder / "taesd_decoder.safetensors").unlink()


def test_stale_checkpoint_setting_falls_back(data_dir):
    m = _manager(data_dir, sd_model_checkpoint="gone.safetensors [0123456789]")
    assert m.get().info.name == "tiny-sd1.safetensors"
    with pytest.raises(ModelNotFoundError, match="gone"):
        m.get("gone.safetensors")
