"""The deployment artefacts stay true: .env.example, docker-compose.yml, check --deploy."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_lists_every_variable_settings_read():
    read = set(re.findall(r'env\.\w+\(\s*"([A-Z_]+)"', (ROOT / "config/settings.py").read_text()))
    listed = set(re.findall(r"^#?\s*([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert read, "no env reads found"
    assert read - listed == set(), f"missing from .env.example: {sorted(read - listed)}"


def test_compose_runs_postgres_redis_web_worker_beat_from_one_image():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) >= {"postgres", "redis", "web", "worker", "beat"}
    for name in ("postgres", "redis", "web", "worker", "beat"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    app = [services[n] for n in ("web", "worker", "beat")]
    assert len({(s["build"], s["image"]) for s in app}) == 1, "web/worker/beat must share one image"
    web_command = (
        " ".join(services["web"]["command"])
        if isinstance(services["web"]["command"], list)
        else services["web"]["command"]
    )
    assert "granian --interface wsgi" in web_command and "runserver" not in web_command
    assert "worker" in services["worker"]["command"]
    assert "beat" in services["beat"]["command"]
    for s in app:
        env = s["environment"]
        assert env["DATABASE_URL"].startswith("postgres://")
        assert env["REDIS_URL"].startswith("redis://")
        assert s["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert s["depends_on"]["redis"]["condition"] == "service_healthy"
    assert (ROOT / "Dockerfile").exists()


def test_check_deploy_passes_with_production_settings():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "tickets.example.com",
    }
    for leaked in ("SECURE_SSL_REDIRECT", "DJANGO_ALLOW_ASYNC_UNSAFE"):
        env.pop(leaked, None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def _default(text: str, pattern: str) -> int:
    found = re.search(pattern, text)
    assert found, f"not found: {pattern}"
    return int(found.group(1))


def test_image_compose_and_bench_run_the_web_server_alike():
    """The web server's processes and threads come from granian's own environment
    variables, set once in the image and defaulted alike in docker-compose.yml, and the
    benchmarks measure that same shape (docs/performance.md, rounds sixteen and
    twenty-three). A --workers or --blocking-threads on a command line would override
    the variables and drift from what is measured; .ci/runtime-check shows granian
    honours them."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    web = compose["services"]["web"]
    bench = (ROOT / "bench/common.py").read_text()
    image = (
        _default(dockerfile, r"GRANIAN_WORKERS=(\d+)"),
        _default(dockerfile, r"GRANIAN_BLOCKING_THREADS=(\d+)"),
    )
    composed = (
        _default(web["environment"]["GRANIAN_WORKERS"], r"^\$\{GRANIAN_WORKERS:-(\d+)\}$"),
        _default(
            web["environment"]["GRANIAN_BLOCKING_THREADS"],
            r"^\$\{GRANIAN_BLOCKING_THREADS:-(\d+)\}$",
        ),
    )
    measured = (
        _default(bench, r'"BENCH_WORKERS", "(\d+)"'),
        _default(bench, r'"BENCH_THREADS", "(\d+)"'),
    )
    assert image == composed == measured == (4, 1)
    cmd = re.search(r"^CMD (.*)$", dockerfile, re.M).group(1)
    for command in (cmd, web["command"]):
        assert "granian" in command
        assert "--workers" not in command and "--blocking-threads" not in command
        # It logs every request: BENCH_ACCESS_LOG=1 measures that (round twenty-three).
        assert "--access-log" in command
    # Each web thread holds a PostgreSQL connection: a replica's share of a stock
    # max_connections (100), as docs/operations.md budgets it.
    workers, threads = image
    assert workers * threads <= 16
    operations = (ROOT / "docs/operations.md").read_text()
    assert f"({workers * threads} by default)" in operations
