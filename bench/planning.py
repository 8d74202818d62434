"""How much of the line-up's PostgreSQL time was planning. Run:
    sh .ci/dev python -m bench.planning

A prepared statement is planned for each call's parameters five times; then
PostgreSQL caches one generic plan, unless the custom plans look cheaper. The
line-up's statement used to switch its count off with a parameter, which made
every custom plan look cheaper, so it was planned again for every fan
(tests/queueing/test_line_up_plan.py). Now it is planned once per connection.

Side by side, one connection, alternating rounds of ROUNDS (1,000) line-ups, each a
new fan in a sale well under way (50,000 tokens):
  - before: `plan_cache_mode = force_custom_plan`, a plan for every call, as before;
  - after: PostgreSQL's default, as in production.
Each round reports the PostgreSQL backend's own CPU per line-up (read from /proc,
so the database must run on this machine) and the wall time per call seen by the
client, and the plans the backend made (pg_prepared_statements).
"""

from __future__ import annotations

import os
import statistics
import time

from bench.common import ROOT, bench_concert, recreate_database, save, seed_fans, setup_django

ROUNDS = 1000  # line-ups per round
PAIRS = 3
ADMITTED, WAITING = 20_000, 30_000


def backend_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    recreate_database()
    setup_django()
    from django.db import connection
    from django.utils import timezone

    from queueing.services import _insert_waiting

    concert, _ = bench_concert("planning", max_active=0)
    fans = ADMITTED + WAITING + 2 * PAIRS * ROUNDS
    with connection.cursor() as cursor:
        seed_fans(cursor, fans)
        cursor.execute(
            "INSERT INTO queueing_queuetoken (key, concert_id, user_id, status, created_at,"
            " last_seen_at, admitted_at, active_until, end_reason)"
            " SELECT md5(g::text) || md5(random()::text), %s, g,"
            " CASE WHEN g <= %s THEN 'active' ELSE 'waiting' END, now(), now(),"
            " CASE WHEN g <= %s THEN now() END,"
            " CASE WHEN g <= %s THEN now() + interval '1 hour' END, ''"
            " FROM generate_series(1, %s) g ORDER BY g",
            [concert.id, ADMITTED, ADMITTED, ADMITTED, ADMITTED + WAITING],
        )
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()

    next_fan = ADMITTED + WAITING + 1
    results: dict = {"rounds": ROUNDS, "pairs": PAIRS, "before": [], "after": []}
    for _ in range(PAIRS):
        for label, mode in (("before", "force_custom_plan"), ("after", "auto")):
            with connection.cursor() as cursor:
                cursor.execute(f"SET plan_cache_mode = {mode}")
            cpu, start = backend_cpu_s(pid), time.perf_counter()
            for fan in range(next_fan, next_fan + ROUNDS):
                _insert_waiting(
                    user_id=fan, concert_id=concert.id, now=timezone.now(), count_active=False
                )
            wall, cpu = time.perf_counter() - start, backend_cpu_s(pid) - cpu
            next_fan += ROUNDS
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                    " WHERE statement LIKE '%%INSERT INTO queueing_queuetoken%%'"
                )
                generic, custom = cursor.fetchone()
            results[label].append(
                {
                    "postgres_us": round(cpu / ROUNDS * 1e6, 1),
                    "wall_us": round(wall / ROUNDS * 1e6, 1),
                    "generic_plans_so_far": generic,
                    "custom_plans_so_far": custom,
                }
            )
    path = save("planning", results)
    print("\n| line-up statement | PostgreSQL CPU per call (µs) | wall per call (µs) |")
    print("|---|---|---|")
    for label in ("before", "after"):
        rounds = results[label]
        cpu = [r["postgres_us"] for r in rounds]
        wall = [r["wall_us"] for r in rounds]
        print(
            f"| {label} | {statistics.median(cpu)} (rounds: {', '.join(map(str, cpu))}) | "
            f"{statistics.median(wall)} (rounds: {', '.join(map(str, wall))}) |"
        )
    last = results["after"][-1]
    print(
        f"\nplans made on the connection: {last['generic_plans_so_far']} generic uses, "
        f"{last['custom_plans_so_far']} custom plans (the 'before' rounds forced one a call)"
    )
    print(f"raw results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
