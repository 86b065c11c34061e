"""Command-line flags: A1111 names, defaults, derived values, COMMANDLINE_ARGS, --help, secrets, device policy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import build_parser, is_listening_publicly, parse_args, redacted_args, server_host
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]

REQUIRED_FLAGS = [
    "--listen", "--port", "--server-name", "--api", "--nowebui", "--api-auth", "--gradio-auth", "--gradio-auth-path",
    "--theme", "--data-dir", "--models-dir", "--ckpt-dir", "--ckpt", "--vae-dir", "--vae-path", "--lora-dir",
    "--embeddings-dir", "--esrgan-models-path", "--realesrgan-models-path", "--no-half", "--no-half-vae",
    "--precision", "--upcast-sampling", "--medvram", "--lowvram", "--use-cpu", "--device-id",
    "--disable-safe-unpickle", "--ui-config-file", "--ui-settings-file", "--freeze-settings",
    "--no-download-sd-model", "--no-hashing", "--autolaunch", "--disable-all-extensions",
    "--enable-insecure-extension-access", "--styles-file", "--api-server-stop", "--no-prompt-history",
    "--hide-ui-dir-config", "--cors-allow-origins", "--subpath", "--skip-torch-cuda-test",
    "--disable-console-progressbars", "--skip-install",
]


def parse(*argv: str, env: dict[str, str] | None = None):
    return parse_args(list(argv), environ=env or {})


@pytest.mark.parametrize(
    ("argv", "attr", "expected"),
    [
        ((), "port", 7860),
        (("--nowebui",), "port", 7861),
        (("--nowebui", "--port", "9000"), "port", 9000),
        (("--port", "7000"), "port", 7000),
        (("--nowebui",), "api", True),
        ((), "api", False),
        ((), "precision", "autocast"),
        (("--precision", "full"), "precision", "full"),
        ((), "use_cpu", []),
        (("--use-cpu", "all"), "use_cpu", ["all"]),
        ((), "timeout_keep_alive", 30),
        ((), "freeze_settings", False),
        (("--styles-file", "a.csv", "--styles-file", "b.csv"), "styles_file", ["a.csv", "b.csv"]),
    ],
)
def test_flag_values(argv, attr, expected):
    assert getattr(parse(*argv), attr) == expected


@pytest.mark.parametrize(
    ("argv", "host", "public"),
    [
        ((), "127.0.0.1", False),
        (("--listen",), "0.0.0.0", True),
        (("--server-name", "192.168.1.5"), "192.168.1.5", True),
        (("--listen", "--server-name", "127.0.0.1"), "127.0.0.1", True),
        (("--server-name", "localhost"), "localhost", False),
    ],
)
def test_bind_host(argv, host, public):
    args = parse(*argv)
    assert server_host(args) == host
    assert is_listening_publicly(args) is public


def test_help_lists_every_flag_with_help_text():
    text = build_parser().format_help()
    for flag in REQUIRED_FLAGS:
        assert flag in text, flag
    # every option has a help text
    for action in build_parser()._actions:
        assert action.help, action.option_strings


def test_help_from_the_command_line_without_heavy_imports():
    code = ("import sys, app.cli, app.paths, app.settings, app.settings.options, app.settings.ui_config, app.devices;"
            "app.cli.build_parser();"
            "print(sorted(m for m in ('torch', 'gradio', 'diffusers', 'fastapi') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    helped = subprocess.run([sys.executable, "-m", "app", "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert helped.returncode == 0
    assert "--data-dir" in helped.stdout and "COMMANDLINE_ARGS" in helped.stdout


def test_commandline_args_come_first_and_argv_wins():
    env = {"COMMANDLINE_ARGS": '--api --port 9000 --data-dir "/tmp/with space"'}
    args = parse("--port", "9001", env=env)
    assert args.api is True
    assert args.port == 9001
    assert args.data_dir == "/tmp/with space"


def test_commandline_args_from_process_environment(monkeypatch):
    monkeypatch.setenv("COMMANDLINE_ARGS", "--nowebui --no-hashing")
    args = parse_args([])
    assert args.nowebui and args.no_hashing and args.port == 7861


def test_unknown_flag_is_an_error(capsys):
    with pytest.raises(SystemExit):
        parse("--no-such-flag")
    assert "--no-such-flag" in capsys.readouterr().err


def test_bad_choice_is_an_error():
    with pytest.raises(SystemExit):
        parse("--precision", "double")


def test_redacted_args_hide_credentials():
    args = parse("--api-auth", "u:secret1", "--gradio-auth", "g:secret2", "--listen")
    shown = redacted_args(args)
    text = repr(shown)
    assert "secret1" not in text and "secret2" not in text
    assert shown["api_auth"] == "***" and shown["listen"] is True
    assert args.api_auth == "u:secret1"  # the namespace itself is untouched


# -- device policy ---------------------------------------------------------------------------------------------------
def test_device_policy_cpu(monkeypatch):
    import torch

    from app.devices import DevicePolicy

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    policy = DevicePolicy.from_args(parse("--medvram"))
    assert policy.device.type == "cpu"
    assert policy.dtype == torch.float32 and policy.vae_dtype == torch.float32
    assert policy.offload == "none"  # offloading means nothing on the CPU


@pytest.mark.parametrize(
    ("argv", "device", "dtype", "vae_dtype", "offload"),
    [
        ((), "cuda", "float16", "float16", "none"),
        (("--no-half",), "cuda", "float32", "float32", "none"),
        (("--precision", "full"), "cuda", "float32", "float32", "none"),
        (("--no-half-vae",), "cuda", "float16", "float32", "none"),
        (("--medvram",), "cuda", "float16", "float16", "medvram"),
        (("--lowvram", "--medvram"), "cuda", "float16", "float16", "lowvram"),
        (("--device-id", "1"), "cuda:1", "float16", "float16", "none"),
        (("--use-cpu", "all"), "cpu", "float32", "float32", "none"),
    ],
)
def test_device_policy_with_cuda(monkeypatch, argv, device, dtype, vae_dtype, offload):
    import torch

    from app.devices import DevicePolicy

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    policy = DevicePolicy.from_args(parse(*argv))
    assert str(policy.device) == device
    assert policy.dtype == getattr(torch, dtype)
    assert policy.vae_dtype == getattr(torch, vae_dtype)
    assert policy.offload == offload


def test_device_policy_bad_device_id(monkeypatch):
    import torch

    from app.devices import DevicePolicy

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="--device-id 3"):
        DevicePolicy.from_args(parse("--device-id", "3"))


def test_device_policy_mps_and_upcast(monkeypatch):
    import torch

    from app.devices import DevicePolicy

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    policy = DevicePolicy.from_args(parse("--upcast-sampling", "--medvram-sdxl"))
    assert policy.device.type == "mps" and policy.dtype == torch.float16 and policy.upcast_sampling
    assert policy.offload_for(is_sdxl=True) == "medvram" and policy.offload_for(is_sdxl=False) == "none"


def test_webui_sh_launches_with_commandline_args(tmp_path):
    """The launcher sources webui-user.sh, keeps COMMANDLINE_ARGS and passes extra flags to `python -m app`."""
    import os
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "COMMANDLINE_ARGS"}
    env.update(venv_dir="-", python_cmd=sys.executable, OMP_NUM_THREADS="1",
               COMMANDLINE_ARGS=f'--nowebui --test-server --data-dir "{tmp_path / "data dir"}"')
    proc = subprocess.Popen(["bash", str(ROOT / "webui.sh"), "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    def answers_ping() -> bool:
        assert proc.poll() is None, proc.stdout.read().decode()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/internal/ping", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_until(answers_ping, timeout=120, interval=0.2, message="webui.sh did not start the server")
        assert (tmp_path / "data dir" / "models" / "Stable-diffusion").is_dir()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
