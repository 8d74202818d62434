"""Run a function in many real threads that start together on a barrier."""

from __future__ import annotations

import contextlib
import threading
import time
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


def first_call_waits_for(parties: int, *, timeout: float = 60) -> Callable[[], None]:
    """A call that holds each thread's first call until `parties` threads have made
    theirs, and lets a thread's later calls through: a barrier, not a sleep, so a
    control's race happens on any machine (every thread has read before any acts).
    A broken barrier (a party that never came) lets everyone on, and the control's
    assertion then says what happened."""
    barrier, waited = threading.Barrier(parties), threading.local()

    def wait() -> None:
        if getattr(waited, "once", False):
            return
        waited.once = True
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=timeout)

    return wait


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


def process_barrier(name: str, parties: int, *, timeout: int = 120) -> None:
    """Block until `parties` processes (or threads) have called this with `name`.

    Cross-process, through Redis: each arrival INCRs a counter; the last one pushes
    one "go" per party, and everyone waits on BLPOP (an event, not a clock) for it.
    Keys live under this run's cache prefix, so the suite's cleanup removes them.
    """
    import os

    import redis

    prefix = os.environ["CACHE_KEY_PREFIX"]
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    arrived, go = f"{prefix}:barrier:{name}:arrived", f"{prefix}:barrier:{name}:go"
    if client.incr(arrived) == parties:
        client.rpush(go, *["go"] * parties)
    client.expire(arrived, timeout)
    if client.blpop([go], timeout=timeout) is None:
        raise TimeoutError(f"barrier {name!r}: not all {parties} parties arrived")


def shared_sequence(name: str) -> int:
    """The next number of a counter shared by every process: the order of events."""
    import os

    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    return client.incr(f"{os.environ['CACHE_KEY_PREFIX']}:sequence:{name}")


def interleavings(sequence_owners: list[str]) -> int:
    """How often consecutive events (in the shared order) came from different owners."""
    return sum(1 for a, b in zip(sequence_owners, sequence_owners[1:], strict=False) if a != b)


class without_constraint:  # noqa: N801 - used as a context manager, reads as prose
    """Drop a unique constraint for the duration (a control), then empty the table and
    put it back. `drop` and `create` are the SQL that remove and recreate it."""

    def __init__(self, *, table: str, drop: str, create: str) -> None:
        self.table, self.drop, self.create = table, drop, create

    def __enter__(self):
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(self.drop)

    def __exit__(self, *exc) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {self.table}")
            cursor.execute(self.create)


def without_idempotency_constraint() -> without_constraint:
    return without_constraint(
        table="config_idempotencyrecord",
        drop="ALTER TABLE config_idempotencyrecord DROP CONSTRAINT "
        "idempotency_one_per_fan_scope_key",
        create="ALTER TABLE config_idempotencyrecord ADD CONSTRAINT "
        "idempotency_one_per_fan_scope_key UNIQUE (user_id, scope, key)",
    )


def pay_through_reservation_lock(monkeypatch, concert_services) -> None:
    """Make a payment lock its reservations one by one through
    `concert_services.reservation_lock`, looked up at each call (a control replaces
    it with an unlocked or stale read), instead of reservations_lock's one statement.
    Only with reservation_lock replaced: the real one calls reservations_lock."""

    def lock_each(*, user_id: int, reservation_ids: Sequence[int]) -> list:
        lock = concert_services.reservation_lock
        return [lock(user_id=user_id, reservation_id=rid) for rid in sorted(reservation_ids)]

    monkeypatch.setattr(concert_services, "reservations_lock", lock_each)


def wait_until_blocked_on_a_lock(deadline: float = 30) -> None:
    """Until another session waits for a lock (an event, with a deadline)."""
    from django.db import connection

    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            )
            if cursor.fetchone()[0]:
                return
        time.sleep(0.02)
    raise AssertionError("nobody waited for the lock")
