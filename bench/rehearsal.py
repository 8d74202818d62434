"""A sale-day rehearsal: thousands of simulated fans against the real stack.

    sh .ci/dev python -m bench.rehearsal --fans 1000      (also 5000, 20000)

Starts the web server (BENCH_SERVER, BENCH_WORKERS), one Celery worker and one beat
on loopback, puts one concert on sale (2 dates x 50 seats), and lets the fans loose:
every fan lines up within the first 10 seconds, polls as told (honouring
Retry-After), and once admitted picks free seats and pays. 10 % let their hold run
out, 10 % cannot afford the seats, 5 % give up and leave the line, and a few bots
ignore Retry-After, sweep seats and retry payments. The run ends when both dates
are sold out and every fan has finished.

It prints, and writes to bench/results/rehearsal-<fans>.json, what the day must
show: all 100 seats sold, none twice, no server error, money that reconciles,
admission in line-up order, how good the first wait estimate was, what bots gained,
how long a place in line took in the rush, and requests per second with p50/p99
latency per endpoint.

Why asyncio and aiohttp rather than locust: a fan is a short I/O-bound script, so one
process can run 20,000 of them as coroutines next to the server on a 2-core
machine, with exact control of each poll's timing and direct access to what the
fairness figures need (line-up order, first estimates, admission times); locust's
user model and gevent workers would add processes that compete with the server and
hide those per-fan details. Why aiohttp rather than httpx: with a thousand
coroutines sharing one client, httpx's connection pool spent the rush queueing in
the client (requests took 720 ms at p50 while the server reported 13 ms; the
known encode/httpx#3215), so the load generator measured itself.

Every response carries the server's own time (`SERVER_TIMING=1`), so each endpoint
is reported twice: as the fan saw it, and as Django spent it.

With --pre-queue the concert is a scheduled sale (issue 16): its on-sale time is a
few seconds after the rush, so every fan lines up in the pre-queue, polls as told,
and is given a place drawn at random when beat starts the sale. The report then
adds how the drawn place relates to the arrival order (Spearman's rho, ~0 when fair),
and results and plots are written under "<fans>-pre-queue".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from bench.common import (
    ENV,
    ROOT,
    WORKERS,
    Server,
    celery_job,
    recreate_database,
    save,
    seed_fans,
    setup_django,
    stop_job,
)
from bench.observe import Sampler, group_pids, named_pids, own_pid, summarize

SEATS = 100
CLIENT_CONNECTIONS = int(os.environ.get("REHEARSAL_CONNECTIONS", "256"))
REQUEST_TIMEOUT = 120  # seconds a fan waits for any one answer
WALK_UPS = 20  # fans who register through the API before the sale (password hashing)
TOP_UP = 1_000_000  # won: what a fan who can pay tops up; a broke fan tops up the least
RUSH_SECONDS = 10.0


@dataclass
class Fan:
    index: int
    user_id: int
    auth: str
    kind: str  # buyer, expirer, broke, leaver, bot
    lined_up_at: float = 0.0
    pre_queued: bool = False  # lined up in a scheduled sale's pre-queue (--pre-queue)
    token: str = ""
    token_id: int = 0
    first_estimate: int | None = None
    admitted_at: float | None = None
    seats: list[int] = field(default_factory=list)
    outcome: str = "unfinished"
    early_polls: int = 0


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    server: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    timed_out: bool = False
    started: float = field(default_factory=time.monotonic)
    timeline: list[tuple[float, str, float]] = field(default_factory=list)
    client_failures: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    before: Stats | None = None  # the minutes before the sale (registration, top-ups)
    loop_lag: list[float] = field(default_factory=list)

    def record(self, name: str, status: int, seconds: float, server: float | None) -> None:
        self.latencies[name].append(seconds)
        if server is not None:
            self.server[name].append(server)
        self.timeline.append((time.monotonic() - self.started - seconds, name, seconds))
        self.statuses[(name, status)] += 1
        if status >= 500:
            self.server_errors.append(f"{name} {status}")


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


class Stack:
    """The web server (BENCH_SERVER, granian by default) plus one Celery worker and one
    beat, all three with the rehearsal's settings."""

    def __init__(self) -> None:
        self.env = {
            **ENV,
            "SEAT_HOLD_TTL": os.environ.get("REHEARSAL_HOLD_TTL", "20"),
            "QUEUE_ACTIVE_TTL": os.environ.get("REHEARSAL_TURN_TTL", "45"),
            "QUEUE_ADMISSION_INTERVAL": "2",
            "THROTTLE_ANON": "100000/min",
            "SERVER_TIMING": "1",  # the server's own time per response, to tell from ours
            "LOG_LEVEL": "ERROR",  # 429s and 409s are the plan, not news
        }
        os.environ.update(self.env)
        ENV.update(self.env)  # the web server takes bench.common.ENV: same settings as the jobs
        self.server = Server(workers=WORKERS)
        self.jobs = [
            celery_job("worker", "--concurrency", "1", env=self.env),
            celery_job("beat", "--schedule", "/tmp/rehearsal-beat", env=self.env),
        ]

    def stop(self) -> None:
        for job in self.jobs:
            stop_job(job)
        self.server.stop()


def seed(fans: int, bots: int) -> tuple[int, list[Fan]]:
    setup_django()
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from concerts import services
    from queueing.models import WaitingRoom

    now = timezone.now()
    concert = services.concert_create(title="Rehearsal", artist="The Load", venue="Loopback")
    capacity = int(os.environ.get("REHEARSAL_CAPACITY", "50"))
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=capacity)
    for day in (1, 2):
        services.schedule_create(
            concert=concert,
            starts_at=now + timedelta(days=day),
            booking_opens_at=now - timedelta(hours=1),
            booking_closes_at=now + timedelta(days=day, hours=-1),
            seat_price=100_000,
        )
    rng = random.Random(7)
    kinds = []
    for i in range(fans + bots):
        if i >= fans:
            kinds.append("bot")
            continue
        roll = rng.random()
        kinds.append(
            "expirer"
            if roll < 0.10
            else "broke"
            if roll < 0.20
            else "leaver"
            if roll < 0.25
            else "buyer"
        )
    with connection.cursor() as cursor:
        seed_fans(cursor, len(kinds))
        cursor.execute("SELECT user_id, key FROM authtoken_token ORDER BY user_id")
        keys = dict(cursor.fetchall())
    seeded = [Fan(i, i + 1, keys[i + 1], kind) for i, kind in enumerate(kinds)]
    # Walk-ups: fans who register through the API just before the sale.
    walk_ups = [Fan(len(kinds) + i, 0, "", "buyer") for i in range(WALK_UPS)]
    return concert.pk, seeded + walk_ups


@dataclass
class Reply:
    status_code: int
    headers: dict
    content: bytes

    def json(self):
        return json.loads(self.content) if self.content else {}


async def call(client, stats: Stats, name: str, method: str, path: str, **kwargs):
    import aiohttp

    began = time.monotonic()
    try:
        async with client.request(method, path, **kwargs) as reply:
            response = Reply(reply.status, reply.headers, await reply.read())
    except (TimeoutError, aiohttp.ClientError) as exc:
        # No answer within REQUEST_TIMEOUT (or a dropped connection): what a browser
        # shows as a failed request. Counted, and the fan tries again.
        stats.client_failures[f"{name}: {type(exc).__name__}"] += 1
        return Reply(0, {}, b"")
    timing = response.headers.get("Server-Timing", "")
    server = float(timing.split("dur=")[1]) / 1000 if "dur=" in timing else None
    stats.record(name, response.status_code, time.monotonic() - began, server)
    return response


async def fan_script(fan: Fan, client, concert_id: int, stats: Stats):
    rng = random.Random(fan.index)
    auth = {"Authorization": f"Token {fan.auth}"}
    await asyncio.sleep(rng.random() * RUSH_SECONDS)
    fan.lined_up_at = time.monotonic() - stats.started
    for _ in range(3):  # a failed request is retried, as a fan reloads the page
        response = await call(
            client, stats, "line up", "POST", f"/api/v1/concerts/{concert_id}/queue", headers=auth
        )
        if response.status_code:
            break
    if response.status_code not in (200, 201):
        fan.outcome = f"line-up {response.status_code}"
        return
    body = response.json()
    fan.pre_queued = body["status"] == "pre_queue"
    fan.token = body["token"]
    fan.first_estimate = body["estimated_wait_seconds"]
    queue = {**auth, "X-Queue-Token": fan.token}
    gave_up_after = rng.uniform(5, 60) if fan.kind == "leaver" else None
    while body["status"] in ("waiting", "pre_queue"):
        if body.get("sold_out"):
            # Told by the poll that every seat is sold, the fan gives the place back.
            await call(client, stats, "leave", "DELETE", "/api/v1/queue", headers=queue)
            fan.outcome = "sold out while waiting"
            return
        if (
            gave_up_after is not None
            and time.monotonic() - stats.started - fan.lined_up_at > gave_up_after
        ):
            await call(client, stats, "leave", "DELETE", "/api/v1/queue", headers=queue)
            fan.outcome = "left the line"
            return
        pause = 0.2 if fan.kind == "bot" else float(body["poll_after_seconds"])
        await asyncio.sleep(pause)
        response = await call(client, stats, "poll", "GET", "/api/v1/queue", headers=queue)
        if response.status_code == 429:
            fan.early_polls += 1
            await asyncio.sleep(int(response.headers.get("Retry-After", "1")))
            continue
        if response.status_code != 200:  # no answer: keep the last one, poll again
            continue
        body = response.json()
    if body["status"] != "active":
        fan.outcome = f"turn {body['status']}"
        return
    fan.admitted_at = time.monotonic() - stats.started
    await shop(fan, client, concert_id, stats, queue, rng, body)
    if fan.outcome not in ("bought", "let the hold expire"):
        # Done without a ticket: give the turn back so the next fan is admitted at once.
        await call(client, stats, "leave", "DELETE", "/api/v1/queue", headers=queue)


async def shop(fan, client, concert_id, stats, queue, rng, turn: dict):
    schedules = []
    watching_until = time.monotonic() + float(os.environ.get("REHEARSAL_TURN_TTL", "45"))
    while not schedules:  # seats only held, not sold, may come back: watch the map
        path = f"/api/v1/concerts/{concert_id}/dates"
        dates = (await call(client, stats, "dates", "GET", path, headers=queue)).json()
        schedules = [d["schedule_id"] for d in dates.get("dates", []) if d["available_seats"]]
        if schedules:
            break
        if turn.get("sold_out") or time.monotonic() > watching_until:
            fan.outcome = "sold out"
            return
        # Nothing free: held seats may come back. Ask the turn when it says to.
        await asyncio.sleep(float(turn["poll_after_seconds"]))
        response = await call(client, stats, "poll", "GET", "/api/v1/queue", headers=queue)
        if response.status_code == 200:
            turn = response.json()
            if turn["status"] != "active":
                fan.outcome = f"turn {turn['status']}"
                return
    schedule = rng.choice(schedules)
    wanted = 4 if fan.kind == "bot" else rng.choice((1, 1, 2))
    held = []
    for _ in range(wanted * 3):
        if len(held) == wanted:
            break
        seats = (
            await call(
                client, stats, "seats", "GET", f"/api/v1/schedules/{schedule}/seats", headers=queue
            )
        ).json()
        free = [s["number"] for s in seats.get("seats", [])]
        if not free:
            break
        response = await call(
            client, stats, "hold", "POST", "/api/v1/reservations",
            headers=queue, json={"schedule_id": schedule, "seat_number": rng.choice(free)},
        )  # fmt: skip
        if response.status_code == 201:
            held.append(response.json()["reservation_id"])
    if not held:
        fan.outcome = "no seat"
        return
    if fan.kind == "expirer":
        fan.outcome = "let the hold expire"
        return
    for attempt in range(3 if fan.kind == "bot" else 1):
        response = await call(
            client, stats, "checkout", "POST", "/api/v1/checkouts",
            headers={**queue, "Idempotency-Key": f"{fan.user_id}-{attempt}"},
            json={"reservation_ids": held},
        )  # fmt: skip
        if response.status_code == 201:
            fan.seats = held
            fan.outcome = "bought"
            return
    fan.outcome = f"payment {response.status_code}"


async def measure_loop_lag(stats: Stats, done: asyncio.Event, every: float = 0.05) -> None:
    """How late the client's own event loop wakes: the part of a measured latency
    that is the load generator's queueing, not the server's."""
    while not done.is_set():
        began = time.monotonic()
        await asyncio.sleep(every)
        stats.loop_lag.append(time.monotonic() - began - every)


async def before_the_sale(fans: list[Fan], client, stats: Stats) -> None:
    """The minutes before the on-sale: walk-ups register (the rest registered days
    ago and hold an API token), and every fan tops up through the API, those who
    cannot pay with the least the wallet takes. Not part of the rush's figures."""
    gate = asyncio.Semaphore(64)

    async def register(fan: Fan) -> None:
        async with gate:
            body = {"username": f"walkup{fan.index}", "password": f"Sale-day-{fan.index}-pw!"}
            response = await call(
                client, stats, "register", "POST", "/api/v1/auth/register", json=body
            )
        reply = response.json()
        fan.user_id, fan.auth = reply["user_id"], reply["token"]

    async def top_up(fan: Fan) -> None:
        from django.conf import settings

        amount = settings.WALLET_MIN_CHARGE if fan.kind == "broke" else TOP_UP
        async with gate:
            response = await call(
                client, stats, "top up", "POST", "/api/v1/wallet/charges",
                headers={"Authorization": f"Token {fan.auth}",
                         "Idempotency-Key": f"top-up-{fan.index}"},
                json={"amount": amount},
            )  # fmt: skip
        assert response.status_code == 201, response.content

    await asyncio.gather(*(register(f) for f in fans if not f.auth))
    await asyncio.gather(*(top_up(f) for f in fans))


def schedule_the_sale(concert_id: int) -> None:
    """A scheduled sale whose pre-queue window is open now and whose on-sale time comes
    PRE_QUEUE_GRACE seconds after the rush's last arrival."""
    from datetime import timedelta

    from django.db import connections
    from django.utils import timezone

    from queueing.models import WaitingRoom

    starts = timezone.now() + timedelta(seconds=RUSH_SECONDS + PRE_QUEUE_GRACE)
    WaitingRoom.objects.filter(pk=concert_id).update(sale_starts_at=starts, pre_queue_minutes=60)
    connections.close_all()


# Long enough for the rush's slowest line-up to land in the pre-queue (p99 5.7 s at 5,000).
PRE_QUEUE_GRACE = 20.0


async def run(
    fans: list[Fan],
    url: str,
    concert_id: int,
    limit: float,
    stats: Stats,
    sampler: Sampler,
    pre_queue: bool = False,
) -> Stats:
    import aiohttp

    done = asyncio.Event()
    # A browser per fan would hold its own connection; 256 sockets let the rush reach
    # the server instead of queueing in the client, and the server's own queue shows.
    connector = aiohttp.TCPConnector(limit=CLIENT_CONNECTIONS)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as client:
        began = time.monotonic()
        await before_the_sale(fans, client, stats.before)
        stats.before.seconds = time.monotonic() - began
        if pre_queue:  # the sale starts a little after the last fan has arrived
            await asyncio.to_thread(schedule_the_sale, concert_id)
        # The on-sale: the rush's clock, and the sampler's, start now.
        stats.started = sampler.started = time.monotonic()
        sampler.start()
        lag = asyncio.create_task(measure_loop_lag(stats, done))
        scripts = asyncio.gather(*(fan_script(f, client, concert_id, stats) for f in fans))
        try:
            await asyncio.wait_for(scripts, timeout=limit)
        except TimeoutError:
            stats.timed_out = True
        done.set()
        stats.seconds = time.monotonic() - stats.started
        await lag
    return stats


def report(fans: list[Fan], stats: Stats, concert_id: int, seconds: float) -> dict:
    from django.db.models import Count

    from concerts.models import Reservation
    from payments.selectors import money_reconcile
    from queueing.models import QueueToken

    confirmed = Reservation.objects.filter(schedule__concert_id=concert_id, status="confirmed")
    live = Reservation.objects.filter(
        status__in=["held", "confirmed"], schedule__concert_id=concert_id
    )
    doubled = live.values("seat").annotate(n=Count("id")).filter(n__gt=1).count()
    admitted = list(
        QueueToken.objects.filter(concert_id=concert_id, admitted_at__isnull=False)
        .order_by("admitted_at", "id").values_list("id", flat=True)
    )  # fmt: skip
    inversions = sum(1 for a, b in zip(admitted, admitted[1:], strict=False) if a > b)
    # What the bots gained: for each admitted bot, the honest fans who lined up before
    # it (a smaller token id) but were admitted after it, or never, while still in
    # line at the bot's admission (not leaving within a second of it). FIFO admission
    # makes this 0; the bots' early polls and sweeps are refused or lose to the lock.
    tokens = {
        row["user_id"]: row
        for row in QueueToken.objects.filter(concert_id=concert_id).values(
            "id", "user_id", "admitted_at", "ended_at", "end_reason"
        )
    }
    overtaken = 0
    for bot in (f for f in fans if f.kind == "bot"):
        mine = tokens.get(bot.user_id)
        if not mine or mine["admitted_at"] is None:
            continue
        for fan in fans:
            theirs = tokens.get(fan.user_id)
            if fan.kind == "bot" or not theirs or theirs["id"] > mine["id"]:
                continue
            # ended_at is the leave's clock, read before it waited for the token's
            # lock; a leave in flight while the admission ran (the admission then
            # skips the fan, as it must) lands up to a moment after the stamp.
            grace = mine["admitted_at"] + timedelta(seconds=1)
            gone_before = theirs["ended_at"] is not None and theirs["ended_at"] <= grace
            admitted_after = (
                theirs["admitted_at"] is None or theirs["admitted_at"] > mine["admitted_at"]
            )
            if admitted_after and not gone_before:
                overtaken += 1
    honest = [f for f in fans if f.kind != "bot"]
    bots = [f for f in fans if f.kind == "bot"]
    errors = [
        abs((f.admitted_at - f.lined_up_at) - f.first_estimate)
        for f in honest
        if f.admitted_at is not None and f.first_estimate is not None
    ]
    result = {
        "fans": len(honest),
        "bots": len(bots),
        "seconds": round(seconds, 1),
        "seats_sold": confirmed.count(),
        "double_sold_seats": doubled,
        "server_errors": len(stats.server_errors),
        "requests_without_an_answer": dict(stats.client_failures),
        "ended_by_time_limit": stats.timed_out,
        "money_reconciles": money_reconcile().ok,
        # Pairs of admitted tokens whose admission order (admitted_at, monotonic per
        # concert) disagrees with their line-up order (token id): FIFO means 0.
        "admission_order_inversions": inversions,
        "estimate_error_seconds": {
            "median": percentile(errors, 0.5),
            "p90": percentile(errors, 0.9),
        },
        "honest_fans_overtaken_by_bots": overtaken,
        "bought": {
            "honest_share": sum(f.outcome == "bought" for f in honest) / max(1, len(honest)),
            "bot_share": sum(f.outcome == "bought" for f in bots) / max(1, len(bots)),
        },
        "early_polls": {
            "honest": sum(f.early_polls for f in honest),
            "bots": sum(f.early_polls for f in bots),
        },
        "outcomes": Counter(f.outcome for f in fans),
        "endpoints": {
            name: {
                "requests": len(values),
                "per_second": round(len(values) / seconds, 1),
                "p50_ms": round(1000 * percentile(values, 0.5), 1),
                "p99_ms": round(1000 * percentile(values, 0.99), 1),
                # Django's own time (Server-Timing): the rest is waiting for a server
                # thread, the network and the load client's own queueing.
                "server_p50_ms": round(1000 * (percentile(stats.server[name], 0.5) or 0), 1),
                "server_p99_ms": round(1000 * (percentile(stats.server[name], 0.99) or 0), 1),
            }
            for name, values in stats.latencies.items()
        },
        "time_to_a_place_in_line_ms": {
            "p50": round(1000 * percentile(stats.latencies["line up"], 0.5), 1),
            "p99": round(1000 * percentile(stats.latencies["line up"], 0.99), 1),
        },
        "requests_per_fan": round(sum(map(len, stats.latencies.values())) / max(1, len(fans)), 1),
    }
    # A scheduled sale: among the fans who lined up in the pre-queue, does the place
    # drawn at the start follow when they arrived? (Those who arrived after the start
    # queue behind, first come, first served, and are counted apart.)
    drawn = [
        (fan.lined_up_at, tokens[fan.user_id]["id"])
        for fan in fans
        if fan.pre_queued and fan.user_id in tokens
    ]
    if len(drawn) > 2:
        result["pre_queue"] = {
            "fans": len(drawn),
            "arrived_after_the_start": sum(1 for f in fans if f.token and not f.pre_queued),
            "arrival_vs_place_spearman_rho": round(spearman(drawn), 4),
        }
    return result


def spearman(pairs: list[tuple[float, int]]) -> float:
    """Spearman's rank correlation of (arrival time, place in line) pairs: 1 is first
    come, first served; about 0 is a draw that arrival does not sway."""
    n = len(pairs)

    def ranks(values):
        order = sorted(range(n), key=lambda i: values[i])
        rank = [0] * n
        for position, i in enumerate(order):
            rank[i] = position
        return rank

    a, b = ranks([p[0] for p in pairs]), ranks([p[1] for p in pairs])
    d2 = sum((x - y) ** 2 for x, y in zip(a, b, strict=True))
    return 1 - 6 * d2 / (n * (n * n - 1))


def polls_per_second(stats: Stats, budget: int) -> dict:
    """Polls a second, on average and in the busiest 5 s, against the poll budget."""
    bins = Counter(int(t // 5) for t, name, _ in stats.timeline if name == "poll")
    span = max(1e-9, max((t for t, _, _ in stats.timeline), default=1))
    return {
        "average": round(sum(bins.values()) / span, 1),
        "busiest_5s": round(max(bins.values(), default=0) / 5, 1),
        "budget": budget,
    }


def plot(size: int, samples: list[dict], stats: Stats, label: str = "") -> None:
    try:
        from bench import plots
    except ImportError:  # pragma: no cover - matplotlib is in the bench extra
        print("no plots: pip install -e '.[bench]' brings matplotlib")
        return
    docs = ROOT / "docs" / "rehearsal"
    docs.mkdir(exist_ok=True)
    title = f"Rehearsal, {size:,} fans{', a scheduled sale with a pre-queue' if label else ''}"
    name = f"{size}{label}"
    plots.room_over_time(samples, title, docs / f"room-{name}.png")
    plots.latency_over_time(stats.timeline, title, docs / f"latency-{name}.png")
    print(f"plots: docs/rehearsal/room-{name}.png, docs/rehearsal/latency-{name}.png")


def compare(sizes: str) -> None:
    """The saved runs side by side, as the markdown tables in docs/performance.md:
    the day's checks, fairness, time to a place in line, CPU, and how per-fan
    requests, p99 and database time grow with the size of the sale."""
    runs = {}
    for size in sizes.split(","):
        path = ROOT / "bench" / "results" / f"rehearsal-{size}.json"
        runs[int(size)] = json.loads(path.read_text())
    sizes_ = sorted(runs)

    def row(label: str, value) -> None:
        print(f"| {label} | " + " | ".join(str(value(runs[n])) for n in sizes_) + " |")

    def ms(value) -> str:
        return "–" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"

    print("| figure | " + " | ".join(f"{n:,} fans" for n in sizes_) + " |")
    print("|---|" + "---|" * len(sizes_))
    row(
        "seats sold / double-sold / 5xx",
        lambda r: f"{r['seats_sold']} / {r['double_sold_seats']} / {r['server_errors']}",
    )
    row(
        "requests with no answer in 120 s",
        lambda r: sum(r.get("requests_without_an_answer", {}).values()),
    )
    row("money reconciles", lambda r: "yes" if r["money_reconciles"] else "NO")
    row("admission order inversions", lambda r: r["admission_order_inversions"])
    row("honest fans overtaken by bots", lambda r: r["honest_fans_overtaken_by_bots"])
    row(
        "bots: early polls refused / seats bought",
        lambda r: f"{r['early_polls']['bots']} / {round(r['bought']['bot_share'] * r['bots'])}",
    )
    row("run length (s), to sold out and an empty line", lambda r: r["seconds"])
    row(
        "time to a place in line, p50 / p99 (ms)",
        lambda r: (
            f"{ms(r['time_to_a_place_in_line_ms']['p50'])} / "
            f"{ms(r['time_to_a_place_in_line_ms']['p99'])}"
        ),
    )
    row(
        "line-up, server's own time p50 / p99 (ms)",
        lambda r: (
            f"{ms(r['endpoints']['line up']['server_p50_ms'])} / "
            f"{ms(r['endpoints']['line up']['server_p99_ms'])}"
        ),
    )
    row(
        "first wait estimate error, median / p90 (s)",
        lambda r: (
            f"{ms(r['estimate_error_seconds']['median'])} / "
            f"{ms(r['estimate_error_seconds']['p90'])}"
        ),
    )
    row(
        "polls/s average / busiest 5 s / budget",
        lambda r: (
            f"{r['polls_per_second']['average']} / {r['polls_per_second']['busiest_5s']} / "
            f"{r['polls_per_second']['budget']}"
        ),
    )
    row(
        "before the sale: top-ups p50 / p99 (ms), all in (s)",
        lambda r: (
            f"{ms(r['before_the_sale']['endpoints']['top up']['p50_ms'])} / "
            f"{ms(r['before_the_sale']['endpoints']['top up']['p99_ms'])}, "
            f"{r['before_the_sale']['seconds']}"
        ),
    )
    row(
        "before the sale: 20 registrations p50 (ms)",
        lambda r: ms(r["before_the_sale"]["endpoints"]["register"]["p50_ms"]),
    )
    row("requests per fan", lambda r: r["requests_per_fan"])
    row("database busy time per fan (ms)", lambda r: r["db_active_ms_per_fan"])
    for part in ("web", "worker", "beat", "postgresql", "redis", "load client"):
        row(
            f"CPU cores, {part}: rush / whole run",
            lambda r, p=part: f"{r['cpu_cores_in_the_rush'].get(p)} / {r['cpu_cores'].get(p)}",
        )
    row("load client's loop lag p99 (ms)", lambda r: r["load_client_loop_lag_ms"]["p99"])
    print()
    names = list(runs[sizes_[0]]["endpoints"])
    print(
        "| endpoint | " + " | ".join(f"{n:,}: p50 / p99 (server p50 / p99)" for n in sizes_) + " |"
    )
    print("|---|" + "---|" * len(sizes_))
    for name in names:
        row(
            name,
            lambda r, n=name: (
                f"{ms(r['endpoints'][n]['p50_ms'])} / {ms(r['endpoints'][n]['p99_ms'])} "
                f"({ms(r['endpoints'][n]['server_p50_ms'])} / "
                f"{ms(r['endpoints'][n]['server_p99_ms'])})"
                if n in r["endpoints"]
                else "–"
            ),
        )
    print()
    base = runs[sizes_[0]]
    for size in sizes_[1:]:
        r = runs[size]
        print(
            f"{size:,} vs {sizes_[0]:,} fans ({size / sizes_[0]:g}x the fans): database time "
            f"per fan x{r['db_active_ms_per_fan'] / max(1e-9, base['db_active_ms_per_fan']):.2f}, "
            f"requests per fan x{r['requests_per_fan'] / base['requests_per_fan']:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fans", type=int, default=1000)
    parser.add_argument("--bots", type=int, default=10)
    parser.add_argument("--max-seconds", type=float, default=900, help="a bound: then it reports")
    parser.add_argument(
        "--compare",
        metavar="SIZES",
        help="print how the saved runs of these sizes grow, e.g. 1000,5000,20000",
    )
    parser.add_argument(
        "--pre-queue",
        action="store_true",
        help="a scheduled sale: everyone lines up in the pre-queue, shuffled at the start",
    )
    args = parser.parse_args()
    label = "-pre-queue" if args.pre_queue else ""
    if args.compare:
        compare(args.compare)
        return
    recreate_database()
    concert_id, fans = seed(args.fans, args.bots)
    stack = Stack()
    stats = Stats()
    sampler = Sampler(
        concert_id,
        {
            "web": group_pids(stack.server.proc.pid),
            "worker": group_pids(stack.jobs[0].pid),
            "beat": group_pids(stack.jobs[1].pid),
            "postgresql": named_pids("postgres"),
            "redis": named_pids("redis-server"),
            "load client": own_pid,
        },
        started=stats.started,
    )
    stats.before = Stats()
    try:
        asyncio.run(
            run(
                fans, stack.server.url, concert_id, args.max_seconds, stats, sampler, args.pre_queue
            )
        )
    finally:
        sampler.stop()
        stack.stop()
    seconds = stats.seconds
    result = report(fans, stats, concert_id, seconds)
    before = stats.before
    result["before_the_sale"] = {
        "seconds": round(before.seconds, 1),
        "server_errors": len(before.server_errors),
        "endpoints": {
            name: {
                "requests": len(values),
                "p50_ms": round(1000 * percentile(values, 0.5), 1),
                "p99_ms": round(1000 * percentile(values, 0.99), 1),
            }
            for name, values in before.latencies.items()
        },
    }
    samples = [asdict(sample) for sample in sampler.samples]
    result.update(summarize(sampler.samples, seconds))
    rush = [x for x in sampler.samples if x.t <= RUSH_SECONDS + 5]
    result["cpu_cores_in_the_rush"] = summarize(rush, RUSH_SECONDS + 5).get("cpu_cores")
    result["db_active_ms_per_fan"] = round(
        1000 * result.get("db_active_seconds", 0) / max(1, result["fans"]), 1
    )
    result["polls_per_second"] = polls_per_second(
        stats, int(ENV.get("QUEUE_POLL_BUDGET_PER_SECOND", "1000"))
    )
    result["load_client_loop_lag_ms"] = {
        "p50": round(1000 * (percentile(stats.loop_lag, 0.5) or 0), 1),
        "p99": round(1000 * (percentile(stats.loop_lag, 0.99) or 0), 1),
    }
    result["samples"] = samples
    path = save(f"rehearsal-{args.fans}{label}", result)
    plot(args.fans, samples, stats, label)
    result.pop("samples")
    print(json.dumps(result, indent=2, default=str))
    print(f"raw results: {path.relative_to(ROOT)}")
    checks = {
        "all 100 seats sold": result["seats_sold"] == SEATS,
        "the line drained before the time limit": not result["ended_by_time_limit"],
        "no seat sold twice": result["double_sold_seats"] == 0,
        "no server error": result["server_errors"] + result["before_the_sale"]["server_errors"]
        == 0,
        f"every request answered within {REQUEST_TIMEOUT} s": not result[
            "requests_without_an_answer"
        ],
        "money reconciles": result["money_reconciles"],
        "admitted in line-up order": result["admission_order_inversions"] == 0,
        "bots overtook no honest fan": result["honest_fans_overtaken_by_bots"] == 0,
    }
    if args.pre_queue:  # a fair draw: the place does not follow the arrival
        checks["the draw ignored arrival order (|rho| < 0.1)"] = (
            abs(result.get("pre_queue", {}).get("arrival_vs_place_spearman_rho", 1)) < 0.1
        )
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
