"""The run command's embedded default really boots: no PostgreSQL, no Redis.

It starts `python -m config.stack` (what `make run` execs) with DATABASE_URL and
REDIS_URL unset, on an empty VAR_DIR: it must migrate, seed the demo, serve the
pages and the API, and keep a Celery worker and beat running beside the web.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def call(base: str, method: str, path: str, body=None, headers=None) -> dict:
    """One JSON API call; a 4xx or 5xx fails the test with the answer's body."""
    request = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from None


def test_run_command_boots_on_embedded_defaults(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", VAR_DIR=str(tmp_path / "var"))
    log = (tmp_path / "stack.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "config.stack", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, Path(log.name).read_text()[-3000:]
            try:
                status, body = fetch(base + "/")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(Path(log.name).read_text()[-3000:]) from None
                time.sleep(0.5)
        assert status == 200
        assert b"KSPO Dome" in body  # demo data was seeded

        status, body = fetch(base + "/api/v1/concerts")
        assert status == 200
        assert json.loads(body)["count"] >= 3
        assert fetch(base + "/api/docs/")[0] == 200
        assert fetch(base + "/admin/login/")[0] == 200
        assert (tmp_path / "var" / "db.sqlite3").exists()

        # Worker and beat are up beside the web, sharing the file broker: a job that
        # beat schedules is run by the worker against the embedded database.
        deadline = time.monotonic() + 60
        while True:
            output = Path(log.name).read_text()
            if "beat: Starting" in output and re.search(
                r"Task queueing\.admit_waiting\[[\w-]+\] succeeded", output
            ):
                break
            assert proc.poll() is None, output[-3000:]
            assert time.monotonic() < deadline, output[-3000:]
            time.sleep(0.5)
        assert proc.poll() is None

        # A fan's whole journey over the API, on SQLite: register, line up (the demo's
        # rooms have free capacity), see the dates and seats, hold, top up and pay.
        fan = call(base, "POST", "/api/v1/auth/register",
                   {"username": "embedded-fan", "password": "long-enough-pass-1"})  # fmt: skip
        auth = {"Authorization": f"Token {fan['token']}"}
        concert_id = json.loads(fetch(base + "/api/v1/concerts")[1])["results"][0]["concert_id"]
        turn = call(base, "POST", f"/api/v1/concerts/{concert_id}/queue", None, auth)
        assert turn["status"] == "active", turn
        gated = {**auth, "X-Queue-Token": turn["token"]}
        dates = call(base, "GET", f"/api/v1/concerts/{concert_id}/dates", None, gated)
        schedule_id = dates["dates"][0]["schedule_id"]
        seats = call(base, "GET", f"/api/v1/schedules/{schedule_id}/seats", None, gated)
        seat = seats["seats"][0]
        hold = call(base, "POST", "/api/v1/reservations",
                    {"schedule_id": schedule_id, "seat_number": seat["number"]}, gated)  # fmt: skip
        call(base, "POST", "/api/v1/wallet/charges", {"amount": seat["price"]},
             {**auth, "Idempotency-Key": "embedded-1"})  # fmt: skip
        paid = call(base, "POST", "/api/v1/payments", {"reservation_id": hold["reservation_id"]},
                    {**gated, "Idempotency-Key": "embedded-2"})  # fmt: skip
        assert paid["status"] == "paid", paid
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
