"""Every ending takes effect at once, in every process (issue 13).

Two web processes, each with its own memory and connection pool, share the Redis
mirror and the auth cache. A turn ended through one process (payment, leaving, an
operator), and an API token deleted, are refused on the very next request to the
other, though that process had just let the same fan through.
"""

import httpx
import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token

from queueing import services as queue_services
from queueing.models import QueueToken, WaitingRoom
from tests.factories import ConcertFactory, UserFactory, make_schedule
from wallet import services as wallet_services

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def sale():
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=100)
    return concert, make_schedule(concert)


def fan_on(url, concert):
    """A fan lined up through `url`, admitted at once; returns its headers."""
    user = UserFactory()
    key = Token.objects.create(user=user).key
    auth = {"Authorization": f"Token {key}"}
    lined = httpx.post(f"{url}/api/v1/concerts/{concert.id}/queue", headers=auth, timeout=30)
    assert lined.status_code == 201 and lined.json()["status"] == "active", lined.text
    return user, {**auth, "X-Queue-Token": lined.json()["token"]}


def seats(url, schedule, headers):
    return httpx.get(f"{url}/api/v1/schedules/{schedule.id}/seats", headers=headers, timeout=30)


def test_leaving_through_one_process_is_refused_by_the_other(two_web_processes, sale):
    a, b = two_web_processes
    concert, schedule = sale
    _, headers = fan_on(a, concert)
    assert seats(b, schedule, headers).status_code == 200  # b lets the fan through
    left = httpx.delete(f"{a}/api/v1/queue", headers=headers, timeout=30)
    assert left.status_code == 204
    refused = seats(b, schedule, headers)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "queue_token_expired"


def test_an_operator_ending_is_refused_by_both_processes(two_web_processes, sale):
    a, b = two_web_processes
    concert, schedule = sale
    _, headers = fan_on(a, concert)
    assert seats(a, schedule, headers).status_code == 200
    assert seats(b, schedule, headers).status_code == 200
    token = QueueToken.objects.get(key=headers["X-Queue-Token"])
    queue_services.queue_tokens_end(ids=[token.pk], now=timezone.now(), reason="operator")
    for url in (a, b):
        assert seats(url, schedule, headers).status_code == 403


def test_a_payment_through_one_process_ends_the_turn_in_the_other(two_web_processes, sale):
    a, b = two_web_processes
    concert, schedule = sale
    user, headers = fan_on(a, concert)
    wallet_services.wallet_charge(user_id=user.pk, amount=1_000_000, now=timezone.now())
    held = httpx.post(
        f"{b}/api/v1/reservations",
        headers=headers,
        json={"schedule_id": schedule.id, "seat_number": 9},
        timeout=30,
    )
    assert held.status_code == 201, held.text
    paid = httpx.post(
        f"{a}/api/v1/payments",
        headers={**headers, "Idempotency-Key": "pay-once"},
        json={"reservation_id": held.json()["reservation_id"]},
        timeout=30,
    )
    assert paid.status_code == 201, paid.text
    refused = seats(b, schedule, headers)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "queue_token_expired"


def test_a_deleted_api_token_is_refused_by_both_processes(two_web_processes, sale):
    a, b = two_web_processes
    concert, _ = sale
    user = UserFactory()
    token = Token.objects.create(user=user)
    auth = {"Authorization": f"Token {token.key}"}
    for url in (a, b):  # each process has now authenticated it (cached)
        assert httpx.get(f"{url}/api/v1/auth/me", headers=auth, timeout=30).status_code == 200
    token.delete()  # logged out, as the admin's delete does
    for url in (a, b):
        assert httpx.get(f"{url}/api/v1/auth/me", headers=auth, timeout=30).status_code == 401


def test_a_deleted_api_token_is_refused_on_the_seat_map_by_both_processes(two_web_processes, sale):
    """The seat map takes the fast lane (config/fastlane.py), which authenticates the
    API token itself: a logout through one process is refused by both at once."""
    a, b = two_web_processes
    concert, schedule = sale
    user, headers = fan_on(a, concert)
    for url in (a, b):  # each process has now authenticated it (cached)
        assert seats(url, schedule, headers).status_code == 200
    Token.objects.filter(user=user).delete()
    for url in (a, b):
        refused = seats(url, schedule, headers)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "authentication_failed"
