"""The HTTP checks of ``make compose-test`` (.ci/compose-test), with the standard library only: the host that
runs the test needs no project virtualenv.

    wait-http URL [--contains TEXT]        wait until URL answers 200 (and its body holds TEXT)
    retrain AIRFLOW_URL PASSWORD CONF      trigger dqn_retrain through Airflow's REST API v2, wait for success
    champion MLFLOW_URL MODEL              print the version the `champion` alias points at ("" when none)
    dashboard URL PASSWORD TRADER SYMBOL   log in, print the dashboard API's latest decisions and summary (JSON)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DAG_ID = "dqn_retrain"


def request(method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 30) -> Any:
    """One JSON request; the decoded answer (None when empty). HTTPError for a non-2xx status."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), timeout=timeout) as answer:
        raw = answer.read()
    return json.loads(raw) if raw else None


def wait_http(url: str, contains: str | None, timeout: float) -> None:
    deadline, last = time.monotonic() + timeout, "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                text = answer.read().decode(errors="replace")
            if contains is None or contains in text:
                print(f"{url}: 200, {len(text)} bytes" + (f", holds {contains!r}" if contains else ""))
                return
            last = f"200 without {contains!r}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(3)
    sys.exit(f"error: {url} did not answer within {timeout:.0f} s ({last})")


class Airflow:
    """Airflow's REST API v2 as the admin user of the simple auth manager."""

    def __init__(self, base: str, password: str) -> None:
        self.base = base.rstrip("/")
        answer = request("POST", f"{self.base}/auth/token", {"username": "admin", "password": password})
        self.token = answer["access_token"]

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return request(method, f"{self.base}/api/v2{path}", body, self.token)

    def wait_for_dag(self, timeout: float) -> None:
        """Until the DAG processor has parsed the DAG file."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.call("GET", f"/dags/{DAG_ID}")
                return
            except urllib.error.HTTPError as exc:
                if exc.code != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(5)

    def task_states(self, run_id: str) -> str:
        quoted = urllib.parse.quote(run_id, safe="")
        instances = self.call("GET", f"/dags/{DAG_ID}/dagRuns/{quoted}/taskInstances")["task_instances"]
        return ", ".join(
            f"{t['task_id']}{'[' + str(t['map_index']) + ']' if t['map_index'] >= 0 else ''}={t['state']}"
            for t in sorted(instances, key=lambda t: (t["start_date"] or "", t["task_id"]))
        )


def retrain(base: str, password: str, conf: dict[str, Any], timeout: float) -> None:
    """Unpause dqn_retrain, trigger one run with ``conf`` and wait until it succeeds (exit 1 otherwise)."""
    airflow = Airflow(base, password)
    airflow.wait_for_dag(timeout=300)
    airflow.call("PATCH", f"/dags/{DAG_ID}", {"is_paused": False})
    run = airflow.call("POST", f"/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": conf})
    run_id = run["dag_run_id"]
    print(f"triggered {DAG_ID} run {run_id} through POST /api/v2/dags/{DAG_ID}/dagRuns, conf {json.dumps(conf)}")
    began, state, shown = time.monotonic(), run["state"], ""
    path = f"/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
    while state not in ("success", "failed") and time.monotonic() - began < timeout:
        time.sleep(10)
        state = airflow.call("GET", path)["state"]
        tasks = airflow.task_states(run_id)
        if tasks != shown:
            print(f"  +{time.monotonic() - began:4.0f} s {state}: {tasks}", flush=True)
            shown = tasks
    # the pause again, so that the weekly and asset schedules start nothing more in the test stack
    airflow.call("PATCH", f"/dags/{DAG_ID}", {"is_paused": True})
    if state != "success":
        sys.exit(f"error: {DAG_ID} run {run_id} is {state} after {time.monotonic() - began:.0f} s")
    print(f"{DAG_ID} run {run_id}: success in {time.monotonic() - began:.0f} s")


def champion(base: str, model: str) -> None:
    query = urllib.parse.urlencode({"name": model, "alias": "champion"})
    try:
        answer = request("GET", f"{base.rstrip('/')}/api/2.0/mlflow/registered-models/alias?{query}")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            print("")
            return
        raise
    print(answer["model_version"]["version"])


def dashboard(base: str, password: str, trader: str, symbol: str) -> None:
    """The dashboard's latest decisions and summary, read as a browser does: its reads beyond loopback need
    the login (checked: a read without it is refused), then the session cookie."""
    base = base.rstrip("/")
    who = urllib.parse.urlencode({"trader": trader, "symbol": symbol})
    try:
        request("GET", f"{base}/api/summary?{who}")
        sys.exit("error: the dashboard answered /api/summary without a login")
    except urllib.error.HTTPError as exc:
        if exc.code != 401:
            raise
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    login = urllib.request.Request(
        f"{base}/api/login", json.dumps({"password": password}).encode(), {"Content-Type": "application/json"}
    )
    opener.open(login, timeout=30).read()

    def read(path: str) -> Any:
        with opener.open(f"{base}{path}", timeout=30) as answer:
            return json.loads(answer.read())

    decisions = read(f"/api/decisions?{who}&limit=5")
    summary = read(f"/api/summary?{who}")
    print(json.dumps({"decisions": decisions, "summary": summary}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    http = commands.add_parser("wait-http")
    http.add_argument("url")
    http.add_argument("--contains")
    http.add_argument("--timeout", type=float, default=300)
    run = commands.add_parser("retrain")
    run.add_argument("url")
    run.add_argument("password")
    run.add_argument("conf", type=json.loads)
    run.add_argument("--timeout", type=float, default=2400)
    alias = commands.add_parser("champion")
    alias.add_argument("url")
    alias.add_argument("model")
    board = commands.add_parser("dashboard")
    board.add_argument("url")
    board.add_argument("password")
    board.add_argument("trader")
    board.add_argument("symbol")
    args = parser.parse_args()
    if args.command == "wait-http":
        wait_http(args.url, args.contains, args.timeout)
    elif args.command == "retrain":
        retrain(args.url, args.password, args.conf, args.timeout)
    elif args.command == "champion":
        champion(args.url, args.model)
    else:
        dashboard(args.url, args.password, args.trader, args.symbol)


if __name__ == "__main__":
    main()
