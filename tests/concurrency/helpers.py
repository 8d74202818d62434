"""Run a function in many real threads that start together on a barrier."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connections


def run_concurrently(
    fn: Callable[..., Any], calls: Sequence[tuple], *, timeout: float = 180
) -> list[tuple[str, Any]]:
    """Call fn(*args) for each args in `calls`, each in its own thread, all released at once.

    Returns ("ok", result) or ("error", exception) per call, in call order. Each
    thread closes its own database connection.
    """
    barrier = threading.Barrier(len(calls))
    results: list[tuple[str, Any]] = [("error", RuntimeError("did not run"))] * len(calls)

    def worker(index: int, args: tuple) -> None:
        try:
            barrier.wait(timeout=60)
            results[index] = ("ok", fn(*args))
        except Exception as exc:  # collected and asserted on by the test
            results[index] = ("error", exc)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=worker, args=(i, args), daemon=True) for i, args in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a worker thread hung"
    return results


def errors(results: list[tuple[str, Any]]) -> list[Any]:
    return [value for kind, value in results if kind == "error"]


def race_width(wanted: int, *, reserve: int = 12) -> int:
    """How many concurrent connections a race may use on this server: `wanted`, or
    fewer on a server with fewer free connections (a stock PostgreSQL allows 100).

    The width is printed (pytest -s shows it), so a narrow run is visible. A race
    is never narrower than 8: below that the server is too busy to test on.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('max_connections')::int"
            " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
        )
        free = cursor.fetchone()[0]
    width = min(wanted, free - reserve)
    print(f"\n[race width {width} of {wanted} wanted; {free} connections free]")
    if width < 8:
        raise RuntimeError(f"only {free} free PostgreSQL connections: too few to race on")
    return width
