"""Our side of the pretix comparison, in pretix's shape. Run:
    sh .ci/dev python -m bench.peer_shape

The same shape as ../shared/peers/pretix.sh measures pretix in: 3 worker processes,
PostgreSQL, Redis and a Celery worker's broker; wrk at 32 connections for the read;
300 tries from 32 threads (a new connection per request) at 100 seats for holds and
for paid orders; successes counted per second up to the last success.

- availability read: GET /api/v1/schedules/{id}/seats (pretix: quota availability);
- holds: 300 admitted fans try to hold a seat of 2 dates x 50 seats, so every seat is
  wanted by three fans: 100 succeed (pretix: cart positions against a quota of 100);
- paid orders: 100 fans with a hold each pay it; 300 tries (three per fan, each with
  its own Idempotency-Key): 100 succeed, the rest are 409 already paid (pretix:
  orders created with status paid, until the quota of 100 is sold).

The order the tries arrive in. In pretix's shape any try can take a unit of the
quota, so its 100 successes are the first 100 tries answered, and the 200 refusals
(sold out) come after them: "successes a second up to the last success" is the rate
of its first hundred. Each of our tries names its seat (or its own hold), so the
order is the bench's choice. Both are measured, in the same run:
- "winners first", pretix's arrival order (the headline figure): the first 100 tries
  are one per seat (holds) or one per fan (payments), shuffled, so every one can
  win; the 200 that cannot (a taken seat, a paid hold) come after them, shuffled;
- "interleaved" (the order this bench used until 2026-12-06, round eleven): all 300
  shuffled together, so a seat's first try wins wherever it falls, and the last
  success comes about 80 % of the way through the run, its refusals' time counted.

Run under gunicorn sync (pretix's server, the same shape) and under granian (ours).

Rounds (`BENCH_ROUNDS`, 3 by default). 100 successes over 32 threads take about a
third of a second, and on this 2-core machine one such run moves by ±20 % from the
next (the ceiling too). So the ceiling, the holds and the paid orders are measured
in several rounds, each from the same state (every seat free, every turn active,
no fan's API token cached: each try is that fan's first request), and the median
round is the figure; every round is reported.

The shape's own ceiling, measured in the same run: the same 300 tries from the
same client at the baseline /bench/contended (one row lock and one UPDATE, no
authentication), every try a success: the rate at which this machine and client
can answer tries at all. Winners first, an endpoint doing only that could count
successes at about that rate; interleaved, at about a third of it.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import statistics
import threading
import time
from collections import Counter

from bench.common import (
    ROOT,
    Server,
    bench_concert,
    mirror_rebuild,
    recreate_database,
    save,
    seed_fans,
    setup_django,
    wrk,
)

FANS = 300
CONC = 32
WORKERS = 3
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SERVERS = ("sync", "granian")


def funds_for(rounds: int, *, price: int) -> int:
    """What each fan's wallet is seeded with: a paying fan pays once per arrival order,
    round and server, and refunds nothing (the runs delete their payments, not the
    debits), so every payment of every round must find the money. (A fixed 1,000,000
    won ran out after 20 payments: with BENCH_ROUNDS=6, granian's fifth and sixth
    rounds of paid orders were all 402s, and their medians counted those rounds.)"""
    return price * len(SERVERS) * len(ARRIVALS) * rounds


def checked(run: dict, *, ok_status: int, successes: int) -> dict:
    """`run`, if it went as the shape says: `successes` answers of `ok_status` and every
    other try a 409 (a taken seat, a paid hold). Any other answer means the bench's
    own state is wrong (an empty wallet, an ended turn), not that the server is slow:
    the bench stops rather than put such a round in a median."""
    expected = {str(ok_status)} | ({"409"} if run["attempts"] > successes else set())
    if run["success"] != successes or set(run["codes"]) != expected:
        raise SystemExit(f"a round went wrong, not counted: {run}")
    return run


def post_load(port: int, requests: list[tuple[str, dict, dict]], ok_status: int = 201) -> dict:
    """Fire the requests from CONC threads, a new connection each; report like pretix.sh
    (a success is an `ok_status` answer)."""
    lock, left, records, start = threading.Lock(), list(requests), [], threading.Event()

    def worker() -> None:
        start.wait()
        while True:
            with lock:
                if not left:
                    return
                path, headers, body = left.pop(0)
            t0 = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                conn.request("POST", path, json.dumps(body), headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                conn.close()
            except Exception as exc:  # counted, never hidden
                status = "EXC:" + type(exc).__name__
            with lock:
                records.append((status, t0, time.perf_counter()))

    threads = [threading.Thread(target=worker) for _ in range(CONC)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    start.set()
    for thread in threads:
        thread.join()
    last_answer = max((r[2] for r in records), default=began) - began
    ok = sorted((r for r in records if r[0] == ok_status), key=lambda r: r[2])
    last = ok[-1][2] - began if ok else float("nan")
    return {
        "attempts": len(records),
        "success": len(ok),
        "codes": dict(Counter(str(r[0]) for r in records)),
        "success_per_s": round(len(ok) / last, 1) if ok else 0,
        "t_last_success_s": round(last, 3),
        "ok_p50_ms": round(statistics.median((r[2] - r[1]) * 1000 for r in ok), 1) if ok else None,
        "tries_per_s": round(len(records) / last_answer, 1) if records else 0,
    }


def main() -> None:
    recreate_database()
    setup_django()

    from django.db import connection

    from bench.baseline import ensure_counter_table

    ensure_counter_table()
    concert, dates = bench_concert("peer", dates=2)
    with connection.cursor() as cursor:
        seed_fans(cursor, FANS, concert_id=concert.id)
        dearest = max(d.seats.order_by("-price").values_list("price", flat=True)[0] for d in dates)
        funds = funds_for(ROUNDS, price=dearest)
        cursor.execute(
            "INSERT INTO wallet_wallet (user_id, balance, updated_at)"
            " SELECT g, %s, now() FROM generate_series(1, %s) g",
            [funds, FANS],
        )
        cursor.execute(
            "INSERT INTO wallet_ledgerentry (wallet_id, kind, amount, balance_after, created_at)"
            " SELECT g, 'charge', %s, %s, now() FROM generate_series(1, %s) g",
            [funds, funds, FANS],
        )
        cursor.execute(
            "SELECT a.user_id, 'Token ' || a.key, q.key FROM authtoken_token a"
            " JOIN queueing_queuetoken q ON q.user_id = a.user_id ORDER BY a.user_id"
        )
        fans = cursor.fetchall()
        cursor.execute("VACUUM ANALYZE")
    mirror_rebuild()
    connection.close()

    random.seed(3)
    seats = [(d.id, n) for d in dates for n in range(1, 51)]
    results: dict = {"workers": WORKERS, "conc": CONC, "fans": FANS}
    for kind in SERVERS:
        reset_sale(dates)
        with Server(workers=WORKERS, kind=kind) as server:
            first = {"Authorization": fans[0][1], "X-Queue-Token": fans[0][2]}
            wrk(server.url, "/bench/bare", duration=3)
            r = results[kind] = {}
            r["read"] = wrk(
                server.url,
                f"/api/v1/schedules/{dates[0].id}/seats",
                lines=[f"{first['Authorization']}\t{first['X-Queue-Token']}"],
                header="Authorization,X-Queue-Token",
                connections=32,
            )
            contended = [("/bench/contended", {"Content-Type": "application/json"}, {})]
            rounds: dict[str, list[dict]] = {}
            for round_ in range(ROUNDS):
                rounds.setdefault("ceiling", []).append(
                    checked(
                        post_load(server.port, contended * FANS, ok_status=200),
                        ok_status=200,
                        successes=FANS,
                    )  # fmt: skip
                )
                for arrival in ARRIVALS:
                    reset_sale(dates, fans)
                    order = arrival_order(seats, arrival)
                    holds = [
                        (
                            "/api/v1/reservations",
                            _headers(auth, queue),
                            {"schedule_id": s, "seat_number": n},
                        )
                        for (_, auth, queue), (_, (s, n)) in zip(fans, order, strict=True)
                    ]
                    rounds.setdefault(f"holds_{arrival}", []).append(
                        checked(post_load(server.port, holds), ok_status=201, successes=100)
                    )
                    reset_sale(dates, fans)
                    held = hold_one_each(fans[:100], seats)
                    pays = [
                        (
                            "/api/v1/payments",
                            {
                                **_headers(auth, queue),
                                "Idempotency-Key": f"{kind}-{round_}-{arrival}-{user_id}-{attempt}",
                            },
                            {"reservation_id": held[user_id]},
                        )
                        for attempt, (user_id, auth, queue) in arrival_order(fans[:100], arrival)
                    ]
                    rounds.setdefault(f"paid_orders_{arrival}", []).append(
                        checked(post_load(server.port, pays), ok_status=201, successes=100)
                    )
            for name, runs in rounds.items():
                rate = "tries_per_s" if name == "ceiling" else "success_per_s"
                r[name] = median_round(runs, rate)
    path = save("peer_shape", results)
    report(results)
    print(f"\nraw results: {path.relative_to(ROOT)}")


ARRIVALS = ("winners_first", "interleaved")


def arrival_order(items: list, arrival: str) -> list:
    """Three tries at each item (a seat, or a fan's hold), in the arrival order: each
    try as (its round, the item). Winners first: one try at every item, shuffled, then
    the other two rounds, shuffled; interleaved: all of them shuffled together."""
    first = [(0, item) for item in items]
    rest = [(attempt, item) for attempt in (1, 2) for item in items]
    if arrival == "winners_first":
        random.shuffle(first)
        random.shuffle(rest)
        return first + rest
    tries = first + rest
    random.shuffle(tries)
    return tries


def median_round(runs: list[dict], rate: str) -> dict:
    """The round whose `rate` is the median (the lower middle one of an even number),
    with every round's rate in `rounds`."""
    ranked = sorted(runs, key=lambda run: run[rate])
    return {**ranked[(len(ranked) - 1) // 2], "rounds": [run[rate] for run in runs]}


def _headers(auth: str, queue: str) -> dict:
    return {"Authorization": auth, "X-Queue-Token": queue, "Content-Type": "application/json"}


def reset_sale(dates, fans=()) -> None:
    """Every seat free again, every fan's turn active again, and none of `fans`' API
    tokens cached (between the runs: each try is its fan's first request)."""
    from datetime import timedelta

    from django.core.cache import caches
    from django.db import connection
    from django.utils import timezone

    from concerts import seatcache
    from config.auth import _cache_key as auth_cache_key
    from config.cache import redis_client
    from queueing import mirror

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM payments_payment")
        cursor.execute("DELETE FROM concerts_reservation")
        cursor.execute(
            "UPDATE queueing_queuetoken SET status = 'active', ended_at = NULL, end_reason = '',"
            " active_until = %s",
            [timezone.now() + timedelta(days=1)],
        )
    mirror.forget()
    client = redis_client()
    for name in client.scan_iter(match=f"{mirror._base()}:*", count=1000):
        client.delete(name)
    mirror.rebuild()
    seatcache.bump(d.id for d in dates)
    backend = caches["default"]
    for _, auth, _ in fans:
        client.delete(backend.make_key(auth_cache_key(auth[len("Token ") :])))
    connection.close()


def hold_one_each(fans, seats) -> dict[int, int]:
    """Fans hold one seat each, through the service; returns {user id: reservation id}."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from concerts import services

    held = {}
    users = get_user_model().objects.in_bulk([f[0] for f in fans])
    for (user_id, _, queue), (schedule_id, number) in zip(fans, seats, strict=False):
        reservation = services.seat_hold_create(
            user=users[user_id], schedule_id=schedule_id, seat_number=number,
            queue_key=queue, now=timezone.now(),
        )  # fmt: skip
        held[user_id] = reservation.pk
    connection.close()
    return held


def report(results: dict) -> None:
    print("\n| operation | gunicorn sync, 3 workers | granian, 3 workers |")
    print("|---|---|---|")
    s, g = results["sync"], results["granian"]
    print(
        f"| availability read (seat list) | {s['read']['rps']} req/s | {g['read']['rps']} req/s |"
    )
    print(
        f"| the shape's ceiling: {s['ceiling']['attempts']} tries of /bench/contended, all"
        f" answered | {s['ceiling']['tries_per_s']} /s (rounds {_listed(s['ceiling'])}) |"
        f" {g['ceiling']['tries_per_s']} /s (rounds {_listed(g['ceiling'])}) |"
    )
    for key, name in (("holds", "successful holds"), ("paid_orders", "paid orders")):
        for arrival in ARRIVALS:
            a, b = s[f"{key}_{arrival}"], g[f"{key}_{arrival}"]
            print(
                f"| {name}, {arrival.replace('_', ' ')} | {a['success_per_s']} /s"
                f" (rounds {_listed(a)}; median round: {a['success']} of {a['attempts']},"
                f" {a['codes']}, all tries {a['tries_per_s']} /s) | {b['success_per_s']} /s"
                f" (rounds {_listed(b)}; median round: {b['success']} of {b['attempts']},"
                f" {b['codes']}, all tries {b['tries_per_s']} /s) |"
            )


def _listed(result: dict) -> str:
    return ", ".join(str(rate) for rate in result["rounds"])


if __name__ == "__main__":
    main()
