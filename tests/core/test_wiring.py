"""Start-up wiring between layers: flags reach the loader, extensions and LoRA handlers are registered."""

from __future__ import annotations

from app.cli import parse_args
from app.runtime import Runtime


def _runtime(tmp_path, *flags: str) -> Runtime:
    return Runtime(parse_args(["--data-dir", str(tmp_path), *flags], environ={}))


def test_disable_safe_unpickle_reaches_the_manager(tmp_path):
    assert _runtime(tmp_path / "a").manager.allow_unsafe is False
    assert _runtime(tmp_path / "b", "--disable-safe-unpickle").manager.allow_unsafe is True


def test_manager_creation_registers_lora_handlers(tmp_path):
    rt = _runtime(tmp_path / "fresh")
    assert "lora" not in rt.extra_networks  # nothing before the manager exists
    manager = rt.manager
    assert manager.extra_networks is rt.extra_networks
    assert {"lora", "lyco"} <= set(rt.extra_networks)


def test_two_runtimes_do_not_share_extra_network_handlers(tmp_path):
    a, b = _runtime(tmp_path / "a"), _runtime(tmp_path / "b")
    a.manager.extra_networks.register("testnet", object())
    assert "testnet" in a.extra_networks
    assert "testnet" not in b.manager.extra_networks
    assert a.extra_networks.get("lora") is not b.extra_networks.get("lora")


def test_start_loads_extensions(tmp_path):
    ext = tmp_path / "extensions" / "hello" / "scripts"
    ext.mkdir(parents=True)
    (ext / "hello.py").write_text(
        "import modules.scripts as scripts\n"
        "class Script(scripts.Script):\n"
        "    def title(self):\n        return 'Hello'\n"
        "    def show(self, is_img2img):\n        return scripts.AlwaysVisible\n",
        "utf-8",
    )
    rt = _runtime(tmp_path)
    rt.start()
    from app.plugins import list_extensions

    names = [e["name"] for e in list_extensions(rt)]
    assert "hello" in names
