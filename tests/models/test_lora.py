"""LoRA through the engine: ``<lora:…>`` tags on tiny SD1 txt2img jobs (64x64, 2 steps).

Weight 1 changes the image, weight 0 does not, te-only and unet-only weights each change it, the next
job without the tag is bit-identical to one before any LoRA; infotext hashes (addnet, spec vector),
missing / wrong-family networks as warnings, lyco alias, bundled embeddings, tag multiplier table.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from app.engine.conditioning import activate_extra_networks, deactivate_extra_networks
from app.engine.modes.txt2img import run_txt2img
from app.engine.prepare import prepare
from app.models.catalog.index import Catalog
from app.models.embeddings import EmbeddingDatabase
from app.models.lora.handler import register_lora_handlers, unregister_lora_handlers
from app.models.lora.patch import patch_for
from app.models.manager import ModelManager
from app.params import GenerationParams, SeedParams
from app.paths import Paths
from app.settings import Settings

pytestmark = pytest.mark.slow

BASE_PROMPT = "a photo of a cat "  # what "a photo of a cat <lora:…>" leaves for the conditioning


def _addnet_hash(path) -> str:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return hashlib.sha256(data[8 + n :]).hexdigest()


@pytest.fixture(scope="module")
def env(tiny_data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("lora-data")
    ckpt_dir = root / "models" / "Stable-diffusion"
    lora_dir = root / "models" / "Lora"
    ckpt_dir.mkdir(parents=True)
    lora_dir.mkdir(parents=True)
    (root / "embeddings").mkdir()
    shutil.copy(tiny_data_dir / "models" / "Stable-diffusion" / "tiny-sd1.safetensors", ckpt_dir)
    shutil.copy(tiny_data_dir / "models" / "Lora" / "tiny-lora.safetensors", lora_dir)
    gen = torch.Generator().manual_seed(5)
    # an SDXL-style network (second text encoder keys) and one with a bundled embedding
    save_file(
        {
            "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": torch.randn(4, 32, generator=gen),
            "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": torch.randn(32, 4, generator=gen),
        },
        str(lora_dir / "xl-only.safetensors"),
    )
    save_file(
        {
            "bundle_emb.bundtok.string_to_param.*": torch.randn(2, 32, generator=gen),
            "lora_unet_conv_in.lora_down.weight": torch.randn(4, 4, 3, 3, generator=gen) * 0.1,
            "lora_unet_conv_in.lora_up.weight": torch.randn(32, 4, 1, 1, generator=gen) * 0.1,
        },
        str(lora_dir / "bund.safetensors"),
    )
    paths = Paths.from_data_dir(root)
    settings = Settings(None)
    manager = ModelManager(
        Catalog(paths), settings, None, embeddings=EmbeddingDatabase(paths.embeddings_dirs), paths=paths
    )
    shared = register_lora_handlers(manager.extra_networks)
    base = run_txt2img(manager, _params(prompt=BASE_PROMPT), settings)  # before any LoRA was applied
    yield manager, settings, shared, base, root
    unregister_lora_handlers(manager.extra_networks)


def _params(**kw) -> GenerationParams:
    seed = kw.pop("seed", 1234)
    base = dict(
        prompt="a photo of a cat",
        negative_prompt="blurry",
        steps=2,
        width=64,
        height=64,
        sampler_name="Euler a",
        checkpoint="tiny-sd1",
        save_images=False,
    )
    base.update(kw)
    return GenerationParams(seed=SeedParams(seed=seed), **base)


def _gen(env, prompt):
    manager, settings = env[0], env[1]
    return run_txt2img(manager, _params(prompt=prompt), settings)


def _arr(result) -> np.ndarray:
    return np.asarray(result.images[0], dtype=np.int16)


def _infotext_pairs(text: str) -> dict[str, str]:
    from app.infotext.parse import parse_generation_parameters

    return parse_generation_parameters(text)


def _unet(env):
    return env[0].get("tiny-sd1").pipe.unet


# ------------------------------------------------------------------------------ image effects
def test_weight_one_changes_the_image_and_the_next_job_is_bit_identical(env):
    base = env[3]
    tagged = _gen(env, "a photo of a cat <lora:tiny-lora:1>")
    assert not np.array_equal(_arr(tagged), _arr(base))
    assert tagged.warnings == []
    assert patch_for(_unet(env)).signature is None  # restored after the job
    after = _gen(env, BASE_PROMPT)
    assert np.array_equal(_arr(after), _arr(base))


def test_weight_zero_is_exactly_no_change(env):
    zero = _gen(env, "a photo of a cat <lora:tiny-lora:0>")
    assert np.array_equal(_arr(zero), _arr(env[3]))


@pytest.mark.parametrize("tag", ["<lora:tiny-lora:1:0>", "<lora:tiny-lora:0:1>", "<lora:tiny-lora:unet=0>"])
def test_te_only_and_unet_only_weights_each_change_the_image(env, tag):
    out = _gen(env, f"a photo of a cat {tag}")
    assert not np.array_equal(_arr(out), _arr(env[3]))
    assert np.array_equal(_arr(_gen(env, BASE_PROMPT)), _arr(env[3]))


def test_te_lora_changes_the_encoder_cache_key_and_restores_it(env):
    manager = env[0]
    encoder = manager.encoder(manager.get("tiny-sd1"))
    plan = prepare(manager, _params(prompt="a cat <lora:tiny-lora:1:0>"), env[1])
    before = encoder.encode([BASE_PROMPT]).cond
    try:
        activate_extra_networks(plan, plan.all_prompts[:1])
        assert encoder.state_key is not None
        during = encoder.encode([BASE_PROMPT]).cond
        assert not torch.equal(during, before)  # not served from the cache
    finally:
        deactivate_extra_networks(plan)
    assert encoder.state_key is None
    assert torch.equal(encoder.encode([BASE_PROMPT]).cond, before)


def test_lyco_alias_is_the_same_network(env):
    lora = _gen(env, "a photo of a cat <lora:tiny-lora:0.7>")
    lyco = _gen(env, "a photo of a cat <lyco:tiny-lora:0.7>")
    assert np.array_equal(_arr(lora), _arr(lyco))


def test_several_networks_at_once(env):
    one = _gen(env, "a photo of a cat <lora:tiny-lora:1>")
    two = _gen(env, "a photo of a cat <lora:tiny-lora:1><lora:bund:1>")
    assert not np.array_equal(_arr(one), _arr(two))
    assert 'Lora hashes: "tiny-lora: ' in two.infotexts[0] and ", bund: " in two.infotexts[0]


# ------------------------------------------------------------------------------ infotext and warnings
def test_infotext_keeps_the_tag_and_has_the_addnet_hash(env):
    root = env[4]
    out = _gen(env, "a photo of a cat <lora:tiny-lora:0.8>")
    text = out.infotexts[0]
    assert text.startswith("a photo of a cat <lora:tiny-lora:0.8>\n")
    expected = _addnet_hash(root / "models" / "Lora" / "tiny-lora.safetensors")[:12]
    assert f'Lora hashes: "tiny-lora: {expected}"' in text
    assert _infotext_pairs(text)["Lora hashes"] == f"tiny-lora: {expected}"


def test_addnet_hash_spec_vector(tmp_path):
    from app.models.hashes import addnet_hash_safetensors, sha256_file

    header = b'{"__metadata__": {"a": "b"}}'
    assert len(header) == 28
    path = tmp_path / "vector.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(range(16)))
    assert addnet_hash_safetensors(path)[:12] == "be45cb2605bf"
    assert sha256_file(path)[:12] == "fb1aa9fc4363"


def test_missing_lora_warns_and_generation_continues(env):
    out = _gen(env, "a photo of a cat <lora:no-such-lora:1>")
    assert "Lora not found: no-such-lora" in out.warnings
    assert np.array_equal(_arr(out), _arr(env[3]))
    assert "Lora hashes" not in out.infotexts[0]


def test_wrong_family_network_is_refused_with_the_file_name(env):
    out = _gen(env, "a photo of a cat <lora:xl-only:1>")
    assert any("xl-only.safetensors" in w and "SDXL" in w for w in out.warnings)
    assert any(w.startswith("Networks with errors: xl-only") for w in out.warnings)
    assert np.array_equal(_arr(out), _arr(env[3]))
    assert "Lora hashes" not in out.infotexts[0]


def test_bundled_embedding_is_usable_for_the_job(env):
    with_net = _gen(env, "a photo of bundtok <lora:bund:0>")  # weight 0: only the embedding acts
    plain = _gen(env, "a photo of bundtok ")
    assert not np.array_equal(_arr(with_net), _arr(plain))
    assert 'TI hashes: "bundtok: bund"' in with_net.infotexts[0]
    again = _gen(env, "a photo of bundtok ")  # the embedding is gone after the job
    assert np.array_equal(_arr(again), _arr(plain))


def test_parsed_files_are_cached_between_jobs(env):
    shared = env[2]
    _gen(env, "a photo of a cat <lora:tiny-lora:0.3>")
    loads = shared.cache.loads
    _gen(env, "a photo of a cat <lora:tiny-lora:0.4>")
    assert shared.cache.loads == loads


def test_bad_multiplier_is_a_clear_error_and_leaves_the_model_untouched(env):
    with pytest.raises(ValueError, match="te multiplier"):
        _gen(env, "a photo of a cat <lora:tiny-lora:abc>")
    assert patch_for(_unet(env)).signature is None
    assert np.array_equal(_arr(_gen(env, BASE_PROMPT)), _arr(env[3]))


# ------------------------------------------------------------------------------ tag table (spec §3.1)
TAG_VECTORS = [
    ("<lora:tiny-lora>", 1.0, 1.0),
    ("<lora:tiny-lora:0.8>", 0.8, 0.8),
    ("<lora:tiny-lora:0.8:0.5>", 0.8, 0.5),
    ("<lora:tiny-lora:1:0.5:16>", 1.0, 0.5),
    ("<lora:tiny-lora:unet=0.3>", 1.0, 0.3),
    ("<lora:tiny-lora:0.6:te=0.2>", 0.2, 0.2),
]


@pytest.mark.parametrize(("tag", "te", "unet"), TAG_VECTORS)
def test_tag_multipliers_reach_the_patch(env, tag, te, unet):
    manager, settings = env[0], env[1]
    plan = prepare(manager, _params(prompt=f"a cat {tag}"), settings)
    try:
        cleaned = activate_extra_networks(plan, plan.all_prompts[:1])
        assert cleaned == ["a cat "]
        signature = patch_for(plan.model.loaded.pipe.unet).signature
        assert [(t, u) for _, _, t, u in signature[1]] == [(te, unet)]
        assert plan.encoder.state_key is not None
    finally:
        deactivate_extra_networks(plan)
    assert patch_for(plan.model.loaded.pipe.unet).signature is None and plan.encoder.state_key is None


def test_user_metadata_alias_lookup(env):
    root = env[4]
    meta = json.loads(json.dumps({"ss_output_name": "other-alias"}))
    src = root / "models" / "Lora" / "tiny-lora.safetensors"
    from safetensors.torch import load_file

    save_file(load_file(str(src)), str(root / "models" / "Lora" / "renamed-file.safetensors"), metadata=meta)
    try:
        by_alias = _gen(env, "a photo of a cat <lora:other-alias:1>")  # found after a rescan
        by_name = _gen(env, "a photo of a cat <lora:tiny-lora:1>")
        assert by_alias.warnings == [] and np.array_equal(_arr(by_alias), _arr(by_name))
        assert 'Lora hashes: "other-alias: ' in by_alias.infotexts[0]
    finally:
        (root / "models" / "Lora" / "renamed-file.safetensors").unlink()
        env[0].catalog.refresh_loras()


# ------------------------------------------------------------------------------ infotext paste (spec §3.4)
ADDNET_VECTORS = [
    (
        {"Prompt": "p", "AddNet Module 1": "LoRA", "AddNet Model 1": "foo(abcdef012345)", "AddNet Weight A 1": "0.6"},
        "p\n<lora:foo:0.6>",
    ),
    ({"Prompt": "p", "AddNet Module 1": "LoRA", "AddNet Model 1": "bar"}, "p\n<lora:bar:1.0>"),
    ({"Prompt": "p", "AddNet Module 1": "Hypernetwork", "AddNet Model 1": "baz(12ab)"}, "p"),
    (
        {
            "Prompt": "p",
            "AddNet Module 1": "LoRA",
            "AddNet Model 1": "a(01)",
            "AddNet Weight A 1": "0.5",
            "AddNet Module 2": "LoRA",
            "AddNet Model 2": "b(02)",
            "AddNet Weight A 2": "0.25",
        },
        "p\n<lora:a:0.5><lora:b:0.25>",
    ),
]


@pytest.mark.parametrize(("fields", "prompt"), ADDNET_VECTORS)
def test_legacy_addnet_fields_become_tags(fields, prompt):
    from app.models.lora.paste import convert_addnet_fields

    d = dict(fields)
    convert_addnet_fields(d)
    assert d["Prompt"] == prompt


def test_pasted_alias_is_rewritten_by_hash(tmp_path):
    from app.models.lora.paste import parse_lora_hashes, rewrite_lora_aliases

    lora_dir = tmp_path / "models" / "Lora"
    lora_dir.mkdir(parents=True)
    save_file(
        {"lora_unet_conv_in.diff": torch.ones(2)},
        str(lora_dir / "local-file.safetensors"),
        metadata={"ss_output_name": "local-alias"},
    )
    catalog = Catalog(Paths.from_data_dir(tmp_path))
    info = catalog.find_lora("local-alias")
    short = catalog.lora_hash(info)[:12]
    assert parse_lora_hashes(f"remote: {short}, other: 0123") == {"remote": short, "other": "0123"}
    d = {"Prompt": "a <lora:remote:0.8> b <lora:unknown:1>", "Lora hashes": f"remote: {short}, unknown: 000000000000"}
    assert rewrite_lora_aliases(dict(d), catalog) == "a <lora:local-alias:0.8> b <lora:unknown:1>"
    assert rewrite_lora_aliases(dict(d), catalog, "Filename") == "a <lora:local-file:0.8> b <lora:unknown:1>"
    assert rewrite_lora_aliases({"Prompt": "a <lora:remote:1>"}, catalog) == "a <lora:remote:1>"


def test_weights_are_restored_when_the_job_fails(env, monkeypatch):
    from app.engine.modes import txt2img

    seen = []

    def failing_first_pass(plan, batch, *_switch):
        seen.append(patch_for(plan.model.loaded.pipe.unet).signature is not None)
        raise RuntimeError("boom in the sampler")

    monkeypatch.setattr(txt2img, "_first_pass", failing_first_pass)
    with pytest.raises(RuntimeError, match="boom"):
        _gen(env, "a photo of a cat <lora:tiny-lora:1>")
    monkeypatch.undo()
    assert seen == [True]  # the LoRA was applied when the failure happened
    assert patch_for(_unet(env)).signature is None
    manager = env[0]
    assert manager.encoder(manager.get("tiny-sd1")).state_key is None
    assert np.array_equal(_arr(_gen(env, BASE_PROMPT)), _arr(env[3]))
