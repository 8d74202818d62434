"""Waiting-room benchmark (issue: waiting room). Run:  sh .ci/dev python -m bench.queue_bench

Side by side, one run, one server config:
  1. GET /bench/bare (no DB, AllowAny)          -> the reference requests/s (measured
     again right before the mirrored polls, which follow a long rebuild)
  2. GET /api/v1/queue (full polls, each token once, in a line of 1,000,000), in three
     pairs alternating with 1, each with tokens of its own (the median pair)
  3. POST /api/v1/concerts/{id}/queue (each request a new fan lining up), in three
     pairs alternating with 1, each with new fans of its own (the median pair); each
     round also runs the line-up's floor (/bench/line-up-floor: its one statement and
     nothing else, bench/baseline.py) with the same fans at a concert of its own
  4. poll p50 latency, sequential, with 1,000 vs 1,000,000 waiting
  5. one admission run with 1,000,000 waiting and 100 free slots
"""

from __future__ import annotations

import http.client
import os
import random
import statistics
import time

from bench.common import (
    DURATION,
    ROOT,
    Server,
    cpu_text,
    recreate_database,
    save,
    setup_django,
    wrk,
)

BIG = int(os.environ.get("BENCH_BIG_LINE", "1000000"))
SMALL = 1000
ISSUERS = 60_000
# BENCH_BUSY_ACTIVE=18000: the line-up's concert has that many turns taken (by fans
# earlier in line) and the room full, as in a big sale; by default its room is empty
# with capacity 0.
BUSY_ACTIVE = int(os.environ.get("BENCH_BUSY_ACTIVE", "0"))
LINE_UP_ROUNDS = 3  # alternating pairs of bare and line-ups, 20,000 new fans each
POLL_ROUNDS = 3  # alternating pairs of bare and polls, 60,000 tokens each
POLL_KEYS = 180_000  # of the 200,000 polled tokens; the rest for the PostgreSQL path


def seed(cursor, concert_id: int, first_user: int, count: int) -> None:
    cursor.execute(
        """
        INSERT INTO queueing_queuetoken
            (key, concert_id, user_id, status, created_at, last_seen_at, end_reason)
        SELECT md5(random()::text) || md5(g::text), %s, g, 'waiting', now(), now(), ''
        FROM generate_series(%s::bigint, %s::bigint) g ORDER BY g
        """,
        [concert_id, first_user, first_user + count - 1],
    )


def main() -> None:
    recreate_database()
    setup_django()
    from django.db import connection
    from django.utils import timezone

    from concerts.services import concert_create
    from queueing import services
    from queueing.models import QueueToken, WaitingRoom

    t0 = time.perf_counter()
    small = concert_create(title="Small line", slug="small", artist="a", venue="v")
    big = concert_create(title="Big line", slug="big", artist="a", venue="v")
    issue = concert_create(title="Issuing", slug="issue", artist="a", venue="v")
    floor = concert_create(title="Floor", slug="floor", artist="a", venue="v")
    for concert in (small, big, issue, floor):
        WaitingRoom.objects.filter(pk=concert.pk).update(max_active=0)
    users = SMALL + BIG + ISSUERS + BUSY_ACTIVE
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO auth_user (id, password, is_superuser, username, first_name, last_name,
                                   email, is_staff, is_active, date_joined)
            SELECT g, '!', false, 'bench' || g, '', '', '', false, true, now()
            FROM generate_series(1, %s) g
            """,
            [users],
        )
        cursor.execute("SELECT setval('auth_user_id_seq', %s)", [users])
        seed(cursor, small.id, 1, SMALL)
        seed(cursor, big.id, SMALL + 1, BIG)
        cursor.execute(
            """
            INSERT INTO authtoken_token (key, user_id, created)
            SELECT substr(md5(g::text) || md5(random()::text), 1, 40), g, now()
            FROM generate_series(%s::bigint, %s::bigint) g
            """,
            [SMALL + BIG + 1, SMALL + BIG + ISSUERS],  # the fans who line up
        )
        if BUSY_ACTIVE:
            cursor.execute(
                """
                INSERT INTO queueing_queuetoken (key, concert_id, user_id, status, created_at,
                    last_seen_at, admitted_at, active_until, end_reason)
                SELECT md5(random()::text) || md5(g::text), %s, g, 'active', now(), now(),
                       now(), now() + interval '1 day', ''
                FROM generate_series(%s::bigint, %s::bigint) g
                """,
                [issue.id, SMALL + BIG + ISSUERS + 1, users],
            )
            WaitingRoom.objects.filter(pk=issue.pk).update(max_active=BUSY_ACTIVE)
        cursor.execute(
            """
            INSERT INTO queueing_queuebucket (concert_id, number, stripe, waiting)
            SELECT concert_id, id / 1024, id % 4, count(*) FROM queueing_queuetoken
            WHERE status = 'waiting' GROUP BY 1, 2, 3
            """
        )
        cursor.execute("VACUUM ANALYZE")
    print(f"seeded {SMALL + BIG} waiting tokens in {time.perf_counter() - t0:.1f}s", flush=True)

    big_keys = list(QueueToken.objects.filter(concert=big).values_list("key", flat=True))
    small_keys = list(QueueToken.objects.filter(concert=small).values_list("key", flat=True))
    random.seed(7)
    random.shuffle(big_keys)
    # The last 1,000 for the latency probe, never polled before it (any BENCH_BIG_LINE).
    poll_keys, latency_keys = big_keys[:-1000][:200_000], big_keys[-1000:]
    # Nine tenths of the polled tokens for the mirror's rounds, the rest for the
    # PostgreSQL path (180,000 and 20,000 from a line of 201,000 or more; a shorter
    # line gives each part its share rather than none).
    poll_split = min(POLL_KEYS, len(poll_keys) * 9 // 10)
    with connection.cursor() as cursor:
        cursor.execute("SELECT key, user_id FROM authtoken_token ORDER BY user_id")
        issuers = cursor.fetchall()
        issuer_auth = ["Token " + key for key, _ in issuers]
    connection.close()

    from queueing import mirror

    results: dict = {"duration_s": DURATION, "line_big": BIG, "line_small": SMALL}
    with Server() as server:
        wrk(server.url, "/bench/bare", duration=3)  # warm up every worker
        results["bare"] = wrk(server.url, "/bench/bare", cpu=True)
        # Before: the mirror is not ready (as after a Redis restart), so polls read PostgreSQL.
        mirror.forget()
        results["poll_postgres"] = wrk(
            server.url, "/api/v1/queue", lines=poll_keys[poll_split:], header="X-Queue-Token"
        )
        # After: the beat job's rebuild fills the mirror from PostgreSQL (timed), and
        # polls are answered from Redis.
        start = time.perf_counter()
        results["mirror_rebuilt_entries"] = mirror.rebuild()
        results["mirror_rebuild_s"] = round(time.perf_counter() - start, 1)
        connection.close()
        # The baseline again, right before the polls it is compared with: after a
        # rebuild of a million entries the machine is not where it was at the start
        # (PostgreSQL's autovacuum of the seeded rows, Redis's memory).
        # The polls against bare in alternating pairs too, each with tokens of its own
        # (a token polled twice within its pace would be an early 429): the median
        # pair's ratio is the figure, and every pair is kept.
        polls, share = [], poll_split // POLL_ROUNDS
        for n in range(POLL_ROUNDS):
            bare_now = wrk(server.url, "/bench/bare")
            poll = wrk(
                server.url,
                "/api/v1/queue",
                lines=poll_keys[n * share : (n + 1) * share],
                header="X-Queue-Token",
            )
            polls.append((round(poll["rps"] / bare_now["rps"], 3), bare_now, poll))
        results["poll_rounds"] = [ratio for ratio, _, _ in polls]
        _, results["bare_adjacent"], results["poll"] = sorted(polls, key=lambda r: r[0])[
            len(polls) // 2
        ]
        # The line-up against bare in alternating pairs, each round with new fans of
        # its own: the median pair's ratio is the figure, and every pair is kept.
        rounds, share = [], len(issuer_auth) // LINE_UP_ROUNDS
        for n in range(LINE_UP_ROUNDS):
            bare_now = wrk(server.url, "/bench/bare", cpu=True)
            line_up = wrk(
                server.url,
                f"/api/v1/concerts/{issue.id}/queue",
                method="POST",
                lines=issuer_auth[n * share : (n + 1) * share],
                header="Authorization",
                cpu=True,
            )
            line_up_floor = wrk(
                server.url,
                f"/bench/line-up-floor/{floor.id}",
                method="POST",
                lines=issuer_auth[n * share : (n + 1) * share],
                header="Authorization",
                cpu=True,
            )
            rounds.append(
                (round(line_up["rps"] / bare_now["rps"], 3), bare_now, line_up, line_up_floor)
            )
        results["issue_rounds"] = [r[0] for r in rounds]
        results["floor_rounds"] = [round(r[3]["rps"] / r[1]["rps"], 3) for r in rounds]
        median = sorted(rounds, key=lambda r: r[0])[len(rounds) // 2]
        results["issue_vs_bare"], results["bare_for_issue"], results["issue"] = median[:3]
        results["issue_floor"] = median[3]
        results["poll_p50_ms"] = {
            "1k_waiting": sequential_p50(server.port, random.sample(small_keys, 1000)),
            "1M_waiting": sequential_p50(server.port, latency_keys),
        }

    WaitingRoom.objects.filter(pk=big.id).update(max_active=100)
    timings = []
    for _ in range(5):
        now = timezone.now()
        start = time.perf_counter()
        admitted = services.queue_admit_next(concert_id=big.id, now=now)
        timings.append((time.perf_counter() - start) * 1000)
        assert len(admitted) == 100, len(admitted)
        QueueToken.objects.filter(id__in=admitted).update(status="expired", ended_at=now)
    results["admission_ms"] = {
        "median": round(statistics.median(timings), 1),
        "max": round(max(timings), 1),
        "runs": [round(t, 1) for t in timings],
    }

    bare = results["bare"]["rps"]
    results["poll_vs_bare"] = round(results["poll"]["rps"] / bare, 3)
    results["poll_vs_adjacent_bare"] = round(
        results["poll"]["rps"] / results["bare_adjacent"]["rps"], 3
    )
    results["poll_postgres_vs_bare"] = round(results["poll_postgres"]["rps"] / bare, 3)
    p = results["poll_p50_ms"]
    results["p50_ratio_1M_vs_1k"] = round(p["1M_waiting"] / p["1k_waiting"], 3)
    path = save("queue", results)
    report(results)
    print(f"\nraw results: {path.relative_to(ROOT)}")


def sequential_p50(port: int, keys: list[str]) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    samples = []
    for key in keys:
        start = time.perf_counter()
        conn.request("GET", "/api/v1/queue", headers={"X-Queue-Token": key})
        response = conn.getresponse()
        response.read()
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status == 200, response.status
    conn.close()
    return round(statistics.median(samples), 3)


def report(r: dict) -> None:
    print("\n| measure | result | target |")
    print("|---|---|---|")
    print(f"| bare DRF endpoint | {r['bare']['rps']} req/s | reference |")
    q = r["poll_postgres"]
    print(
        f"| GET /api/v1/queue from PostgreSQL, mirror not ready (200s: {q['ok']}) | "
        f"{q['rps']} req/s = {r['poll_postgres_vs_bare']:.0%} of bare | before |"
    )
    print(
        f"| mirror rebuild, {r['line_big'] + r['line_small']:,} waiting | "
        f"{r['mirror_rebuild_s']} s ({r['mirror_rebuilt_entries']:,} entries) | beat job |"
    )
    print(
        f"| bare DRF endpoint again, right before the median pair's polls | "
        f"{r['bare_adjacent']['rps']} req/s | reference |"
    )
    print(
        f"| GET /api/v1/queue from the mirror (200s: {r['poll']['ok']}, 429s: {r['poll']['r429']}) "
        f"| {r['poll']['rps']} req/s = {r['poll_vs_adjacent_bare']:.0%} of the bare run beside "
        f"it (median of {len(r['poll_rounds'])} pairs: "
        f"{', '.join(f'{x:.0%}' for x in r['poll_rounds'])}); {r['poll_vs_bare']:.0%} of the "
        "first bare run | >= 70% |"
    )
    print(
        f"| POST /concerts/{{id}}/queue (2xx: {r['issue']['ok']}, other: {r['issue']['other']}) | "
        f"{r['issue']['rps']} req/s = {r['issue_vs_bare']:.0%} of the bare run beside it "
        f"(median of {len(r['issue_rounds'])} pairs: "
        f"{', '.join(f'{x:.0%}' for x in r['issue_rounds'])}) | >= 30% |"
    )
    f = r["issue_floor"]
    print(
        f"| the line-up's floor, its one statement alone (2xx: {f['ok']}, other: "
        f"{f['other']}) | {f['rps']} req/s = {f['rps'] / r['bare_for_issue']['rps']:.0%} of "
        f"the same bare run (every round: {', '.join(f'{x:.0%}' for x in r['floor_rounds'])}); "
        f"the line-up is {r['issue']['rps'] / f['rps']:.0%} of it | a ceiling for the line-up |"
    )
    print(
        f"| core-ms per request: bare {cpu_text(r['bare_for_issue'])}; "
        f"line-up {cpu_text(r['issue'])}; floor {cpu_text(f)} "
        "| where the time goes |"
    )
    p = r["poll_p50_ms"]
    print(
        f"| poll p50, 1,000 vs {r['line_big']:,} waiting | {p['1k_waiting']} ms vs "
        f"{p['1M_waiting']} ms = {r['p50_ratio_1M_vs_1k']}x | <= 1.5x |"
    )
    a = r["admission_ms"]
    print(
        f"| one admission run, {r['line_big']:,} waiting, 100 free | median {a['median']} ms, "
        f"max {a['max']} ms | <= 100 ms |"
    )


if __name__ == "__main__":
    main()
