"""Instructions per request, counted by callgrind: a measure that does not move with
the machine. Run:
    sh .ci/dev python -m bench.instructions        (needs valgrind: apt-get install valgrind)

wrk's figures are rates, so they move with whatever else the machine does: on the
2-core machine this project is measured on, the same code's CPU time per request
moved by up to 40 % between runs, more than most single changes are worth. This
bench counts the instructions the web process itself runs per request, with
`valgrind --tool=callgrind`, which repeats to within a fraction of a percent. Each
path runs in a child process that calls the WSGI application (`config.wsgi`, the
fast lane included) in-process with a WSGI environ; the count per request is the
difference between a run of LONG requests and one of SHORT, divided by the
difference, so Django's start-up cancels out.

What it does not count: PostgreSQL's and Redis's own work, the kernel's socket
work, and the web server's (granian's) share. It measures the Python a change
saves or adds, not the rate a server reaches; wrk's benches stay the figures the
goals are set against.

Paths: the bare DRF endpoint (the baseline), a mirrored poll (a new token each), the
same with the fan's API token (as a client that signs every request sends it),
a first line-up (a new fan each, the API token not yet cached, a full room), an
admitted fan's seat map (full 200s, the caches warm, as a fan reloads it), the same
fan's bookable dates (as a fan watching for seats to come back reloads them), a hold
(a new admitted fan each, a free seat each), a payment (a new fan each paying
their own hold, nobody waiting) and a leave (a new waiting fan each leaving the
line, as a sold-out line empties). The signing pollers', holding, paying and leaving
fans' API tokens are cached first, as a fan's earlier requests leave them (but the
holders' with BENCH_HOLD_COLD=1), and again before every counted run
(cache_credentials).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time

from bench.common import ENV, ROOT, mirror_rebuild, recreate_database, save, setup_django

SHORT, LONG = 100, 600  # requests in the two counted runs of each path
WARM = 50  # requests before counting starts, in both runs
WAITING = 5_000  # tokens in line for the polls
FANS = 3_000  # fans with API tokens and no token yet, for the line-ups
MOVERS = 2 * WARM + SHORT + LONG  # fans who hold (and as many who pay): one request each
PATHS = ("bare", "poll", "poll_signed", "line_up", "seats", "dates", "hold", "pay", "leave")
LEAVERS = 2_500  # the line's tokens from this place on leave it (the polls take the first)
SIGNED = 1_000  # the signed polls take the line's tokens from this place on
FIRST_HOLDER = WAITING + FANS + 1  # the hold's fans, then the payment's
FIRST_PAYER = FIRST_HOLDER + MOVERS
# BENCH_PATHS=bare,pay counts only those (bare is always counted: the ratios need it).
# BENCH_PAY_KEYED=1: each payment carries an Idempotency-Key of its own, as a client
# that retries safely sends it (and as bench.peer_shape's payments do).
PAY_KEYED = os.environ.get("BENCH_PAY_KEYED") == "1"
# BENCH_HOLD_COLD=1: the holding fans' API tokens are not cached first, so each hold is
# its fan's first request (as in bench.peer_shape, pretix's shape).
HOLD_COLD = os.environ.get("BENCH_HOLD_COLD") == "1"
CHOSEN = tuple(
    p for p in PATHS if p == "bare" or p in os.environ.get("BENCH_PATHS", ",".join(PATHS))
)


def seed() -> None:
    from django.db import connection

    from bench.common import bench_concert, seed_fans

    recreate_database()
    setup_django()
    line, _ = bench_concert("line", max_active=0)
    full, _ = bench_concert("full", max_active=0)
    booking, _ = bench_concert("seats", dates=1)
    holding, _ = bench_concert("hold", dates=-(-MOVERS // 50))
    paying, _ = bench_concert("pay", dates=-(-MOVERS // 50))
    with connection.cursor() as cursor:
        seed_fans(cursor, WAITING + FANS + 2 * MOVERS)
        cursor.execute(
            """
            INSERT INTO queueing_queuetoken
                (key, concert_id, user_id, status, created_at, last_seen_at, end_reason)
            SELECT md5(random()::text) || md5(g::text), %s, g, 'waiting', now(), now(), ''
            FROM generate_series(1, %s) g ORDER BY g
            """,
            [line.id, WAITING],
        )
        cursor.execute(
            """
            INSERT INTO queueing_queuebucket (concert_id, number, stripe, waiting)
            SELECT concert_id, id / 1024, id % 4, count(*) FROM queueing_queuetoken
            GROUP BY 1, 2, 3
            """
        )
        cursor.execute(  # the last fan (no line-up takes it) has a turn for the seats
            """
            INSERT INTO queueing_queuetoken (key, concert_id, user_id, status, created_at,
                last_seen_at, admitted_at, active_until, end_reason)
            VALUES (md5(random()::text) || 'seats', %s, %s, 'active', now(), now(), now(),
                    now() + interval '1 day', '')
            """,
            [booking.id, WAITING + FANS],
        )
        for concert, first in ((holding, FIRST_HOLDER), (paying, FIRST_PAYER)):
            cursor.execute(  # an active turn each
                """
                INSERT INTO queueing_queuetoken (key, concert_id, user_id, status, created_at,
                    last_seen_at, admitted_at, active_until, end_reason)
                SELECT md5(random()::text) || md5(g::text), %s, g, 'active', now(), now(),
                       now(), now() + interval '1 day', ''
                FROM generate_series(%s::int, %s::int) g
                """,
                [concert.id, first, first + MOVERS - 1],
            )
        cursor.execute(  # the payers' wallets, and a hold each on the pay concert's seats
            """
            INSERT INTO wallet_wallet (user_id, balance, updated_at)
            SELECT g, 1000000, now() FROM generate_series(%s::int, %s::int) g
            """,
            [FIRST_PAYER, FIRST_PAYER + MOVERS - 1],
        )
        cursor.execute(
            """
            INSERT INTO wallet_ledgerentry (wallet_id, kind, amount, balance_after, created_at)
            SELECT user_id, 'charge', 1000000, 1000000, now() FROM wallet_wallet
            """
        )
        cursor.execute(
            """
            INSERT INTO concerts_reservation (user_id, schedule_id, seat_id, status, price,
                                              created_at, expires_at, end_reason)
            SELECT %s - 1 + row_number() OVER (ORDER BY s.id), s.schedule_id, s.id, 'held',
                   s.price, now(), now() + interval '1 day', ''
            FROM concerts_seat s JOIN concerts_schedule d ON d.id = s.schedule_id
            WHERE d.concert_id = %s ORDER BY s.id LIMIT %s
            """,
            [FIRST_PAYER, paying.id, MOVERS],
        )
        cursor.execute("VACUUM ANALYZE")
    mirror_rebuild()
    connection.close()


def cache_credentials() -> None:
    """Caches the API tokens of the fans whose requests find theirs cached (the signing
    pollers, the holders unless BENCH_HOLD_COLD, the payers and the leavers), as a
    fan's earlier requests leave them. Called before every counted run: a cached
    token lives config.auth.TTL (300 s), and under callgrind the paths before a late
    one take longer than that, so a payment counted after the holds found its fan's
    token gone and read it from PostgreSQL (3.83 million instructions against 3.22).
    Each is read and cached afresh (a hit would not renew its TTL)."""
    from django.db import connection

    from config.auth import credentials_uncached

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT key FROM authtoken_token WHERE user_id >= %s OR user_id BETWEEN %s AND %s"
            " OR user_id BETWEEN %s AND %s",
            [
                FIRST_PAYER if HOLD_COLD else FIRST_HOLDER,
                *(LEAVERS, LEAVERS + MOVERS),
                *(SIGNED, SIGNED + MOVERS),
            ],
        )
        keys = [row[0] for row in cursor.fetchall()]
    for key in keys:
        credentials_uncached(key)
    connection.close()


def child(path: str, count: int, offset: int) -> None:
    """Runs WARM + count requests of `path` in this process (under callgrind)."""
    setup_django()
    from django.db import connection

    from config.wsgi import application

    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM concerts_concert WHERE slug = 'line'")
        (line,) = cursor.fetchone()
        cursor.execute("SELECT id FROM concerts_concert WHERE slug = 'full'")
        (full,) = cursor.fetchone()
        cursor.execute(
            "SELECT key FROM queueing_queuetoken ORDER BY id OFFSET %s LIMIT %s",
            [offset, WARM + count],
        )
        polls = [row[0] for row in cursor.fetchall()]

        def in_line(start: int) -> list[tuple[str, str]]:
            """(queue token, API token) of the line's fans from place `start` on."""
            cursor.execute(
                "SELECT q.key, a.key FROM queueing_queuetoken q"
                " JOIN authtoken_token a ON a.user_id = q.user_id WHERE q.concert_id = %s"
                " ORDER BY q.id OFFSET %s LIMIT %s",
                [line, start + offset, WARM + count],
            )
            return cursor.fetchall()

        signed, leavers = in_line(SIGNED), in_line(LEAVERS)
        cursor.execute(
            "SELECT key FROM authtoken_token WHERE user_id > %s ORDER BY user_id"
            " OFFSET %s LIMIT %s",
            [WAITING, offset, WARM + count],
        )
        fans = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "SELECT s.id, c.id, a.key, q.key FROM concerts_schedule s"
            " JOIN concerts_concert c ON c.id = s.concert_id AND c.slug = 'seats'"
            " JOIN queueing_queuetoken q ON q.concert_id = c.id"
            " JOIN authtoken_token a ON a.user_id = q.user_id"
        )
        date, booking, auth, turn = cursor.fetchone()
        movers = {}
        for slug in ("hold", "pay"):  # fan n of the concert: seat n, and their hold if any
            cursor.execute(
                "SELECT s.schedule_id, s.number FROM concerts_seat s"
                " JOIN concerts_schedule d ON d.id = s.schedule_id"
                " JOIN concerts_concert c ON c.id = d.concert_id AND c.slug = %s ORDER BY s.id",
                [slug],
            )
            seats = cursor.fetchall()
            cursor.execute(
                "SELECT a.key, q.key, r.id FROM queueing_queuetoken q"
                " JOIN concerts_concert c ON c.id = q.concert_id AND c.slug = %s"
                " JOIN authtoken_token a ON a.user_id = q.user_id"
                " LEFT JOIN concerts_reservation r ON r.user_id = q.user_id ORDER BY q.user_id",
                [slug],
            )
            fans_here = list(zip(cursor.fetchall(), seats, strict=False))
            movers[slug] = [
                (auth, turn, date_, number, reservation)
                for (auth, turn, reservation), (date_, number) in fans_here
            ][offset : offset + WARM + count]
    connection.close()

    def environ(method: str, path_info: str, body: dict | None = None, **headers: str) -> dict:
        data = json.dumps(body).encode() if body else b""
        return {
            "REQUEST_METHOD": method, "PATH_INFO": path_info, "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1",
            "wsgi.url_scheme": "http", "bench.body": data, "CONTENT_LENGTH": str(len(data)),
            "CONTENT_TYPE": "application/json", "wsgi.errors": sys.stderr, **headers,
        }  # fmt: skip

    requests = {
        "bare": [environ("GET", "/bench/bare")] * (WARM + count),
        "poll": [environ("GET", "/api/v1/queue", HTTP_X_QUEUE_TOKEN=key) for key in polls],
        "poll_signed": [
            environ(
                "GET", "/api/v1/queue", HTTP_X_QUEUE_TOKEN=key, HTTP_AUTHORIZATION="Token " + auth
            )
            for key, auth in signed
        ],
        "line_up": [
            environ("POST", f"/api/v1/concerts/{full}/queue", HTTP_AUTHORIZATION="Token " + key)
            for key in fans
        ],
        "seats": [
            environ(
                "GET",
                f"/api/v1/schedules/{date}/seats",
                HTTP_AUTHORIZATION="Token " + auth,
                HTTP_X_QUEUE_TOKEN=turn,
            )
        ]
        * (WARM + count),  # fmt: skip
        "dates": [
            environ(
                "GET",
                f"/api/v1/concerts/{booking}/dates",
                HTTP_AUTHORIZATION="Token " + auth,
                HTTP_X_QUEUE_TOKEN=turn,
            )
        ]
        * (WARM + count),  # fmt: skip
        "hold": [
            environ(
                "POST",
                "/api/v1/reservations",
                {"schedule_id": date, "seat_number": number},
                HTTP_AUTHORIZATION="Token " + auth,
                HTTP_X_QUEUE_TOKEN=turn,
            )
            for auth, turn, date, number, _ in movers["hold"]
        ],
        "pay": [
            environ(
                "POST",
                "/api/v1/payments",
                {"reservation_id": reservation},
                HTTP_AUTHORIZATION="Token " + auth,
                HTTP_X_QUEUE_TOKEN=turn,
                **({"HTTP_IDEMPOTENCY_KEY": f"pay-{reservation}"} if PAY_KEYED else {}),
            )
            for auth, turn, _, _, reservation in movers["pay"]
        ],
        "leave": [
            environ(
                "DELETE",
                "/api/v1/queue",
                HTTP_AUTHORIZATION="Token " + auth,
                HTTP_X_QUEUE_TOKEN=turn,
            )
            for turn, auth in leavers
        ],
    }[path]
    expected = {"hold": "201", "pay": "201", "line_up": "201", "leave": "204"}.get(path, "200")
    statuses: dict[str, int] = {}
    seen: list[str] = []
    for env in requests:
        body = application(
            dict(env, **{"wsgi.input": io.BytesIO(env["bench.body"])}), seen_status(seen)
        )
        b"".join(body)
        body.close()
        statuses[seen[-1][:3]] = statuses.get(seen[-1][:3], 0) + 1
    if set(statuses) != {expected}:
        raise SystemExit(f"{path}: expected only {expected}, got {statuses}")


def seen_status(seen: list[str]):
    """A WSGI start_response that notes each status in `seen`."""

    def start_response(status: str, headers: list, exc_info=None) -> None:
        seen.append(status)

    return start_response


def counted(path: str, count: int, offset: int) -> int:
    """The instructions of a child running `count` requests of `path`, the fans' API
    tokens cached right before it (cache_credentials)."""
    cache_credentials()
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, "-m", "bench.instructions", "--child", path, str(count), str(offset)],
        cwd=ROOT, env={**ENV, **{k: v for k, v in os.environ.items() if k.startswith("BENCH")}},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"{path}: the counted run failed:\n{result.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    t0 = time.perf_counter()
    seed()
    results: dict = {"short": SHORT, "long": LONG}
    for path in CHOSEN:
        # Each run takes tokens and fans of its own (a token polled twice within its
        # pace is an early 429; a fan lines up once).
        short = counted(path, SHORT, 0)
        long = counted(path, LONG, WARM + SHORT)
        results[path] = round((long - short) / (LONG - SHORT))
        print(f"{path}: {results[path]:,} instructions per request", flush=True)
    save("instructions", results)
    bare = results["bare"]
    print("\n| request | instructions in the web process | × bare |")
    print("|---|---|---|")
    for path in CHOSEN:
        print(f"| {path} | {results[path]:,} | {results[path] / bare:.2f} |")
    print(f"\n({time.perf_counter() - t0:.0f} s; raw results: bench/results/instructions.json)")


if __name__ == "__main__":
    main()
