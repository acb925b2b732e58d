"""The dashboard's chart library step: current bundles are left alone, a missing npm is named plainly."""

from __future__ import annotations

from pathlib import Path

import pytest

from klinestream.dashboard import assets
from klinestream.dashboard.assets import BUNDLE, STAMP, DashboardAssetsError, assets_current, build_assets, lock_digest


def web_dir(tmp_path: Path) -> Path:
    web = tmp_path / "web"
    web.mkdir()
    (web / "package.json").write_text('{"dependencies": {"lightweight-charts": "5.2.1"}}')
    (web / "package-lock.json").write_text('{"lockfileVersion": 3}')
    return web


def test_the_project_pins_the_chart_library_in_its_lock() -> None:
    import json

    package = json.loads((assets.WEB_DIR / "package.json").read_text())
    lock = json.loads((assets.WEB_DIR / "package-lock.json").read_text())
    pinned = package["dependencies"][assets.CHART_LIBRARY]
    assert pinned[0].isdigit(), "an exact version, not a range"
    entry = lock["packages"][f"node_modules/{assets.CHART_LIBRARY}"]
    assert entry["version"] == pinned and entry["integrity"].startswith("sha512-")


def test_a_bundle_built_from_the_current_lock_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    web, vendor = web_dir(tmp_path), tmp_path / "vendor"
    vendor.mkdir()
    (vendor / BUNDLE).write_text("/* bundle */")
    assert not assets_current(web, vendor)
    (vendor / STAMP).write_text(lock_digest(web) + "\n")
    assert assets_current(web, vendor)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no npm: a current bundle needs none
    assert build_assets(web, vendor) is False
    (web / "package-lock.json").write_text('{"lockfileVersion": 3, "changed": true}')
    assert not assets_current(web, vendor)


def test_without_npm_the_error_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    web = web_dir(tmp_path)
    with pytest.raises(DashboardAssetsError, match=r"Node.js/npm are not installed.*apt-get install -y nodejs npm"):
        build_assets(web, tmp_path / "vendor")
    monkeypatch.setattr(assets, "VENDOR_DIR", tmp_path / "vendor")
    monkeypatch.setattr(assets, "WEB_DIR", web)
    assert assets.main([]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: the dashboard's chart library") and "make install" in error
