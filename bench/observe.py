"""What the rehearsal watches while it runs: the room, the database's time, and the CPU
of each part of the stack, sampled once a second from a thread of its own.

CPU comes from psutil (per process, user + system), grouped into the parts a
reader sizes separately: web (the server's process group), worker, beat,
PostgreSQL (every `postgres` process), Redis and the load client itself. A
process that exits between two samples loses at most its last second; the web
server and the database keep their processes for the whole run.

Database time is `pg_stat_database.active_time`: the milliseconds PostgreSQL spent
executing statements in the bench database (PostgreSQL 14 and later).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import psutil

ROOM_SQL = """
SELECT
  (SELECT count(*) FROM queueing_queuetoken WHERE concert_id = %(c)s AND status = 'waiting'),
  (SELECT count(*) FROM queueing_queuetoken WHERE concert_id = %(c)s AND status = 'active'
     AND active_until > now()),
  (SELECT count(*) FROM queueing_queuetoken WHERE concert_id = %(c)s
     AND admitted_at IS NOT NULL),
  (SELECT count(*) FROM concerts_reservation r JOIN concerts_schedule s ON s.id = r.schedule_id
     WHERE s.concert_id = %(c)s AND r.status = 'confirmed'),
  (SELECT count(*) FROM concerts_reservation r JOIN concerts_schedule s ON s.id = r.schedule_id
     WHERE s.concert_id = %(c)s AND r.status = 'held' AND r.expires_at > now()),
  (SELECT active_time FROM pg_stat_database WHERE datname = current_database())
"""

# What the database's sessions are doing right now: how many run, and how many wait,
# on what (Lock/transactionid, Lock/advisory, LWLock/..., Client/ClientRead is idle).
WAITS_SQL = """
SELECT coalesce(wait_event_type || '/' || wait_event, 'running'), count(*)
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active'
GROUP BY 1
"""


@dataclass
class Sample:
    t: float
    waiting: int
    active: int
    admitted: int
    sold: int
    held: int
    db_ms: float
    cpu: dict[str, float]  # cumulative CPU seconds per part since the sampler started
    db_sessions: dict[str, int]  # active sessions by what they wait on


@dataclass
class Sampler:
    """Samples once a second until stopped; `groups` maps a part's name to a function
    that lists its processes' pids."""

    concert_id: int
    groups: dict[str, callable]
    started: float
    interval: float = 1.0
    samples: list[Sample] = field(default_factory=list)
    _seen: dict[int, float] = field(default_factory=dict)
    _totals: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if hasattr(self, "_thread"):
            self._thread.join(timeout=10)

    def _cpu(self) -> dict[str, float]:
        for name, pids in self.groups.items():
            for pid in pids():
                try:
                    times = psutil.Process(pid).cpu_times()
                except psutil.Error:
                    continue
                used = times.user + times.system
                key = (name, pid)
                before = self._seen.get(key)
                # A process counts from its first sample: at most its first second of
                # CPU is missed if it started during the run.
                self._totals[name] = self._totals.get(name, 0.0) + (
                    used - before if before is not None else 0.0
                )
                self._seen[key] = used
        return dict(self._totals)

    def _run(self) -> None:
        from django.db import connection

        try:
            while not self._stop.is_set():
                with connection.cursor() as cursor:
                    cursor.execute(ROOM_SQL, {"c": self.concert_id})
                    row = cursor.fetchone()
                    cursor.execute(WAITS_SQL)
                    waits = dict(cursor.fetchall())
                self.samples.append(
                    Sample(
                        time.monotonic() - self.started,
                        *row[:5],
                        float(row[5]),
                        self._cpu(),
                        waits,
                    )
                )
                self._stop.wait(self.interval)
        finally:
            connection.close()


def group_pids(pgid: int):
    """Every live process in the process group `pgid` (a server and its workers)."""

    def pids() -> list[int]:
        found = []
        for proc in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(proc.pid) == pgid:
                    found.append(proc.pid)
            except OSError:
                continue
        return found

    return pids


def named_pids(name: str):
    def pids() -> list[int]:
        return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == name]

    return pids


def own_pid() -> list[int]:
    return [os.getpid()]


def summarize(samples: list[Sample], seconds: float) -> dict:
    """Average cores used per part over the run, and the database's busy time."""
    if len(samples) < 2:
        return {}
    first, last = samples[0], samples[-1]
    span = max(1e-9, last.t - first.t)
    return {
        "cpu_cores": {
            name: round((last.cpu.get(name, 0.0) - first.cpu.get(name, 0.0)) / span, 2)
            for name in last.cpu
        },
        "db_active_seconds": round((last.db_ms - first.db_ms) / 1000, 1),
        "sampled_seconds": round(span, 1),
    }
