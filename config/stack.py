"""Run the whole service in one terminal: web, Celery worker and Celery beat.

    python -m config.stack [--host 127.0.0.1] [--port 8000] [--no-seed]

It migrates, loads the demo data, then starts the three processes and stops
them all when any one exits or on Ctrl-C. With DATABASE_URL and REDIS_URL
unset, they share the embedded defaults (SQLite, file-system broker, file
cache under VAR_DIR); with them set, the same command uses PostgreSQL and Redis.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def _manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--no-seed", action="store_true", help="skip the demo data")
    args = parser.parse_args(argv)

    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    env.setdefault("DEBUG", "1")  # a local run: serve static files, show errors
    env.setdefault("PYTHONUNBUFFERED", "1")
    embedded = not env.get("DATABASE_URL")
    print(
        "Using "
        + ("embedded defaults (SQLite + file broker + file cache)" if embedded else "DATABASE_URL")
        + (" and REDIS_URL" if env.get("REDIS_URL") else ""),
        flush=True,
    )

    _manage("migrate", "--noinput", env=env)
    if not args.no_seed:
        _manage("seed_demo", env=env)

    bindir = Path(sys.executable).parent
    celery = str(bindir / "celery") if (bindir / "celery").exists() else "celery"
    var_dir = Path(env.get("VAR_DIR", BASE_DIR / "var"))
    var_dir.mkdir(parents=True, exist_ok=True)
    commands = {
        "web": [
            sys.executable,
            "manage.py",
            "runserver",
            f"{args.host}:{args.port}",
            "--noreload",
        ],
        "worker": [celery, "-A", "config", "worker", "-l", "info", "--concurrency", "2"],
        "beat": [
            celery,
            "-A",
            "config",
            "beat",
            "-l",
            "info",
            "-s",
            str(var_dir / "celerybeat-schedule"),
            "--pidfile=",
        ],
    }
    processes = {
        name: subprocess.Popen(cmd, cwd=BASE_DIR, env=env) for name, cmd in commands.items()
    }
    print(f"Serving on http://{args.host}:{args.port}/  (Ctrl-C stops all)", flush=True)

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    try:
        while not stopping:
            for name, proc in processes.items():
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; stopping the rest.", flush=True)
                    exit_code = proc.returncode or 1
                    stopping = True
                    break
            time.sleep(0.5)
    finally:
        for proc in processes.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
