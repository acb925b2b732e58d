"""Retake the docs' screenshots from the REAL UIs of the local stack: Airflow and MLflow, or the dashboard.

    .venv/bin/klinestream stack up mlflow airflow      # and one finished dqn_retrain run (see the doc)
    .venv/bin/python docs/screenshots.py [--run-id RUN_ID]

    make demo                                          # a real demo run; then, with its dashboard serving
    .venv/bin/klinestream dashboard &                  # (or `klinestream demo --keep-running`)
    .venv/bin/python docs/screenshots.py --dashboard http://127.0.0.1:8050/   # → docs/img/dashboard.png

Drives headless Chromium (Debian package ``chromium``) through the DevTools protocol
(``klinestream.dashboard.headless``): logs in to Airflow by setting the JWT cookie the simple auth manager
issues for the admin password that ``klinestream stack up`` generated, opens each page, clicks where a page
needs it (the Trigger form), waits for the UI to render and saves a PNG under docs/img/. The dashboard shot
waits for the page's candles and traders, points the mouse at the middle of the chart (so the tooltip shows)
and saves docs/img/dashboard.png, the README's: the newest demo trader unless the URL names one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
IMG = REPO / "docs" / "img"
WIDTH, HEIGHT = 1400, 900
DASHBOARD_HEIGHT = 1250
DAG_ID = "dqn_retrain"


@dataclass(frozen=True)
class Shot:
    file: str
    url: str
    wait: float = 6.0
    click: str | None = None  # text of a button to click before the screenshot
    script: str | None = None  # JavaScript run before the screenshot (close a side panel, scroll)


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


def shoot(browser: Any, shot: Shot, path: Path) -> None:
    browser.navigate(shot.url, shot.wait)
    if shot.click:
        if not browser.evaluate(_CLICK % json.dumps(shot.click)):
            raise RuntimeError(f"no button {shot.click!r} on {shot.url}")
        time.sleep(3)
    if shot.script:
        browser.evaluate(shot.script)
        time.sleep(2)
    browser.screenshot(path)
    print(f"{path.relative_to(REPO)}: {path.stat().st_size / 1024:.0f} KB  <- {shot.url}")


#: the mouse on the bar of a rejected order near the middle of the chart (else the middle bar): its tooltip shows
#: the reason beside the hour's kline, decision and account
_CHART_MIDDLE = """(() => { const c = window.klinestream.chart, data = c.series.candles.data();
  const middle = data[Math.floor(data.length * 0.6)].time;
  const box = document.getElementById('chart').getBoundingClientRect();
  const rejected = [...window.klinestream.state.rows.orders.values()].filter(o => o.status === 'rejected')
    .map(o => o.open_time / 1000).filter(t => data.some(d => d.time === t));
  const t = rejected.sort((a, b) => Math.abs(a - middle) - Math.abs(b - middle))[0] ?? middle;
  const bar = data.find(d => d.time === t);
  const x = c.chart.timeScale().timeToCoordinate(bar.time), y = c.series.candles.priceToCoordinate(bar.close);
  return [box.left + x, box.top + y];
})()"""


def dashboard_shot(url: str, path: Path) -> None:
    """The dashboard at ``url`` once its candles, tables and traders are drawn, with the tooltip showing."""
    from klinestream.dashboard.headless import Browser

    browser = Browser(WIDTH, DASHBOARD_HEIGHT)
    try:
        browser.navigate(url)
        browser.wait_for("window.klinestream && window.klinestream.chart.series.candles.data().length > 0", 90)
        browser.wait_for("document.querySelectorAll('#overview tbody tr').length > 0", 30)
        time.sleep(2)
        browser.move_mouse(*browser.evaluate(_CHART_MIDDLE))
        time.sleep(1)
        browser.screenshot(path)
        trader = browser.evaluate("window.klinestream.state.trader")
        print(f"{path.relative_to(REPO)}: {path.stat().st_size / 1024:.0f} KB  <- {url} (trader {trader})")
        if browser.errors:
            print(f"the page reported errors: {browser.errors}", file=sys.stderr)
    finally:
        browser.close()


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
    from klinestream.dashboard.headless import Browser
    from klinestream.stack.services import AirflowService
    from models.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-id", help="dqn_retrain run to show (default: the latest)")
    parser.add_argument("--dashboard", metavar="URL", help="only the dashboard serving at URL → docs/img/dashboard.png")
    args = parser.parse_args()
    IMG.mkdir(parents=True, exist_ok=True)
    if args.dashboard:
        dashboard_shot(args.dashboard, IMG / "dashboard.png")
        return
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
    browser = Browser(WIDTH, HEIGHT)
    try:
        browser.set_cookie(airflow, "_token", token)
        for shot in shots:
            shoot(browser, shot, IMG / shot.file)
    finally:
        browser.close()


if __name__ == "__main__":
    main()
