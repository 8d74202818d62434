"""Fault drill 4, end to end (issue 14): a real Redis server is killed mid-sale and
started again, under two real web processes.

Unlike tests/config/test_redis_down.py (a cache pointed at a closed port), this drill
runs its own redis-server, serves the sale through two gunicorn processes that share
it, SIGKILLs it while fans poll, hold, pay and leave, and starts it again empty (it
keeps nothing on disk, as in production here). Every request must be answered in a
few seconds and never with a 5xx; seats and money keep their guarantees; and once
Redis is back, the beat job rebuilds the waiting room's mirror and the processes use
Redis again, with no step by hand.
"""

import subprocess
import time
from collections import Counter

import httpx
import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from concerts.models import Reservation
from payments.selectors import money_reconcile
from queueing import mirror, tasks
from queueing.models import QueueToken, WaitingRoom
from tests.conftest import token_client
from tests.factories import ConcertFactory, UserFactory, make_schedule
from tests.faults.conftest import free_port, start_web_processes, stop_web_processes
from wallet import services as wallet_services

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ANSWER_WITHIN = 5.0  # seconds: a request that takes longer than this has hung


class RedisServer:
    """A redis-server of the test's own, on a free loopback port, killed and restarted
    at will. It keeps nothing on disk, so a restart comes back empty."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(100):  # until it answers PING (an event with a deadline)
            done = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
            )
            if done.stdout.strip() == "PONG":
                return
            time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no goodbye to the clients
        self.proc.wait(timeout=10)


@pytest.fixture
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill()


def test_redis_killed_mid_sale_and_restarted_keeps_every_guarantee(redis_server):
    # The web processes and this test (which runs the beat job) share the drill's Redis.
    servers = start_web_processes(2, REDIS_URL=redis_server.url)
    urls = [url for _, url in servers]
    ours = {"default": {**settings.CACHES["default"], "LOCATION": redis_server.url}}
    try:
        with override_settings(CACHES=ours):
            run_the_drill(urls, redis_server)
    finally:
        stop_web_processes(servers)


def run_the_drill(urls: list[str], redis_server: RedisServer) -> None:
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=2)
    schedule = make_schedule(concert)
    fans = UserFactory.create_batch(5)
    for fan in fans:
        wallet_services.wallet_charge(user_id=fan.pk, amount=500_000, now=timezone.now())
    auth = {f.pk: token_client(f)._credentials["HTTP_AUTHORIZATION"] for f in fans}
    statuses: Counter[int] = Counter()

    def call(method: str, path: str, fan, *, via: int, queue_key=None, **kwargs):
        headers = {"Authorization": auth[fan.pk], **kwargs.pop("headers", {})}
        if queue_key:
            headers["X-Queue-Token"] = queue_key
        # httpx raises on a hang; a 5xx is counted and asserted on below.
        response = httpx.request(
            method, urls[via] + path, headers=headers, timeout=ANSWER_WITHIN, **kwargs
        )
        statuses[response.status_code] += 1
        return response

    def line_up(fan, via):
        answer = call("POST", f"/api/v1/concerts/{concert.id}/queue", fan, via=via)
        assert answer.status_code in (200, 201), answer.text
        return answer.json()

    def poll(fan, key, via):
        return call("GET", "/api/v1/queue", fan, via=via, queue_key=key)

    first, second, third, fourth, late = fans
    tasks.repair_mirror()  # beat's first tick marks the (empty) mirror ready
    answers = {fan.pk: line_up(fan, via=i % 2) for i, fan in enumerate(fans[:4])}
    keys = {pk: answer["token"] for pk, answer in answers.items()}
    assert [answers[f.pk]["status"] for f in fans[:4]] == ["active", "active", "waiting", "waiting"]
    assert answers[third.pk]["position"] == 1
    # Redis paces polls across both processes: the line-up answer (from process 0) set
    # the next poll's time, and process 1 refuses an early poll.
    assert poll(third, keys[third.pk], via=1).status_code == 429
    assert mirror.is_ready()

    redis_server.kill()  # mid-sale

    # Polls are answered from PostgreSQL (pacing cannot be enforced without Redis).
    for via in (0, 1, 0):
        answer = poll(third, keys[third.pk], via=via)
        assert answer.status_code == 200 and answer.json()["position"] == 1, answer.text
    # Holds: exactly one of two admitted fans gets seat 1, through different processes.
    held = call(
        "POST", "/api/v1/reservations", first, via=0, queue_key=keys[first.pk],
        json={"schedule_id": schedule.id, "seat_number": 1},
    )  # fmt: skip
    lost = call(
        "POST", "/api/v1/reservations", second, via=1, queue_key=keys[second.pk],
        json={"schedule_id": schedule.id, "seat_number": 1},
    )  # fmt: skip
    assert (held.status_code, lost.status_code) == (201, 409), (held.text, lost.text)
    # A payment, and its retry through the other process: charged once.
    body = {"reservation_id": held.json()["reservation_id"]}
    pay = {"headers": {"Idempotency-Key": "drill-pay-1"}, "json": body}
    paid = call("POST", "/api/v1/payments", first, via=0, queue_key=keys[first.pk], **pay)
    again = call("POST", "/api/v1/payments", first, via=1, queue_key=keys[first.pk], **pay)
    assert paid.status_code == again.status_code == 201, (paid.text, again.text)
    assert paid.json() == again.json()
    # The paid turn ended and freed a slot: the first in line was admitted, and sees it.
    assert poll(third, keys[third.pk], via=1).json()["status"] == "active"
    # Leaving frees the other slot for the next in line; a new fan can still line up.
    assert call("DELETE", "/api/v1/queue", second, via=0, queue_key=keys[second.pk]).is_success
    assert QueueToken.objects.get(key=keys[fourth.pk]).status == "active"
    keys[late.pk] = line_up(late, via=1)["token"]
    assert poll(late, keys[late.pk], via=0).json()["position"] == 1
    # The health page says what is wrong, clearly.
    health = httpx.get(urls[0] + "/healthz", timeout=ANSWER_WITHIN)
    assert health.status_code == 503 and health.json()["cache"] != "ok"

    redis_server.start()  # back, and empty

    assert not mirror.is_ready()  # nothing trusts an empty mirror
    tasks.repair_mirror()  # the beat job's next tick rebuilds it from PostgreSQL
    assert mirror.is_ready()
    # Each process tries Redis again by itself (its breaker re-closes after a couple
    # of seconds). A process uses Redis again once it refuses an early poll: it wrote
    # the next poll's time there and read it back. Wait for that, with a deadline.
    for via in (0, 1):
        deadline = time.monotonic() + 30
        while poll(late, keys[late.pk], via=via).status_code != 429:
            assert time.monotonic() < deadline, f"process {via} never used Redis again"
            time.sleep(0.2)
    answer = poll(fourth, keys[fourth.pk], via=1)
    assert answer.status_code == 200 and answer.json()["status"] == "active"

    assert not [code for code in statuses if code >= 500], statuses
    live = Reservation.objects.filter(schedule=schedule, status__in=["held", "confirmed"])
    assert list(live.values_list("seat__number", "status")) == [(1, "confirmed")]
    assert money_reconcile().ok
    paid_tokens = QueueToken.objects.filter(concert=concert, end_reason="paid")
    assert list(paid_tokens.values_list("user_id", flat=True)) == [first.pk]
