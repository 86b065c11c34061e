"""LoRA / LyCORIS key formats and weight deltas on the tiny SD1 model, each checked against a hand merge.

Formats: kohya LoRA (linear, 1x1 and 3x3 conv, LDM block names), PEFT ``lora_A/lora_B``, LoHa, LoKr,
full diff (+ bias), DoRA; plus key mapping tables (spec §3.3), unknown keys, refusals, bit-exact restore.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from app.models.lora.apply import apply_networks, restore_networks
from app.models.lora.keys import ModuleKey, model_index, module_key, parse_keys
from app.models.lora.network import NetworkCache, NetworkError, load_network
from app.models.lora.patch import patch_for


@pytest.fixture(scope="module")
def pipe(tiny_data_dir):
    from app.models.load.loader import load_pipeline

    loaded = load_pipeline(tiny_data_dir / "models" / "Stable-diffusion" / "tiny-sd1.safetensors")
    return loaded.pipe


@pytest.fixture(autouse=True)
def _restored(pipe):
    yield
    restore_networks(pipe)


def _snapshot(pipe):
    return {
        name: {k: v.clone() for k, v in getattr(pipe, name).state_dict().items()} for name in ("unet", "text_encoder")
    }


def _assert_same(pipe, snap):
    for name, sd in snap.items():
        for k, v in getattr(pipe, name).state_dict().items():
            assert torch.equal(v, sd[k]), f"{name}.{k} differs"


def _module(pipe, dotted):
    root, _, path = dotted.partition(".")
    return getattr(pipe, root).get_submodule(path)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=_gen(seed)) * 0.1


def _save(tmp_path, name, sd, metadata=None):
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata=metadata)
    return path


ATTN_Q = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
ATTN_K = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
TE_Q = "text_encoder.encoder.layers.0.self_attn.q_proj"
CONV = "unet.down_blocks.0.resnets.0.conv1"
PROJ_IN = "unet.down_blocks.0.attentions.0.proj_in"


def _kohya(dotted):
    root, _, path = dotted.partition(".")
    return ("lora_unet_" if root == "unet" else "lora_te_text_model_") + path.replace(".", "_")


# ------------------------------------------------------------------------------ key tables
MODULE_KEY_VECTORS = [
    ("lora_unet_down_blocks_0_attentions_0_proj_in", ModuleKey("unet", "down_blocks_0_attentions_0_proj_in")),
    ("lora_te_text_model_encoder_layers_0_self_attn_q_proj", ModuleKey("te1", "encoder_layers_0_self_attn_q_proj")),
    ("lora_te1_text_model_encoder_layers_5_mlp_fc1", ModuleKey("te1", "encoder_layers_5_mlp_fc1")),
    ("lora_te2_text_model_encoder_layers_5_self_attn_k_proj", ModuleKey("te2", "encoder_layers_5_self_attn_k_proj")),
    ("unet.mid_block.attentions.0.proj_out", ModuleKey("unet", "mid_block_attentions_0_proj_out")),
    ("text_encoder.text_model.encoder.layers.1.mlp.fc2", ModuleKey("te1", "encoder_layers_1_mlp_fc2")),
    ("text_encoder_2.text_model.encoder.layers.1.mlp.fc2", ModuleKey("te2", "encoder_layers_1_mlp_fc2")),
    ("lora_transformer_single_blocks_0_attn_to_q", None),  # FLUX: not a supported target
]


@pytest.mark.parametrize(("prefix", "expected"), MODULE_KEY_VECTORS)
def test_module_key_table(prefix, expected):
    assert module_key(prefix) == expected


SPEC_UNET_VECTORS = [  # spec §3.3: diffusers-style kohya name and compvis name reach the same module
    ("down_blocks.0.attentions.0.proj_in", "input_blocks_1_1_proj_in"),
    ("down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_q", "input_blocks_2_1_transformer_blocks_0_attn1_to_q"),
    ("mid_block.attentions.0.proj_out", "middle_block_1_proj_out"),
    ("mid_block.resnets.1.conv2", "middle_block_2_out_layers_3"),
    ("up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_k", "output_blocks_5_1_transformer_blocks_0_attn2_to_k"),
    ("up_blocks.3.resnets.2.time_emb_proj", "output_blocks_11_0_emb_layers_1"),
    ("down_blocks.1.resnets.0.conv1", "input_blocks_4_0_in_layers_2"),
    ("down_blocks.1.resnets.0.conv_shortcut", "input_blocks_4_0_skip_connection"),
    ("down_blocks.2.downsamplers.0.conv", "input_blocks_9_0_op"),
    ("up_blocks.0.upsamplers.0.conv", "output_blocks_2_1_conv"),
    ("up_blocks.1.upsamplers.0.conv", "output_blocks_5_2_conv"),
    ("conv_in", "input_blocks_0_0"),
    ("time_embedding.linear_2", "time_embed_2"),
]


@pytest.fixture(scope="module")
def sd15_unet_index():
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):  # full SD1.5 layout, no memory
        unet = UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8)
    return unet, model_index("unet", unet)


@pytest.mark.parametrize(("dotted", "compvis_name"), SPEC_UNET_VECTORS)
def test_sd15_unet_names_map_to_the_same_module(sd15_unet_index, dotted, compvis_name):
    unet, index = sd15_unet_index
    target = unet.get_submodule(dotted)
    assert index[dotted.replace(".", "_")] is target
    assert index[compvis_name] is target
    assert module_key("lora_unet_" + compvis_name) == ModuleKey("unet", compvis_name)


def test_te_kohya_name_maps_to_the_flattened_clip(pipe):
    key = module_key("lora_te_text_model_encoder_layers_0_self_attn_q_proj")
    assert model_index("te1", pipe.text_encoder)[key.name] is _module(pipe, TE_Q)


def test_parse_keys_groups_modules_bundles_and_unknown():
    t = torch.zeros(2, 2)
    parsed = parse_keys(
        {
            "lora_unet_conv_in.lora_down.weight": t,
            "lora_unet_conv_in.lora_up.weight": t,
            "lora_unet_conv_in.alpha": torch.tensor(1.0),
            "unet.conv_in.lora_A.weight": t,
            "bundle_emb.myemb.string_to_param.*": t,
            "something_else": t,
            "lora_unet_x.oft_blocks": t,
        }
    )
    assert set(parsed.modules[ModuleKey("unet", "conv_in")]) == {"down", "up", "alpha"}
    assert parsed.bundled == {"myemb": {"string_to_param.*": t}}
    assert sorted(parsed.unknown) == ["lora_unet_x.oft_blocks", "something_else"]


# ------------------------------------------------------------------------------ formats vs hand merge
def _lora_sd(dotted, shape, rank=4, alpha=2.0, seed=0, conv_k=None):
    name = _kohya(dotted)
    out_f, in_f = shape[0], shape[1]
    if conv_k:
        down = _rand(rank, in_f, conv_k, conv_k, seed=seed)
        up = _rand(out_f, rank, 1, 1, seed=seed + 1)
    else:
        down, up = _rand(rank, in_f, seed=seed), _rand(out_f, rank, seed=seed + 1)
    return {f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up, f"{name}.alpha": torch.tensor(alpha)}


def test_kohya_lora_matches_hand_merge_linear_conv_and_te(pipe, tmp_path):
    snap = _snapshot(pipe)
    targets = {ATTN_Q: None, PROJ_IN: None, CONV: 3, TE_Q: None}
    sd = {}
    for i, (dotted, k) in enumerate(targets.items()):
        sd.update(_lora_sd(dotted, _module(pipe, dotted).weight.shape, seed=10 * i, conv_k=k))
    net = load_network(_save(tmp_path, "multi", sd))
    originals = {d: _module(pipe, d).weight.detach().clone() for d in targets}
    result = apply_networks(pipe, [(net, 0.5, 0.8)])
    assert result.warnings == [] and result.modules_patched == 4 and result.te_signature is not None
    for dotted in targets:
        name = _kohya(dotted)
        up, down = sd[f"{name}.lora_up.weight"], sd[f"{name}.lora_down.weight"]
        mult = 0.5 if dotted.startswith("text_encoder") else 0.8
        hand = up.flatten(1) @ down.flatten(1)
        expected = originals[dotted] + mult * (2.0 / 4) * hand.reshape(originals[dotted].shape)
        assert torch.allclose(_module(pipe, dotted).weight, expected, atol=1e-6), dotted
    restore_networks(pipe)
    _assert_same(pipe, snap)


def test_ldm_named_kohya_keys_hit_the_same_modules(pipe, tmp_path):
    from app.models.load.ldm_convert import UNET_PREFIX, unet_to_ldm

    path = ATTN_Q.removeprefix("unet.")
    ldm = next(iter(unet_to_ldm({path + ".weight": None}, pipe.unet.config)))
    ldm_name = "lora_unet_" + ldm[len(UNET_PREFIX) :].removesuffix(".weight").replace(".", "_")
    assert ldm_name.startswith("lora_unet_input_blocks_")
    sd = _lora_sd(ATTN_Q, _module(pipe, ATTN_Q).weight.shape)
    renamed = {k.replace(_kohya(ATTN_Q), ldm_name): v for k, v in sd.items()}
    a = load_network(_save(tmp_path, "diffusers_named", sd))
    b = load_network(_save(tmp_path, "ldm_named", renamed))
    apply_networks(pipe, [(a, 1.0, 1.0)])
    w_a = _module(pipe, ATTN_Q).weight.clone()
    apply_networks(pipe, [(b, 1.0, 1.0)])
    assert torch.equal(_module(pipe, ATTN_Q).weight, w_a)


def test_peft_lora_a_b(pipe, tmp_path):
    w0 = _module(pipe, ATTN_K).weight.detach().clone()
    t0 = _module(pipe, TE_Q).weight.detach().clone()
    a, b = _rand(4, w0.shape[1], seed=1), _rand(w0.shape[0], 4, seed=2)
    ta, tb = _rand(4, t0.shape[1], seed=3), _rand(t0.shape[0], 4, seed=4)
    sd = {
        ATTN_K + ".lora_A.weight": a,
        ATTN_K + ".lora_B.weight": b,
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight": ta,
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight": tb,
    }
    net = load_network(_save(tmp_path, "peft", sd))
    apply_networks(pipe, [(net, 0.3, 0.7)])
    assert torch.allclose(_module(pipe, ATTN_K).weight, w0 + 0.7 * b @ a, atol=1e-6)
    assert torch.allclose(_module(pipe, TE_Q).weight, t0 + 0.3 * tb @ ta, atol=1e-6)


def test_loha(pipe, tmp_path):
    w0 = _module(pipe, ATTN_Q).weight.detach().clone()
    out_f, in_f, dim = w0.shape[0], w0.shape[1], 3
    w1a, w1b = _rand(out_f, dim, seed=1), _rand(dim, in_f, seed=2)
    w2a, w2b = _rand(out_f, dim, seed=3), _rand(dim, in_f, seed=4)
    name = _kohya(ATTN_Q)
    sd = {
        f"{name}.hada_w1_a": w1a,
        f"{name}.hada_w1_b": w1b,
        f"{name}.hada_w2_a": w2a,
        f"{name}.hada_w2_b": w2b,
        f"{name}.alpha": torch.tensor(1.5),
    }
    net = load_network(_save(tmp_path, "loha", sd))
    assert next(iter(net.modules.values())).kind == "loha"
    apply_networks(pipe, [(net, 1.0, 0.9)])
    expected = w0 + 0.9 * (1.5 / dim) * ((w1a @ w1b) * (w2a @ w2b))
    assert torch.allclose(_module(pipe, ATTN_Q).weight, expected, atol=1e-6)


def test_lokr(pipe, tmp_path):
    w0 = _module(pipe, ATTN_Q).weight.detach().clone()  # (32, 32) in tiny SD1
    out_f, in_f = w0.shape
    w1 = _rand(4, 4, seed=1)
    w2a, w2b = _rand(out_f // 4, 2, seed=2), _rand(2, in_f // 4, seed=3)
    name = _kohya(ATTN_Q)
    sd = {f"{name}.lokr_w1": w1, f"{name}.lokr_w2_a": w2a, f"{name}.lokr_w2_b": w2b, f"{name}.alpha": torch.tensor(1.0)}
    net = load_network(_save(tmp_path, "lokr", sd))
    assert next(iter(net.modules.values())).kind == "lokr"
    apply_networks(pipe, [(net, 1.0, 1.0)])
    expected = w0 + (1.0 / 2) * torch.kron(w1, w2a @ w2b)
    assert torch.allclose(_module(pipe, ATTN_Q).weight, expected, atol=1e-6)


def test_full_diff_with_bias(pipe, tmp_path):
    mod = _module(pipe, PROJ_IN)
    w0, b0 = mod.weight.detach().clone(), mod.bias.detach().clone()
    diff, diff_b = _rand(*w0.shape, seed=5), _rand(*b0.shape, seed=6)
    name = _kohya(PROJ_IN)
    net = load_network(_save(tmp_path, "full", {f"{name}.diff": diff, f"{name}.diff_b": diff_b}))
    apply_networks(pipe, [(net, 1.0, 0.5)])
    assert torch.allclose(mod.weight, w0 + 0.5 * diff, atol=1e-6)
    assert torch.allclose(mod.bias, b0 + 0.5 * diff_b, atol=1e-6)
    restore_networks(pipe)
    assert torch.equal(mod.weight, w0) and torch.equal(mod.bias, b0)


def test_dora_scale(pipe, tmp_path):
    w0 = _module(pipe, ATTN_Q).weight.detach().clone()
    sd = _lora_sd(ATTN_Q, w0.shape, seed=7)
    name = _kohya(ATTN_Q)
    dora = _rand(1, w0.shape[1], seed=8).abs() + 1.0
    sd[f"{name}.dora_scale"] = dora
    net = load_network(_save(tmp_path, "dora", sd))
    apply_networks(pipe, [(net, 1.0, 0.6)])
    merged = w0 + (2.0 / 4) * sd[f"{name}.lora_up.weight"] @ sd[f"{name}.lora_down.weight"]
    column_norm = merged.norm(dim=0, keepdim=True)  # per input column (kohya / A1111 convention)
    expected = w0 + 0.6 * (merged * (dora / column_norm) - w0)
    assert torch.allclose(_module(pipe, ATTN_Q).weight, expected, atol=1e-5)


# ------------------------------------------------------------------------------ multipliers, keys, refusals
def test_weight_zero_and_several_networks(pipe, tmp_path):
    snap = _snapshot(pipe)
    w0 = _module(pipe, ATTN_Q).weight.detach().clone()
    sd1, sd2 = _lora_sd(ATTN_Q, w0.shape, seed=1), _lora_sd(ATTN_Q, w0.shape, seed=2)
    n1, n2 = load_network(_save(tmp_path, "n1", sd1)), load_network(_save(tmp_path, "n2", sd2))
    result = apply_networks(pipe, [(n1, 0.0, 0.0)])
    assert result.modules_patched == 0 and result.te_signature is None
    _assert_same(pipe, snap)
    apply_networks(pipe, [(n1, 1.0, 1.0), (n2, 1.0, -0.5)])
    name = _kohya(ATTN_Q)

    def hand(sd):
        return 0.5 * sd[f"{name}.lora_up.weight"] @ sd[f"{name}.lora_down.weight"]

    assert torch.allclose(_module(pipe, ATTN_Q).weight, w0 + hand(sd1) - 0.5 * hand(sd2), atol=1e-6)
    apply_networks(pipe, [])
    _assert_same(pipe, snap)


def test_unknown_keys_are_counted_and_skipped(pipe, tmp_path):
    w0 = _module(pipe, ATTN_Q).weight.detach().clone()
    sd = _lora_sd(ATTN_Q, w0.shape)
    sd["lora_unet_no_such_module.lora_down.weight"] = torch.zeros(4, 8)
    sd["lora_unet_no_such_module.lora_up.weight"] = torch.zeros(8, 4)
    sd["totally_unrelated_key"] = torch.zeros(1)
    sd["lora_unet_conv_in.oft_blocks"] = torch.zeros(1)
    net = load_network(_save(tmp_path, "unknown", sd))
    result = apply_networks(pipe, [(net, 1.0, 1.0)])
    assert result.modules_patched == 1 and not result.refused
    assert len(result.warnings) == 1 and "3 unknown key(s)" in result.warnings[0]
    assert not torch.equal(_module(pipe, ATTN_Q).weight, w0)


def test_sdxl_network_on_sd1_is_refused(pipe, tmp_path):
    snap = _snapshot(pipe)
    good = load_network(_save(tmp_path, "good", _lora_sd(ATTN_Q, _module(pipe, ATTN_Q).weight.shape)))
    xl = load_network(
        _save(
            tmp_path,
            "xl-lora",
            {
                "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": torch.zeros(4, 32),
                "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": torch.zeros(32, 4),
            },
        )
    )
    result = apply_networks(pipe, [(xl, 1.0, 1.0), (good, 1.0, 1.0)])
    assert set(result.refused) == {"xl-lora"} and "xl-lora.safetensors" in result.refused["xl-lora"]
    assert "SDXL" in result.refused["xl-lora"]
    assert [n.name for n in result.applied] == ["good"] and result.modules_patched == 1
    restore_networks(pipe)
    _assert_same(pipe, snap)


def test_shape_mismatch_is_refused_naming_the_file(pipe, tmp_path):
    snap = _snapshot(pipe)
    bad = load_network(_save(tmp_path, "wide", _lora_sd(ATTN_Q, (640, 320))))
    result = apply_networks(pipe, [(bad, 1.0, 1.0)])
    assert "wide.safetensors" in result.refused["wide"] and "another model family" in result.refused["wide"]
    _assert_same(pipe, snap)


def test_unreadable_and_empty_files(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(NetworkError, match="junk.safetensors"):
        load_network(junk)
    with pytest.raises(NetworkError, match="no LoRA/LyCORIS module"):
        load_network(_save(tmp_path, "nothing", {"foo.bar": torch.zeros(2)}))


def test_pickle_with_tensors_only_loads(pipe, tmp_path):
    sd = _lora_sd(ATTN_Q, _module(pipe, ATTN_Q).weight.shape)
    path = tmp_path / "old.pt"
    torch.save(sd, path)
    net = load_network(path)
    assert len(net.modules) == 1 and net.name == "old"


def test_network_cache_is_lru_keyed_by_mtime(pipe, tmp_path):
    shape = _module(pipe, ATTN_Q).weight.shape
    paths = [_save(tmp_path, f"c{i}", _lora_sd(ATTN_Q, shape, seed=i)) for i in range(3)]
    cache = NetworkCache(limit=2)
    a = cache.get(paths[0])
    assert cache.get(paths[0]) is a and cache.loads == 1
    cache.get(paths[1])
    cache.get(paths[2])  # evicts c0
    assert len(cache) == 2
    assert cache.get(paths[0]) is not a and cache.loads == 4
    import os

    st = paths[0].stat()
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    assert cache.get(paths[0]).filename == a.filename and cache.loads == 5


def test_patch_restore_is_bit_exact_in_half_precision(tmp_path):
    lin = torch.nn.Linear(8, 8).to(torch.float16)
    model = torch.nn.Module()
    model.unet = lin
    w0 = lin.weight.detach().clone()
    from app.models.lora.patch import Delta

    patch = patch_for(lin)
    patch.apply([Delta(lin, torch.full((8, 8), 1e-3))], signature="x")
    assert not torch.equal(lin.weight, w0) and lin.weight.dtype == torch.float16
    patch.restore()
    assert torch.equal(lin.weight, w0) and patch.signature is None


def test_weights_not_resident_are_refused_without_touching_the_model():
    from types import SimpleNamespace

    from app.models.lora.network import network_from_state_dict

    with torch.device("meta"):  # what sequential CPU offload leaves on the modules
        unet = torch.nn.Sequential(torch.nn.Linear(4, 4))
    net = network_from_state_dict(
        {"lora_unet_0.lora_down.weight": torch.ones(1, 4), "lora_unet_0.lora_up.weight": torch.ones(4, 1)}, "m"
    )
    result = apply_networks(SimpleNamespace(unet=unet), [(net, 1.0, 1.0)])
    assert set(result.refused) == {"m"} and result.applied == [] and result.modules_patched == 0
    assert "--lowvram" in result.warnings[-1]
    assert patch_for(unet).signature is None


def test_registering_twice_keeps_one_shared_state():
    from app.models.lora.handler import register_lora_handlers, unregister_lora_handlers
    from app.prompts.extra_networks import ExtraNetworkRegistry

    registry = ExtraNetworkRegistry()
    first = register_lora_handlers(registry)
    assert register_lora_handlers(registry) is first
    assert registry.get("lyco").shared is first
    unregister_lora_handlers(registry)
    assert "lora" not in registry and "lyco" not in registry


def test_two_registries_do_not_share_lora_handlers():
    from app.models.lora.handler import register_lora_handlers
    from app.prompts.extra_networks import ExtraNetworkRegistry

    a, b = ExtraNetworkRegistry(), ExtraNetworkRegistry()
    shared_a = register_lora_handlers(a)
    assert "lora" not in b
    assert register_lora_handlers(b) is not shared_a
    assert a.get("lora").shared is shared_a


def test_sdxl_kohya_keys_te1_te2_and_sgm_unet_names(tiny_data_dir, tmp_path):
    from app.models.load.ldm_convert import UNET_PREFIX, unet_to_ldm
    from app.models.load.loader import load_pipeline

    xl = load_pipeline(tiny_data_dir / "models" / "Stable-diffusion" / "tiny-sdxl.safetensors").pipe
    attn = next(n for n, m in xl.unet.named_modules() if n.endswith("attn2.to_k"))
    ldm = next(iter(unet_to_ldm({attn + ".weight": None}, xl.unet.config)))[len(UNET_PREFIX) :]
    targets = {
        "lora_unet_" + ldm.removesuffix(".weight").replace(".", "_"): xl.unet.get_submodule(attn),
        "lora_te1_text_model_encoder_layers_0_self_attn_v_proj": xl.text_encoder.get_submodule(
            "encoder.layers.0.self_attn.v_proj"
            if not hasattr(xl.text_encoder, "text_model")
            else "text_model.encoder.layers.0.self_attn.v_proj"
        ),
        "lora_te2_text_model_encoder_layers_0_mlp_fc1": xl.text_encoder_2.get_submodule(
            "text_model.encoder.layers.0.mlp.fc1"
        ),
    }
    assert next(iter(targets)).startswith(
        ("lora_unet_input_blocks_", "lora_unet_middle_block_", "lora_unet_output_blocks_")
    )
    sd = {}
    for i, (name, module) in enumerate(targets.items()):
        out_f, in_f = module.weight.shape
        sd[f"{name}.lora_down.weight"] = _rand(2, in_f, seed=i)
        sd[f"{name}.lora_up.weight"] = _rand(out_f, 2, seed=i + 10)
        sd[f"{name}.alpha"] = torch.tensor(1.0)
    originals = {name: m.weight.detach().clone() for name, m in targets.items()}
    net = load_network(_save(tmp_path, "xl", sd))
    try:
        result = apply_networks(xl, [(net, 0.5, 2.0)])
        assert result.warnings == [] and result.modules_patched == 3
        for name, module in targets.items():
            mult = 2.0 if name.startswith("lora_unet_") else 0.5
            hand = sd[f"{name}.lora_up.weight"] @ sd[f"{name}.lora_down.weight"]
            assert torch.allclose(module.weight, originals[name] + mult * 0.5 * hand, atol=1e-6), name
    finally:
        restore_networks(xl)
    for name, module in targets.items():
        assert torch.equal(module.weight, originals[name])


def test_tiny_kohya_lora_reaches_every_module_including_te_q_and_v(pipe, tiny_data_dir):
    net = load_network(tiny_data_dir / "models" / "Lora" / "tiny-lora.safetensors")
    te_keys = [k.name for k in net.modules if k.component == "te1"]
    assert any(k.endswith("self_attn_q_proj") for k in te_keys) and any(k.endswith("self_attn_v_proj") for k in te_keys)
    q0 = _module(pipe, TE_Q).weight.detach().clone()
    result = apply_networks(pipe, [(net, 1.0, 1.0)])
    assert result.warnings == [] and result.modules_patched == len(net.modules)
    assert not torch.equal(_module(pipe, TE_Q).weight, q0)


def test_unsupported_network_type_is_named(tmp_path):
    with pytest.raises(NetworkError, match="unsupported network type.*oft_blocks"):
        load_network(_save(tmp_path, "oft", {"lora_unet_conv_in.oft_blocks": torch.zeros(2, 2)}))
