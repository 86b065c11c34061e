"""Extension JavaScript/CSS in the page (A1111's order, inside the served HTML) and the `file=` route's rules."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from app.cli import parse_args
from app.plugins.compat import current as compat_current
from app.runtime import Runtime
from app.ui.page_assets import body_end_html, collect_assets, head_html
from app.web.page import inject

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "extensions"


def ext(root: Path, name: str, files: dict[str, str], enabled: bool = True) -> SimpleNamespace:
    for rel, text in files.items():
        (root / name / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / name / rel).write_text(text, encoding="utf-8")
    return SimpleNamespace(name=name, path=str(root / name), enabled=enabled)


@pytest.fixture(autouse=True)
def _restore_compat_current():
    """Building an app loads extensions into the A1111 layer's process-global registry: restore it."""
    previous = compat_current.set_current(None)
    yield
    compat_current.set_current(previous)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "extensions").mkdir(parents=True)
    return d


def test_scripts_and_styles_in_a1111_order(data: Path) -> None:
    root = data / "extensions"
    exts = [
        ext(root, "alpha", {"javascript/tagAutocomplete.js": "", "javascript/__globals.js": "", "javascript/_utils.js": "",
                            "javascript/ext_b.js": "", "javascript/Upper.js": "", "javascript/mod.mjs": "",
                            "javascript/notes.txt": "", "style.css": ""}),
        ext(root, "beta", {"javascript/0.js": "", "javascript/a.mjs": "", "style.css": ""}),
        ext(root, "gamma", {"javascript/g.js": "", "style.css": ""}, enabled=False),
    ]
    (data / "user.css").write_text("", encoding="utf-8")
    assets = collect_assets(exts, data)
    names = [p.relative_to(root).as_posix() for p in assets.scripts]
    # per extension in load order; names in code-point order ("U" < "_" < lower case), .js only
    assert names == ["alpha/javascript/Upper.js", "alpha/javascript/__globals.js", "alpha/javascript/_utils.js",
                     "alpha/javascript/ext_b.js", "alpha/javascript/tagAutocomplete.js", "beta/javascript/0.js"]
    assert [p.name for p in assets.module_scripts] == ["mod.mjs", "a.mjs"]  # every .mjs after every .js
    assert [p.relative_to(data).as_posix() for p in assets.styles] == [
        "extensions/alpha/style.css", "extensions/beta/style.css", "user.css"]  # the disabled gamma has none


def test_head_and_body_html(data: Path) -> None:
    exts = [ext(data / "extensions", "alpha", {"javascript/a.js": "", "javascript/m.mjs": "", "style.css": ""})]
    assets = collect_assets(exts, data)
    head = head_html(assets, {"opts": {"x": "</script><b>"}}, "window.atelier = 1; // </script>")
    boot_at, atelier_at = head.index("window.atelierBoot"), head.index("window.atelier = 1")
    script_at = head.index('<script type="text/javascript" src="file=extensions/alpha/javascript/a.js?')
    assert boot_at < atelier_at < script_at < head.index('<script type="module" src="file=extensions/alpha/javascript/m.mjs?')
    assert "</script><b>" not in head and head.count("</script>") == 4  # values and the inline script cannot close a tag
    assert body_end_html(assets).startswith('<link rel="stylesheet" property="stylesheet" href="file=extensions/alpha/style.css?')
    page = inject(b"<html><head><title>t</title></head><body><p>x</p></body></html>", "<H/>", "<B/>")
    assert page == b"<html><head><title>t</title><H/></head><body><p>x</p><B/></body></html>"


def test_file_rules(data: Path, tmp_path: Path) -> None:
    root = data / "extensions"
    exts = [ext(root, "alpha", {"javascript/a.js": "1", "tags/t.csv": "a,1", ".git/config": "secret",
                                "sub/.hidden/x.js": ""}),
            ext(root, "off", {"javascript/o.js": ""}, enabled=False)]
    (data / "tmp").mkdir()
    (data / "tmp" / "path.txt").write_text("p", encoding="utf-8")
    (data / "config.json").write_text("{}", encoding="utf-8")
    (data / "user.css").write_text("", encoding="utf-8")
    outside = tmp_path / "outside.js"
    outside.write_text("", encoding="utf-8")
    (root / "alpha" / "link.js").symlink_to(outside)
    assets = collect_assets(exts, data)
    ok = ["extensions/alpha/javascript/a.js", str(root / "alpha" / "tags" / "t.csv"), "tmp/path.txt", "user.css"]
    for raw in ok:
        assert assets.resolve(raw) is not None, raw
    refused = ["config.json", "extensions/alpha/.git/config", "extensions/alpha/sub/.hidden/x.js",
               "extensions/off/javascript/o.js", "extensions/alpha/../../config.json", str(outside),
               "extensions/alpha/link.js", "extensions/alpha/javascript", "extensions/alpha/missing.js", ""]
    for raw in refused:
        assert assets.resolve(raw) is None, raw


def served_runtime(tmp_path: Path, *argv: str) -> Runtime:
    data = tmp_path / "data"
    for name in ("page-js", "page-js-b"):
        shutil.copytree(FIXTURES / name, data / "extensions" / name)
    return Runtime(parse_args(["--data-dir", str(data), "--test-server", *argv], environ={}))  # build_app loads them


def test_served_page_carries_extension_files(tmp_path: Path) -> None:
    rt = served_runtime(tmp_path)
    try:
        client = TestClient(rt.build_app())
        page = client.get("/")
        assert page.status_code == 200 and int(page.headers["content-length"]) == len(page.content)
        head, body = page.text.split("</head>", 1)
        srcs = [part.split('"', 1)[0] for part in head.split('src="file=')[1:]]
        assert [s.split("?", 1)[0] for s in srcs] == [
            "extensions/page-js/javascript/_early.js", "extensions/page-js/javascript/a_first.js",
            "extensions/page-js/javascript/b_second.js", "extensions/page-js-b/javascript/0_next.js"]
        assert head.index("window.atelierBoot") < head.index('src="file=')  # the helpers exist before any extension
        boot = json.loads(head.split("window.atelierBoot = ", 1)[1].split(";</script>", 1)[0])
        assert boot["extension_scripts"] == 4 and boot["opts"]["samples_format"] == "png"
        assert 'href="file=extensions/page-js/style.css?' in body.rsplit("</body>", 1)[0]
        js = client.get("/file=" + srcs[0])
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert "window.pageJs" in js.text
        assert client.get("/file=extensions/page-js/tags/data.csv").text.startswith("tag,0,10")
        absolute = rt.paths.data_dir / "extensions" / "page-js" / "style.css"
        assert client.get(f"/file={absolute.as_posix()}").status_code == 200  # A1111's absolute form
        for bad in ("config.json", "extensions/page-js/../../config.json", "/etc/passwd"):
            r = client.get("/file=" + bad)
            assert r.status_code == 404, bad  # (the client folds "a/../b" before it is sent: gradio's 404 then)
        assert "not an extension file" in client.get("/file=config.json").json()["detail"]
        assert client.get("/gradio_api/info").status_code == 200  # the rest of the UI is untouched
    finally:
        rt.shutdown()


def test_file_route_needs_the_ui_login(tmp_path: Path) -> None:
    rt = served_runtime(tmp_path, "--gradio-auth", "u:secretpw")
    try:
        client = TestClient(rt.build_app())
        assert client.get("/file=extensions/page-js/style.css").status_code == 401
        login = client.post("/login", data={"username": "u", "password": "secretpw"})
        assert login.status_code == 200
        assert client.get("/file=extensions/page-js/style.css").status_code == 200
    finally:
        rt.shutdown()


def test_subpath_page_and_files(tmp_path: Path) -> None:
    rt = served_runtime(tmp_path, "--subpath", "sub")
    try:
        client = TestClient(rt.build_app())
        assert 'src="file=extensions/page-js/javascript/_early.js?' in client.get("/sub/").text
        assert client.get("/sub/file=extensions/page-js/javascript/_early.js").status_code == 200
    finally:
        rt.shutdown()
