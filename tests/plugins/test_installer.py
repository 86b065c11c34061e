"""Extensions' installers at launch (``python -m app.plugins.installer``, run by ./webui.sh): requirements.txt and
install.py per enabled extension with one log line each, --skip-install, disabled extensions skipped, a failing
installer reported without stopping the others."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

from app.cli import parse_args
from app.plugins.installer import install_extension, main, requirements_met, run_installers

INSTALL_PY = '''import launch
from modules import shared
assert launch.is_installed("pip")
open("installed.txt", "w").write("pip ok, skip_install=%s, opts=%s" % (launch.args.skip_install, "samples_format" in shared.opts))
'''


def make_data(tmp_path: Path) -> Path:
    ext = tmp_path / "extensions"
    good = ext / "good"
    good.mkdir(parents=True)
    (good / "install.py").write_text(INSTALL_PY)
    (good / "requirements.txt").write_text("# comment\npip>=1.0\npillow\n")
    bad = ext / "bad"
    bad.mkdir()
    (bad / "install.py").write_text("import sys\nprint('about to fail')\nsys.exit(3)\n")
    off = ext / "off"
    off.mkdir()
    (off / "install.py").write_text("open('ran.txt', 'w').write('should not run')\n")
    (ext / "plain").mkdir()  # nothing to install: no line
    (tmp_path / "config.json").write_text(json.dumps({"disabled_extensions": ["off"]}))
    return tmp_path


def test_installers_run_per_enabled_extension_with_a_log_line(tmp_path, caplog):
    data = make_data(tmp_path)
    with caplog.at_level(logging.INFO, logger="atelier.extensions"):
        results = run_installers(parse_args(["--data-dir", str(data)], environ={}))
    by_name = {r.name: r for r in results}
    assert sorted(by_name) == ["bad", "good"]  # "off" is disabled, "plain" has nothing to install
    assert by_name["good"].ok and by_name["good"].message.startswith("requirements.txt already met, install.py ran")
    assert (data / "extensions" / "good" / "installed.txt").read_text() == "pip ok, skip_install=False, opts=True"
    assert not by_name["bad"].ok and "install.py failed (exit code 3)" in by_name["bad"].message
    assert "about to fail" in by_name["bad"].message
    assert not (data / "extensions" / "off" / "ran.txt").exists()
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("extension good: requirements.txt already met, install.py ran") for line in lines)
    assert any(line.startswith("extension bad: install FAILED: install.py failed") for line in lines)


def test_skip_install_runs_nothing(tmp_path):
    data = make_data(tmp_path)
    assert main(["--data-dir", str(data), "--skip-install"]) == 0
    assert not (data / "extensions" / "good" / "installed.txt").exists()


def test_unmet_requirements_go_to_pip_and_a_failure_is_reported(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("pip\n")
    assert requirements_met(req)
    req.write_text("torch<0.1\n")  # would downgrade torch (the constraints file pins it: test_compat_modules)
    assert not requirements_met(req)
    ext = tmp_path / "downgrader"
    ext.mkdir()
    (ext / "requirements.txt").write_text("torch<0.1\n")
    result = install_extension(ext, env={"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})  # offline
    assert not result.ok and result.message.startswith("requirements.txt failed:")
    import torch

    assert torch.__version__ and not torch.__version__.startswith("0.0")  # untouched


def test_an_install_py_calling_pip_itself_gets_the_constraints(tmp_path):
    ext = tmp_path / "direct-pip"
    ext.mkdir()
    (ext / "install.py").write_text("import os\nopen('seen.txt', 'w').write(os.environ.get('PIP_CONSTRAINT', ''))\n")
    assert install_extension(ext).ok
    constraint = (ext / "seen.txt").read_text().split()[-1]
    assert "torch==" in Path(constraint).read_text() and "transformers==" in Path(constraint).read_text()


#: What pip prints when an extension asks for a version of a pinned package (sd-dynamic-prompts' install.py asks
#: for dynamicprompts[magicprompt], which needs transformers<5), as the installer's message keeps it.
PIP_REFUSAL = ("install.py failed (exit code 1): ERROR: Cannot install dynamicprompts[magicprompt]==0.31.0 because "
               "these package versions have conflicting dependencies. | The user requested (constraint) "
               "transformers==5.25.0 | dynamicprompts[magicprompt] 0.31.0 depends on transformers<5 and >=4.19.2; "
               "extra == \"magicprompt\" | ERROR: ResolutionImpossible: for help visit https://pip.pypa.io")


def test_a_pinned_package_refusal_is_named_in_plain_words():
    from app.plugins.install_report import failure_line, pinned_conflict

    assert pinned_conflict(PIP_REFUSAL) == "transformers"
    assert pinned_conflict("install.py failed (exit code 3): about to fail") is None
    assert pinned_conflict("ERROR: Could not find a version that satisfies the requirement nothere") is None
    line = failure_line({"ok": False, "message": PIP_REFUSAL, "when": "2026-12-04 19:00:00"})
    assert line.startswith("install at 2026-12-04 19:00:00 refused: it asks for a transformers version other than")
    assert "pip said: install.py failed (exit code 1)" in line


def test_the_installers_results_reach_the_extensions_tab(tmp_path):
    from app.plugins import load_extensions
    from app.plugins.compat import current as compat_current
    from app.plugins.install_report import load_results, save_results
    from app.settings import Settings
    from app.ui.extensions_report import extension_report_html

    data = make_data(tmp_path)
    run_installers(parse_args(["--data-dir", str(data)], environ={}))
    recorded = load_results(data / "log")
    assert recorded["good"]["ok"] and not recorded["bad"]["ok"] and "off" not in recorded
    # a later run that refuses (the pip text above) replaces that extension's entry only
    save_results(data / "log", [type("R", (), {"name": "good", "ok": False, "message": PIP_REFUSAL})()])
    assert set(load_results(data / "log")) == {"good", "bad"}
    previous = compat_current.current()
    try:
        runtime = SimpleNamespace(
            paths=SimpleNamespace(extensions_dir=data / "extensions", data_dir=data, log_dir=data / "log"),
            settings=Settings.load(data / "config.json"),
            args=SimpleNamespace(disable_all_extensions=False, disable_extra_extensions=False))
        registry = load_extensions(runtime, make_current=False)
    finally:
        compat_current.set_current(previous)
    errors = {e.name: e.errors for e in registry.extensions}
    assert any("refused: it asks for a transformers version" in e for e in errors["good"])
    assert any("FAILED" in e and "about to fail" in e for e in errors["bad"])
    assert errors["plain"] == [] and errors["off"] == []  # nothing recorded / disabled
    assert "refused: it asks for a transformers version" in extension_report_html(registry)
