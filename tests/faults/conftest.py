"""Fixtures for the fault drills and the scale-out tests."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def in_a_process_without_redis(code: str) -> None:
    """Run `code` in `manage.py shell` in a process of its own, on this test's
    database, whose Redis is a closed port: what it sends to Redis after a commit
    cannot arrive, while this process's Redis still holds what is cached (a network
    fault between that process and Redis, not a restart)."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": "redis://127.0.0.1:1/0",  # nothing listens on port 1
    }
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True,
        capture_output=True, timeout=60,
    )  # fmt: skip


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_web_processes(count: int, **env_overrides: str) -> list[tuple[subprocess.Popen, str]]:
    """`count` gunicorn processes, each started on its own with its own connection pool,
    serving the test database (and whatever the overrides point at). Returns each
    process with its base URL once it answers /healthz."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "ALLOWED_HOSTS": "127.0.0.1",
        **env_overrides,
    }
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    servers = []
    for _ in range(count):
        port = free_port()
        proc = subprocess.Popen(
            [gunicorn, "config.wsgi:application", "-b", f"127.0.0.1:{port}", "-w", "2",
             "--threads", "4", "--log-level", "warning"],
            cwd=ROOT, env=env, start_new_session=True,
        )  # fmt: skip
        servers.append((proc, f"http://127.0.0.1:{port}"))
    for proc, url in servers:  # wait until each answers (an event with a deadline)
        for _ in range(200):
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1)
                break
            except OSError as exc:
                # A 503 from /healthz is an answer too (a dependency is down on purpose).
                if getattr(exc, "code", None) == 503:
                    break
                assert proc.poll() is None, "a web process died at start"
                time.sleep(0.1)
    return servers


def stop_web_processes(servers: list[tuple[subprocess.Popen, str]]) -> None:
    for proc, _ in servers:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


@pytest.fixture
def two_web_processes():
    servers = start_web_processes(2)
    yield [url for _, url in servers]
    stop_web_processes(servers)
