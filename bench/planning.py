"""What three hot statements cost PostgreSQL, before and after round nine. Run:
    sh .ci/dev python -m bench.planning

A prepared statement is planned for each call's parameters five times; then
PostgreSQL caches one generic plan, unless the custom plans look cheaper. The
line-up's statement used to switch its count off with a parameter, which made
every custom plan look cheaper, so it was planned again for every fan; so was the
admission check that runs after every freed slot (a payment's turn end), whose
concert was a parameter too (tests/queueing/test_line_up_plan.py). Now each is
planned once per connection (and concert). A third row is a hold's first read (the
date with the seat's live holder), whose cached plan read all the date's
reservations and every seat of that number: "before" is that statement as it was
(kept here, HOLDER_BY_DATE), "after" the selector as it is, which reads the seat and
then its reservations (tests/concerts/test_hold_plans.py), both on PostgreSQL's
default plan cache.

Side by side, one connection, alternating rounds of ROUNDS (1,000) calls, in a sale
well under way (50,000 tokens; 60 dates whose seats were each held four times):
line-ups, each a new fan, and after-commit admission checks, with
  - before: `plan_cache_mode = force_custom_plan`, a plan for every call, as before;
  - after: PostgreSQL's default, as in production;
then the hold's first read, as it was and as it is.
Each round reports the PostgreSQL backend's own CPU per call (read from /proc,
so the database must run on this machine) and the wall time per call seen by the
client, and the plans the backend made (pg_prepared_statements).
"""

from __future__ import annotations

import os
import statistics
import time

from bench.common import ROOT, bench_concert, recreate_database, save, seed_fans, setup_django

ROUNDS = 1000  # calls per round
PAIRS = 3
ADMITTED, WAITING = 20_000, 30_000
DATES, HISTORY = 60, 3  # the holds' dates of 50 seats; ended holds per seat, then a live one
# The hold's first read before round nine (concerts.selectors._schedule_get_with_holder).
HOLDER_BY_DATE = (
    "FROM concerts_reservation r JOIN concerts_seat s ON s.id = r.seat_id"
    " WHERE r.schedule_id = d.id AND s.number = %s"
    " AND (r.status = %s OR (r.status = %s AND r.expires_at > %s)) LIMIT 1"
)


def backend_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    recreate_database()
    setup_django()
    from django.db import connection
    from django.utils import timezone

    from concerts.selectors import _schedule_get_with_holder
    from queueing.selectors import waiting_room_with_active
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
        _, dates = bench_concert("holds", dates=DATES)
        cursor.execute(
            "INSERT INTO concerts_reservation (user_id, schedule_id, seat_id, status, price,"
            " created_at, expires_at, ended_at, end_reason)"
            " SELECT h, s.schedule_id, s.id, CASE WHEN h > %s THEN 'held' ELSE 'expired' END,"
            " s.price, now(), now() + interval '1 hour',"
            " CASE WHEN h > %s THEN NULL ELSE now() END,"
            " CASE WHEN h > %s THEN '' ELSE 'expired' END"
            " FROM concerts_seat s CROSS JOIN generate_series(1, %s) h ORDER BY h, s.id",
            [HISTORY, HISTORY, HISTORY, HISTORY + 1],
        )
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()

    fans = iter(range(ADMITTED + WAITING + 1, ADMITTED + WAITING + 1 + 2 * PAIRS * ROUNDS))
    date = dates[DATES // 2].pk
    select_date = (
        f"SELECT d.id, d.concert_id, c.id, c.title, (SELECT r.id {HOLDER_BY_DATE}),"
        f" (SELECT r.user_id {HOLDER_BY_DATE}) FROM concerts_schedule d"
        " JOIN concerts_concert c ON c.id = d.concert_id WHERE d.id = %s"
    )

    def holder_by_date() -> None:
        live = [7, "confirmed", "held", timezone.now()]
        with connection.cursor() as cursor:
            cursor.execute(select_date, [*live, *live, date])
            cursor.fetchone()

    def line_up() -> None:
        _insert_waiting(
            user_id=next(fans), concert_id=concert.id, now=timezone.now(), count_active=False
        )

    def check() -> None:
        waiting_room_with_active(concert_id=concert.id, now=timezone.now(), count_active=False)

    def holder_by_seat() -> None:
        _schedule_get_with_holder(schedule_id=date, seat_number=7, now=timezone.now())

    # Each row: its name, then "before" and "after" as (plan_cache_mode, a text that
    # finds the statement in pg_prepared_statements, one call).
    rows = [
        ("line-up", ("force_custom_plan", "INSERT INTO queueing_queuetoken", line_up),
         ("auto", "INSERT INTO queueing_queuetoken", line_up)),
        ("admission check after a freed slot", ("force_custom_plan", "anyone_waiting", check),
         ("auto", "anyone_waiting", check)),
        ("a hold's first read (the date, the seat's holder)",
         ("auto", "d.id, d.concert_id, c.id, c.title", holder_by_date),
         ("auto", 'd."id", d."concert_id"', holder_by_seat)),
    ]  # fmt: skip
    results: dict = {"rounds": ROUNDS, "pairs": PAIRS}
    for name, before, after in rows:
        results[name] = {"before": [], "after": []}
        for _ in range(PAIRS):
            for label, (mode, needle, call) in (("before", before), ("after", after)):
                results[name][label].append(measure(connection, pid, mode, needle, call))
    path = save("planning", results)
    print("\n| statement | PostgreSQL CPU per call (µs) | wall per call (µs) |")
    print("|---|---|---|")
    for name, _, _ in rows:
        for label in ("before", "after"):
            rounds = results[name][label]
            cpu = [r["postgres_us"] for r in rounds]
            wall = [r["wall_us"] for r in rounds]
            print(
                f"| {name}, {label} | {statistics.median(cpu)} (rounds: "
                f"{', '.join(map(str, cpu))}) | {statistics.median(wall)} (rounds: "
                f"{', '.join(map(str, wall))}) |"
            )
        last = results[name]["after"][-1]
        print(
            f"| {name}: plans on the connection | {last['generic_plans_so_far']} calls on "
            f"the cached plan, {last['custom_plans_so_far']} planned for the call | |"
        )
    print(f"\nraw results: {path.relative_to(ROOT)}")


def measure(connection, pid: int, mode: str, needle: str, call) -> dict:
    """ROUNDS calls under plan_cache_mode `mode`: the backend's CPU and the wall time
    per call, and the plans made so far for the statement containing `needle`."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET plan_cache_mode = {mode}")
    cpu, start = backend_cpu_s(pid), time.perf_counter()
    for _ in range(ROUNDS):
        call()
    wall, cpu = time.perf_counter() - start, backend_cpu_s(pid) - cpu
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE %s",
            [f"%{needle}%"],
        )
        generic, custom = cursor.fetchone()
    return {
        "postgres_us": round(cpu / ROUNDS * 1e6, 1),
        "wall_us": round(wall / ROUNDS * 1e6, 1),
        "generic_plans_so_far": generic,
        "custom_plans_so_far": custom,
    }


if __name__ == "__main__":
    main()
