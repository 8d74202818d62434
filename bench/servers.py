"""Which web server? Run:  sh .ci/dev python -m bench.servers

The same app, database and endpoints under each server, side by side in one run:
gunicorn sync workers, gunicorn gthread (threads per worker) and granian (WSGI,
Rust I/O, Django on a capped pool of blocking threads). Each at BENCH_WORKERS
processes (4) and BENCH_THREADS threads (1, the image's since round twenty-three;
the runs in docs/performance.md set BENCH_THREADS=4, which gthread needs to differ
from sync), so no server ever holds more than 16 database connections, well below
PostgreSQL's stock max_connections = 100.

Endpoints: the bare DRF view (no database), a poll (the Redis mirror), a date's
seats (the seat cache), the single-SELECT and contended-UPDATE baselines, and a
top-up spread over 2,000 wallets (a write: two statements and a durable commit).
"""

from __future__ import annotations

import random
import time

from bench.common import (
    DURATION,
    ROOT,
    THREADS,
    WORKERS,
    Server,
    bench_concert,
    recreate_database,
    save,
    seed_fans,
    setup_django,
    wrk,
)

FANS = 2000
WAITING = 200_000
KINDS = ("sync", "gthread", "granian")


def main() -> None:
    recreate_database()
    setup_django()

    from django.db import connection

    from bench.baseline import ensure_counter_table
    from queueing import mirror

    ensure_counter_table()
    concert, (date,) = bench_concert("bench", dates=1)
    line, _ = bench_concert("line", max_active=0)
    with connection.cursor() as cursor:
        seed_fans(cursor, FANS, concert_id=concert.id)
        cursor.execute(
            """
            INSERT INTO auth_user (id, password, is_superuser, username, first_name,
                                   last_name, email, is_staff, is_active, date_joined)
            SELECT g, '!', false, 'waiting' || g, '', '', '', false, true, now()
            FROM generate_series(%s::bigint, %s::bigint) g
            """,
            [FANS + 1, FANS + WAITING],
        )
        cursor.execute("SELECT setval('auth_user_id_seq', %s)", [FANS + WAITING])
        cursor.execute(
            """
            INSERT INTO queueing_queuetoken (key, concert_id, user_id, status, created_at,
                last_seen_at, end_reason)
            SELECT md5(random()::text) || md5(g::text), %s, g, 'waiting', now(), now(), ''
            FROM generate_series(%s::bigint, %s::bigint) g
            """,
            [line.id, FANS + 1, FANS + WAITING],
        )
        cursor.execute(
            "INSERT INTO queueing_queuebucket (concert_id, number, stripe, waiting)"
            " SELECT concert_id, id / 1024, id %% 4, count(*) FROM queueing_queuetoken"
            " WHERE status = 'waiting' GROUP BY 1, 2, 3",
            [],
        )
        cursor.execute(
            "INSERT INTO wallet_wallet (user_id, balance, updated_at)"
            " SELECT g, 0, now() FROM generate_series(1, %s) g",
            [FANS],
        )
        cursor.execute(
            "SELECT 'Token ' || a.key, q.key FROM authtoken_token a"
            " JOIN queueing_queuetoken q ON q.user_id = a.user_id AND q.concert_id = %s"
            " ORDER BY a.user_id",
            [concert.id],
        )
        fans = cursor.fetchall()
        cursor.execute("SELECT key FROM queueing_queuetoken WHERE concert_id = %s", [line.id])
        waiting = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT min(id), max(id) FROM concerts_seat")
        seat_ids = cursor.fetchone()
        cursor.execute("VACUUM ANALYZE")
    mirror.rebuild()  # what beat's repair job does on a fresh Redis
    connection.close()

    random.seed(5)
    random.shuffle(waiting)
    gated = [f"{auth}\t{queue}" for auth, queue in fans]
    auth = [a for a, _ in fans]
    results: dict = {"duration_s": DURATION, "workers": WORKERS, "threads": THREADS}
    share = len(waiting) // len(KINDS)
    for index, kind in enumerate(KINDS):
        with Server(kind=kind) as server:
            wrk(server.url, "/bench/bare", duration=3)  # warm every worker
            wrk(server.url, f"/api/v1/schedules/{date.id}/seats", lines=gated,
                header="Authorization,X-Queue-Token", duration=2)  # fmt: skip
            r = results[kind] = {}
            r["bare"] = wrk(server.url, "/bench/bare")
            r["poll"] = wrk(
                server.url,
                "/api/v1/queue",
                lines=waiting[index * share : (index + 1) * share],
                header="X-Queue-Token",
            )
            r["select"] = wrk(server.url, f"/bench/select/{random.randint(*seat_ids)}")
            r["seats"] = wrk(
                server.url,
                f"/api/v1/schedules/{date.id}/seats",
                lines=gated,
                header="Authorization,X-Queue-Token",
            )
            r["contended"] = wrk(server.url, "/bench/contended", method="POST")
            r["charge"] = wrk(
                server.url,
                "/api/v1/wallet/charges",
                method="POST",
                lines=auth,
                header="Authorization",
                body='{"amount": 1000}',
            )
        time.sleep(1)
    path = save("servers", results)
    report(results)
    print(f"\nraw results: {path.relative_to(ROOT)}")


def report(results: dict) -> None:
    rows = ("bare", "poll", "select", "seats", "contended", "charge")
    print("\n| endpoint | " + " | ".join(KINDS) + " |")
    print("|---|" + "---|" * len(KINDS))
    for row in rows:
        cells = []
        for kind in KINDS:
            got = results[kind][row]
            ratio = got["rps"] / results["sync"][row]["rps"]
            cells.append(f"{got['rps']:,.0f} req/s ({ratio:.2f}x)")
        print(f"| {row} | " + " | ".join(cells) + " |")
    print("\nRatios to their baselines under each server:")
    for kind in KINDS:
        r = results[kind]
        print(
            f"- {kind}: poll {r['poll']['rps'] / r['bare']['rps']:.0%} of bare, "
            f"seats {r['seats']['rps'] / r['select']['rps']:.0%} of one SELECT, "
            f"charge {r['charge']['rps'] / r['contended']['rps']:.0%} of the contended UPDATE"
        )
    for kind in KINDS:
        bad = {
            k: v["other"] for k, v in results[kind].items() if isinstance(v, dict) and v["other"]
        }
        if bad:
            print(f"- {kind}: non-2xx/409/429 answers: {bad}")


if __name__ == "__main__":
    main()
