"""With Redis down, the service answers from PostgreSQL: slower, never a 500 (issue 10).

Redis is "down" here for real: the cache points at a closed port on loopback.
"""

import pytest
from django.core.cache import cache
from django.test import Client, override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from config import cache as fail_soft
from queueing import services as queue_services
from queueing.models import WaitingRoom
from tests.factories import ConcertFactory, UserFactory

pytestmark = pytest.mark.django_db

DOWN = {
    "default": {
        "BACKEND": "config.cache.PooledRedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
        "KEY_PREFIX": "redis-down-test",
        "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
    }
}


@pytest.fixture
def waiting_fan():
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=0)
    now = timezone.now()
    for _ in range(3):
        queue_services.queue_token_issue(user=UserFactory(), concert_id=concert.id, now=now)
    token, _ = queue_services.queue_token_issue(user=UserFactory(), concert_id=concert.id, now=now)
    return token


@override_settings(CACHES=DOWN)
def test_polls_are_answered_from_the_database(waiting_fan):
    first = Client().get("/api/v1/queue", HTTP_X_QUEUE_TOKEN=waiting_fan.key)
    assert first.status_code == 200
    assert first.json()["position"] == 4  # the shared estimates were computed from rows
    assert int(first["Retry-After"]) >= 1
    # The early-poll guard lives in Redis: without it an early poll is answered, not refused.
    again = Client().get("/api/v1/queue", HTTP_X_QUEUE_TOKEN=waiting_fan.key)
    assert again.status_code == 200
    assert cache._cache.is_down  # and the process stopped asking Redis for a while


@override_settings(CACHES=DOWN)
def test_line_up_hold_and_pay_still_work(fan, schedule):
    from tests.conftest import admitted_client, hold_seat
    from wallet import services as wallet_services

    client = admitted_client(fan, schedule.concert)
    wallet_services.wallet_charge(user_id=fan.pk, amount=200_000, now=timezone.now())
    reservation = hold_seat(fan, schedule, 3)
    paid = client.post(
        "/api/v1/payments", {"reservation_id": reservation.id}, HTTP_IDEMPOTENCY_KEY="k"
    )
    assert paid.status_code == 201


@override_settings(CACHES=DOWN)
def test_throttles_let_requests_through(fan):
    for i in range(3):
        response = APIClient().post(
            "/api/v1/auth/register",
            {"username": f"while-down-{i}", "password": "long-enough-pass-1"},
            format="json",
        )
        assert response.status_code == 201
    bad = APIClient().post(
        "/api/v1/auth/token", {"username": fan.username, "password": "no"}, format="json"
    )
    assert bad.status_code == 401  # counted nowhere, refused as wrong, not as a 500


@override_settings(CACHES=DOWN)
def test_healthz_answers_503_and_names_the_cache():
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "ok"
    assert response.json()["cache"].startswith("error")


def test_when_redis_is_back_the_cache_is_used_again_without_any_step(monkeypatch):
    client = cache._cache
    client._down_until = fail_soft.time.monotonic() + fail_soft.REDIS_RETRY_AFTER  # as if down
    cache.set("back-again", 1)
    assert cache.get("back-again") is None  # skipped while the breaker is open
    later = fail_soft.time.monotonic() + fail_soft.REDIS_RETRY_AFTER + 0.1
    monkeypatch.setattr(fail_soft.time, "monotonic", lambda: later)
    cache.set("back-again", 1)
    assert cache.get("back-again") == 1
