"""Retake the screenshots of docs/mlflow_airflow.md from the REAL Airflow and MLflow UIs of the local stack.

    .venv/bin/klinestream stack up mlflow airflow      # and one finished dqn_retrain run (see the doc)
    .venv/bin/python docs/screenshots.py [--run-id RUN_ID]

Drives headless Chromium (Debian package ``chromium``) through the DevTools protocol: logs in to Airflow
by setting the JWT cookie the simple auth manager issues for the admin password that ``klinestream stack
up`` generated, opens each page, clicks where a page needs it (the Trigger form), waits for the UI to
render and saves a PNG under docs/img/.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from websockets.sync.client import connect

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
IMG = REPO / "docs" / "img"
WIDTH, HEIGHT = 1400, 900
DAG_ID = "dqn_retrain"


@dataclass(frozen=True)
class Shot:
    file: str
    url: str
    wait: float = 6.0
    click: str | None = None  # text of a button to click before the screenshot
    script: str | None = None  # JavaScript run before the screenshot (close a side panel, scroll)


class Browser:
    """One headless Chromium page driven over the DevTools websocket."""

    def __init__(self) -> None:
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        if binary is None:
            raise SystemExit("chromium not found: apt-get install -y chromium")
        self.profile = tempfile.mkdtemp(prefix="klinestream-chromium-")
        port = _free_port()
        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={self.profile}",
             f"--window-size={WIDTH},{HEIGHT}", f"--remote-debugging-port={port}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.socket = connect(_page_websocket(port), max_size=64 * 2**20).__enter__()
        self.next_id = 0
        self.call("Page.enable")
        self.call("Network.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def set_cookie(self, url: str, name: str, value: str) -> None:
        self.call("Network.setCookie", url=url, name=name, value=value, path="/", httpOnly=True)

    def shoot(self, shot: Shot, path: Path) -> None:
        self.call("Page.navigate", url=shot.url)
        time.sleep(shot.wait)
        if shot.click:
            clicked = self.call("Runtime.evaluate", expression=_CLICK % json.dumps(shot.click), returnByValue=True)
            if not clicked.get("result", {}).get("value"):
                raise RuntimeError(f"no button {shot.click!r} on {shot.url}")
            time.sleep(3)
        if shot.script:
            self.call("Runtime.evaluate", expression=shot.script)
            time.sleep(2)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        print(f"{path.relative_to(REPO)}: {path.stat().st_size / 1024:.0f} KB  <- {shot.url}")

    def close(self) -> None:
        self.socket.close()
        self.process.terminate()
        self.process.wait(timeout=20)
        shutil.rmtree(self.profile, ignore_errors=True)


_CLICK = """(() => { const text = %s;
  const el = [...document.querySelectorAll('button, [role=button], a')].find(b => b.innerText.trim() === text);
  if (el) { el.click(); return true; } return false; })()"""


#: MLflow 3.17 opens an "Assistant" side panel: close it so the page gets the width
_CLOSE_ASSISTANT = "document.querySelector('button[aria-label=\"Close\"]')?.click();"
_SCROLL_TO = """%s (() => { const text = %s;
  const el = [...document.querySelectorAll('h1, h2, h3, h4, span, div, button')].find(e => e.innerText === text);
  if (el) el.scrollIntoView({block: 'start'}); })()"""

#: the version page's tag table scrolls inside its own box: bring the gate's decision rows into view
_SCROLL_TAGS = """(() => {
  const box = [...document.querySelectorAll('*')].find(e => e.scrollHeight > e.clientHeight + 20 &&
    ['auto', 'scroll'].includes(getComputedStyle(e).overflowY) && e.innerText.includes('dag_run_id'));
  if (!box) return;
  const row = [...box.querySelectorAll('*')].find(e => e.innerText === 'gate.decided_at');
  box.scrollTop = row ? row.getBoundingClientRect().top - box.getBoundingClientRect().top + box.scrollTop : 500;
})()"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _page_websocket(port: int) -> str:
    for _ in range(100):
        try:
            pages = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
            for page in pages:
                if page.get("type") == "page":
                    return str(page["webSocketDebuggerUrl"])
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise SystemExit("chromium did not open its DevTools port")


def airflow_token(base: str, password_file: Path) -> str:
    password = json.loads(password_file.read_text())["admin"]
    response = requests.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=30)
    response.raise_for_status()
    return str(response.json()["access_token"])


def _latest_run(base: str, token: str) -> str:
    response = requests.get(f"{base}/api/v2/dags/{DAG_ID}/dagRuns", params={"order_by": "-run_after", "limit": 1},
                            headers={"Authorization": f"Bearer {token}"}, timeout=30)  # fmt: skip
    response.raise_for_status()
    runs = response.json()["dag_runs"]
    if not runs:
        raise SystemExit(f"no {DAG_ID} run yet: trigger one first (see docs/mlflow_airflow.md)")
    return str(runs[0]["dag_run_id"])


def mlflow_shots(uri: str, name: str) -> list[Shot]:
    api = f"{uri}/api/2.0/mlflow"
    experiment = requests.get(f"{api}/experiments/get-by-name", params={"experiment_name": "klinestream-training"},
                              timeout=30).json()["experiment"]["experiment_id"]  # fmt: skip
    model = requests.get(f"{api}/registered-models/get", params={"name": name}, timeout=30).json()["registered_model"]
    aliases = {a["alias"]: a["version"] for a in model.get("aliases", [])}
    versions = requests.get(f"{api}/model-versions/search", params={"filter": f"name='{name}'"}, timeout=30).json()
    latest = sorted(versions["model_versions"], key=lambda v: int(v["version"]))[-2:]
    runs = json.dumps([v["run_id"] for v in latest])
    champion = aliases.get("champion", latest[-1]["version"])
    dag_run = next((v["tags"] for v in latest if v.get("tags")), [])
    dag_run_id = {t["key"]: t["value"] for t in dag_run}.get("dag_run_id", "")
    runs_filter = quote(f"tags.dag_run_id = '{dag_run_id}'") if dag_run_id else ""
    compare = f'{uri}/#/compare-runs?runs={runs}&experiments=["{experiment}"]'
    return [
        Shot("mlflow_runs.png", f"{uri}/#/experiments/{experiment}/runs?searchFilter={runs_filter}", wait=8,
             script=_CLOSE_ASSISTANT),
        Shot("mlflow_compare.png", compare, wait=10, script=_SCROLL_TO % (_CLOSE_ASSISTANT, json.dumps("Metrics"))),
        Shot("mlflow_model.png", f"{uri}/#/models/{name}", wait=8, script=_CLOSE_ASSISTANT),
        Shot("mlflow_version.png", f"{uri}/#/models/{name}/versions/{champion}", wait=8,
             script=_CLOSE_ASSISTANT + _SCROLL_TAGS),
    ]  # fmt: skip


def main() -> None:
    from klinestream.stack.services import AirflowService
    from models.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-id", help="dqn_retrain run to show (default: the latest)")
    args = parser.parse_args()
    settings = load_settings()
    airflow = settings.airflow_api_url.rstrip("/")
    token = airflow_token(airflow, AirflowService(settings).password_file)
    run_id = args.run_id or _latest_run(airflow, token)
    shots = [
        Shot("airflow_dag.png", f"{airflow}/dags/{DAG_ID}", wait=8),
        Shot("airflow_trigger.png", f"{airflow}/dags/{DAG_ID}", wait=8, click="Trigger"),
        Shot("airflow_run.png", f"{airflow}/dags/{DAG_ID}/runs/{run_id}", wait=10),
        *mlflow_shots(settings.mlflow_tracking_uri.rstrip("/"), settings.mlflow_model_name),
    ]
    IMG.mkdir(parents=True, exist_ok=True)
    browser = Browser()
    try:
        browser.set_cookie(airflow, "_token", token)
        for shot in shots:
            browser.shoot(shot, IMG / shot.file)
    finally:
        browser.close()


if __name__ == "__main__":
    main()
