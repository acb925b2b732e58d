"""The dashboard's chart library: installed from the npm registry at install time, served locally.

``klinestream/dashboard/web/package.json`` pins TradingView's ``lightweight-charts`` and its lock file pins
every package with an integrity hash. :func:`build_assets` runs ``npm ci`` (the lock, exactly; no install
scripts) in a temporary folder and copies the library's standalone production bundle into
``static/vendor/``, where the page loads it from the dashboard itself: no CDN, no network in the browser.
A stamp beside the bundle holds the lock's hash, so a second build does nothing until the lock changes.

``make install`` runs ``python -m klinestream.dashboard.assets``; the dashboard's start calls
:func:`ensure_assets`, which builds the bundle when it is missing and says plainly what to install when
Node.js / npm are not there. The bundle is a build output (ignored by git).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import typer

from models.errors import KlinestreamError

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
VENDOR_DIR = Path(__file__).resolve().parent / "static" / "vendor"
CHART_LIBRARY = "lightweight-charts"
BUNDLE = f"{CHART_LIBRARY}.standalone.production.js"
STAMP = ".klinestream-stamp"
NPM_TIMEOUT_S = 600


class DashboardAssetsError(KlinestreamError):
    """The chart library could not be installed (no npm, registry unreachable, lock mismatch)."""


def lock_digest(web_dir: Path) -> str:
    """Hash of what decides the bundle: package.json and package-lock.json."""
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((web_dir / name).read_bytes())
    return digest.hexdigest()


def assets_current(web_dir: Path, vendor_dir: Path) -> bool:
    """Whether the bundle is there and was built from the current lock."""
    stamp = vendor_dir / STAMP
    return (vendor_dir / BUNDLE).is_file() and stamp.is_file() and stamp.read_text().strip() == lock_digest(web_dir)


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise DashboardAssetsError(
            f"the dashboard's chart library ({CHART_LIBRARY}) is not built and Node.js/npm are not installed: "
            "install them (Debian: apt-get install -y nodejs npm; Node.js 18 or newer), then run `make install`"
        )
    return npm


def build_assets(web_dir: Path | None = None, vendor_dir: Path | None = None, force: bool = False) -> bool:
    """Install the locked chart library with ``npm ci`` and copy its bundle to ``vendor_dir`` (default: the
    package's ``web/`` and ``static/vendor/``).

    Returns False when the bundle was already current (nothing done), True when it was built."""
    web_dir, vendor_dir = web_dir or WEB_DIR, vendor_dir or VENDOR_DIR
    if not force and assets_current(web_dir, vendor_dir):
        return False
    npm = _npm()
    with tempfile.TemporaryDirectory(prefix="klinestream-npm-") as work:
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(web_dir / name, Path(work) / name)
        command = [npm, "ci", "--ignore-scripts", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"]
        log.info("installing %s with npm ci (package-lock.json of %s)", CHART_LIBRARY, web_dir)
        try:
            done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise DashboardAssetsError(
                f"npm ci did not finish within {NPM_TIMEOUT_S} s (is the registry reachable?)"
            ) from None
        if done.returncode != 0:
            tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise DashboardAssetsError(f"npm ci failed for {CHART_LIBRARY} (exit {done.returncode}): {tail}")
        built = Path(work) / "node_modules" / CHART_LIBRARY / "dist" / BUNDLE
        if not built.is_file():
            raise DashboardAssetsError(f"npm installed {CHART_LIBRARY} but it has no dist/{BUNDLE}")
        vendor_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, vendor_dir / BUNDLE)
    (vendor_dir / STAMP).write_text(lock_digest(web_dir) + "\n")
    log.info("dashboard chart library installed: %s", vendor_dir / BUNDLE)
    return True


def ensure_assets() -> None:
    """Build the bundle if it is missing or stale (the dashboard's start); raise a clear error if it cannot."""
    build_assets()


def main(argv: list[str] | None = None) -> int:
    """``python -m klinestream.dashboard.assets [--force]`` (what ``make install`` runs)."""
    parser = argparse.ArgumentParser(description="Install the dashboard's chart library from the npm registry.")
    parser.add_argument("--force", action="store_true", help="Run npm ci even when the bundle is current.")
    args = parser.parse_args(argv)
    try:
        built = build_assets(force=args.force)
    except DashboardAssetsError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 1
    typer.echo(f"dashboard: {CHART_LIBRARY} {'installed into' if built else 'up to date in'} {VENDOR_DIR / BUNDLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
