"""Shared benchmark plumbing: a bench database, a gunicorn server, wrk runs.

Everything runs on this machine's loopback: PostgreSQL and Redis at 127.0.0.1,
gunicorn on a local port, wrk as the load generator. Figures are relative
(side by side in one run); absolute numbers depend on the 2-core machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = os.environ.get("BENCH_DB", "concert_bench")
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
# The web server's processes, as the image runs it (Dockerfile: GRANIAN_WORKERS).
WORKERS = int(os.environ.get("BENCH_WORKERS", "4"))
DURATION = int(os.environ.get("BENCH_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))

ENV = {
    **os.environ,
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "DATABASE_URL": f"{PG}/{BENCH_DB}",
    "REDIS_URL": REDIS_URL,
    "CACHE_KEY_PREFIX": "bench",
    "DEBUG": "0",
    "SECRET_KEY": "bench-only-secret-key-" + "x" * 40,
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "SECURE_SSL_REDIRECT": "0",
    "BENCH_ENDPOINTS": "1",
    "LOG_LEVEL": "WARNING",
    "CONN_MAX_AGE": "600",
}


def setup_django() -> None:
    os.environ.update(ENV)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def recreate_database() -> None:
    admin = f"{PG}/postgres"
    subprocess.run(
        ["psql", admin, "-qc", f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)"], check=True
    )
    subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {BENCH_DB}"], check=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=ENV, check=True)
    subprocess.run(["redis-cli", "-u", REDIS_URL, "FLUSHDB"], check=True, capture_output=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SERVER = os.environ.get("BENCH_SERVER", "granian")  # granian | sync | gthread
THREADS = int(os.environ.get("BENCH_THREADS", "1"))  # the image: GRANIAN_BLOCKING_THREADS
# BENCH_ACCESS_LOG=1: every server writes a line per request to a file, as the image's
# granian does (--access-log) and as pretix.sh's gunicorn does (--access-logfile).
ACCESS_LOG = os.environ.get("BENCH_ACCESS_LOG") == "1"


def server_command(port: int, workers: int, kind: str = SERVER) -> list[str]:
    """The command line of each web server the benchmarks compare (see docs/performance.md)."""
    bin_dir = Path(sys.executable).parent
    if kind == "granian":
        # WSGI on Rust worker threads; Django runs on the blocking threads, each with
        # its own database connection: workers x threads stays below max_connections.
        return [
            str(bin_dir / "granian"), "--interface", "wsgi", "config.wsgi:application",
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
            "--blocking-threads", str(THREADS), "--log-level", "warning", "--no-ws",
        ] + (["--access-log"] if ACCESS_LOG else [])  # fmt: skip
    command = [
        str(bin_dir / "gunicorn"), "config.wsgi:application", "-b", f"127.0.0.1:{port}",
        "-w", str(workers), "--log-level", "warning",
    ]  # fmt: skip
    if kind == "gthread":
        command += ["--threads", str(THREADS)]
    if ACCESS_LOG:
        command += ["--access-logfile", "-"]
    return command


def celery_job(*args: str, env: dict | None = None) -> subprocess.Popen:
    """A Celery process (`worker …`, `beat …`) with the bench settings; stop_job ends it."""
    celery = str(Path(sys.executable).parent / "celery")
    return subprocess.Popen(
        [celery, "-A", "config", *args, "--loglevel", "WARNING"],
        cwd=ROOT,
        env=env or ENV,
        start_new_session=True,
    )


def stop_job(job: subprocess.Popen) -> None:
    if job.poll() is None:
        os.killpg(job.pid, signal.SIGTERM)
        job.wait(timeout=20)


@contextlib.contextmanager
def celery_worker(*, enabled: bool = True) -> Iterator[None]:
    """One Celery worker process with the bench settings while the block runs."""
    job = celery_job("worker", "--concurrency", "1") if enabled else None
    try:
        yield
    finally:
        if job is not None:
            stop_job(job)


class Server:
    """The app served by one of the compared web servers, with the bench settings."""

    def __init__(self, workers: int = WORKERS, kind: str = SERVER) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.kind = kind
        # With BENCH_ACCESS_LOG=1 the server's output (its access log) goes to a file,
        # as a container's goes to its log driver; the file is removed on stop.
        self.log = tempfile.TemporaryFile() if ACCESS_LOG else None  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            server_command(self.port, workers, kind),
            cwd=ROOT,
            env=ENV,
            start_new_session=True,
            stdout=self.log,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + "/bench/bare", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{kind} did not start") from None
                time.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        if self.log is not None:
            self.log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


LUA = r"""
local lines = {}
local threads = {}
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  ok, r429, r409, other = 0, 0, 0, 0
  local file = os.getenv("WRK_LINES")
  if file and file ~= "" then
    for line in io.lines(file) do lines[#lines + 1] = line end
  end
  nthreads = tonumber(os.getenv("WRK_THREADS"))
  i = tid
end
function split(line)
  local out = {}
  for field in string.gmatch(line, "([^\t]*)\t?") do out[#out + 1] = field end
  return out
end
function request()
  local headers = {}
  local body = os.getenv("WRK_BODY")
  if #lines > 0 then
    local fields = split(lines[(i % #lines) + 1])
    i = i + nthreads
    local n = 0
    for name in string.gmatch(os.getenv("WRK_HEADER"), "[^,]+") do
      n = n + 1
      headers[name] = fields[n]
    end
    if os.getenv("WRK_BODY_FROM_LINE") then body = fields[n + 1] end
  end
  if os.getenv("WRK_JSON") then headers["Content-Type"] = "application/json" end
  return wrk.format(os.getenv("WRK_METHOD"), os.getenv("WRK_PATH"), headers, body)
end
function response(status, headers, body)
  if status < 300 then ok = ok + 1
  elseif status == 429 then r429 = r429 + 1
  elseif status == 409 then r409 = r409 + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local t = {ok = 0, r429 = 0, r409 = 0, other = 0}
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + thread:get(k) end
  end
  io.write(string.format("COUNTS ok=%d r429=%d r409=%d other=%d\n", t.ok, t.r429, t.r409, t.other))
  io.write(string.format("P50US %d\n", latency:percentile(50)))
end
"""


def cpu_ticks() -> dict[str, int]:
    """CPU time (user + system, in clock ticks) of every live process, summed by its
    command name (granian, postgres, redis-server...): a run's share per process is
    the difference of two readings. Linux only; a process that ended in between (wrk
    itself) is not counted."""
    ticks: dict[str, int] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks[name] = ticks.get(name, 0) + int(fields[11]) + int(fields[12])
    return ticks


CPU_PROCESSES = ("granian", "gunicorn", "postgres", "redis-server")


def cpu_ms_per_request(before: dict[str, int], after: dict[str, int], requests: int) -> dict:
    """Core-milliseconds per request spent in the web server, PostgreSQL and Redis."""
    per_tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    return {
        name: round((after.get(name, 0) - before.get(name, 0)) * per_tick_ms / requests, 3)
        for name in CPU_PROCESSES
        if after.get(name, 0) > before.get(name, 0)
    }


def cpu_text(result: dict) -> str:
    """A wrk result's core-ms per request, per process, as a table cell."""
    cpu = result.get("cpu_ms_per_request", {})
    return ", ".join(f"{name} {ms}" for name, ms in cpu.items()) or "not measured"


def wrk(
    url: str,
    path: str,
    *,
    method: str = "GET",
    lines: list[str] | None = None,
    header: str = "",
    body: str = "",
    duration: int = DURATION,
    connections: int = CONNECTIONS,
    threads: int = 2,
    body_from_line: bool = False,
    cpu: bool = False,
) -> dict:
    """Run wrk. Each request takes the next line of `lines`: tab-separated values for
    the comma-separated header names in `header`, then (with body_from_line) the body.
    With `cpu`, also the core-milliseconds each server process spent per request."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bench.lua"
        script.write_text(LUA)
        lines_file = ""
        if lines:
            lines_file = str(Path(tmp) / "lines.txt")
            Path(lines_file).write_text("\n".join(lines) + "\n")
        env = {
            **os.environ,
            "WRK_LINES": lines_file,
            "WRK_HEADER": header,
            "WRK_METHOD": method,
            "WRK_PATH": path,
            "WRK_BODY": body,
            "WRK_THREADS": str(threads),
        }
        if body or body_from_line:
            env["WRK_JSON"] = "1"
        if body_from_line:
            env["WRK_BODY_FROM_LINE"] = "1"
        before = cpu_ticks() if cpu else {}
        out = subprocess.run(
            [
                "wrk",
                "-t",
                str(threads),
                "-c",
                str(connections),
                "-d",
                f"{duration}s",
                "-s",
                str(script),
                url,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        after = cpu_ticks() if cpu else {}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    counts = dict(
        (k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", re.search(r"COUNTS (.*)", out).group(1))
    )
    p50_ms = int(re.search(r"P50US (\d+)", out).group(1)) / 1000
    result = {"rps": round(rps, 1), "p50_ms": round(p50_ms, 2), **counts}
    if cpu:
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        result["cpu_ms_per_request"] = cpu_ms_per_request(before, after, requests)
    return result


def bench_concert(
    slug: str, *, dates: int = 0, max_active: int = 100_000, first_day: int = 30
) -> tuple:
    """A concert made through the services, its waiting room's capacity set, and
    `dates` bookable dates of 50 seats at 50,000 won, a day apart from `first_day`
    days ahead. Returns (concert, [dates])."""
    from datetime import timedelta

    from django.utils import timezone

    from concerts import services
    from queueing.models import WaitingRoom

    now = timezone.now()
    concert = services.concert_create(title=slug.title(), slug=slug, artist="a", venue="v")
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=max_active)
    made = [
        services.schedule_create(
            concert=concert,
            starts_at=now + timedelta(days=first_day + day),
            booking_opens_at=now - timedelta(days=1),
            booking_closes_at=now + timedelta(days=first_day - 1 + day),
            seat_price=50_000,
        )
        for day in range(dates)
    ]
    return concert, made


def mirror_rebuild() -> None:
    """Fill the waiting room's Redis mirror from PostgreSQL, as beat's repair job does
    on a fresh Redis: tokens seeded by bulk SQL bypass the services that mirror them."""
    from queueing import mirror

    mirror.rebuild()


def save(name: str, results: dict) -> Path:
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(results, indent=2))
    return path


def seed_fans(cursor, count: int, *, concert_id: int | None = None) -> None:
    """Fans 1..count with API tokens, and (with a concert) an active turn for each."""
    cursor.execute(
        """
        INSERT INTO auth_user (id, password, is_superuser, username, first_name, last_name,
                               email, is_staff, is_active, date_joined)
        SELECT g, '!', false, 'fan' || g, '', '', '', false, true, now()
        FROM generate_series(1, %s) g
        """,
        [count],
    )
    cursor.execute("SELECT setval('auth_user_id_seq', %s)", [count])
    cursor.execute(
        """
        INSERT INTO authtoken_token (key, user_id, created)
        SELECT substr(md5(g::text) || md5(random()::text), 1, 40), g, now()
        FROM generate_series(1, %s) g
        """,
        [count],
    )
    if concert_id is not None:
        cursor.execute(
            """
            INSERT INTO queueing_queuetoken (key, concert_id, user_id, status, created_at,
                last_seen_at, admitted_at, active_until, end_reason)
            SELECT md5(random()::text) || md5(g::text), %s, g, 'active', now(), now(), now(),
                   now() + interval '1 day', ''
            FROM generate_series(1, %s) g
            """,
            [concert_id, count],
        )
