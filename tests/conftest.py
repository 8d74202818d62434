import itertools

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import UserFactory


def clear_own_cache_keys() -> int:
    """Delete this test run's keys (its KEY_PREFIX) and nothing else in Redis.

    cache.clear() would FLUSHDB the whole database, other people's data included.
    """
    prefix = cache.key_prefix
    assert prefix.startswith("cr-test-"), prefix
    client = cache._cache.get_client(write=True)
    deleted = 0
    batch = []
    # The run's keys, and the binding kombu keeps for its task queue (test_settings).
    keys = client.scan_iter(match=f"{prefix}:*", count=1000)
    bindings = client.scan_iter(match=f"_kombu.binding*.{prefix}:*", count=1000)
    for key in itertools.chain(keys, bindings):
        batch.append(key)
        if len(batch) == 500:
            deleted += client.delete(*batch)
            batch = []
    if batch:
        deleted += client.delete(*batch)
    return deleted


def reset_cache_breaker() -> None:
    """Close the fail-soft cache's circuit breaker (config.cache), which a test that
    makes Redis "down" may have opened: it lives on the shared client."""
    client = cache._cache
    if hasattr(client, "_down_until"):
        client._down_until = 0.0


@pytest.fixture(autouse=True)
def _clear_cache():
    """Each test starts with none of the run's own keys in the shared cache, and a
    cache that asks Redis."""
    from queueing import mirror
    from queueing.selectors import clear_local_estimates

    reset_cache_breaker()
    clear_own_cache_keys()
    clear_local_estimates()
    mirror.mark_ready()  # the waiting room's Redis mirror answers, as in production
    yield
    reset_cache_breaker()
    clear_own_cache_keys()
    clear_local_estimates()


@pytest.fixture
def operator_client(db):
    """A signed-in superuser's browser client, for the admin."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    operator = get_user_model().objects.create_superuser("op", "op@example.com", "pw-123456")
    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


@pytest.fixture
def fan(db):
    return UserFactory()


@pytest.fixture
def other_fan(db):
    return UserFactory()


def token_client(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def fan_client(fan) -> APIClient:
    return token_client(fan)


@pytest.fixture
def other_client(other_fan) -> APIClient:
    return token_client(other_fan)


@pytest.fixture
def concert(db):
    """A concert whose waiting room admits everyone at once (queueing tests use their own)."""
    from queueing.models import WaitingRoom
    from tests.factories import ConcertFactory

    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=10_000)
    return concert


@pytest.fixture
def schedule(concert):
    from tests.factories import make_schedule

    return make_schedule(concert)


def admitted_client(user, concert) -> APIClient:
    """An API client for a fan with an active queue token for the concert."""
    from queueing import services as queue_services

    token, _ = queue_services.queue_token_issue(
        user=user, concert_id=concert.id, now=timezone.now()
    )
    assert token.status == "active", token.status
    client = token_client(user)
    client.credentials(
        HTTP_AUTHORIZATION=client._credentials["HTTP_AUTHORIZATION"], HTTP_X_QUEUE_TOKEN=token.key
    )
    return client


def admit(user, concert_id: int, now=None):
    """The fan's active queue token for the concert (issued, and admitted at once)."""
    from queueing import services as queue_services

    token, _ = queue_services.queue_token_issue(
        user=user, concert_id=concert_id, now=now or timezone.now()
    )
    token.refresh_from_db()  # a concurrent admission run may have admitted it meanwhile
    assert token.status == "active", token.status
    return token


def fan_holding(concert, schedule, *, balance: int = 0, seats=(7,)):
    """A new fan admitted to the concert, with `balance` won topped up (0: no wallet
    yet), holding these seats of the date: (the fan, their API client, the holds)."""
    from tests.factories import UserFactory
    from wallet import services as wallet_services

    fan = UserFactory()
    client = admitted_client(fan, concert)
    if balance:
        wallet_services.wallet_charge(user_id=fan.pk, amount=balance, now=timezone.now())
    return fan, client, [hold_seat(fan, schedule, n) for n in seats]


def hold_seat(user, schedule, number: int, now=None):
    """Admit the fan to the date's concert and hold a seat through the service."""
    from concerts import services as concert_services

    now = now or timezone.now()
    token = admit(user, schedule.concert_id, now=now)
    return concert_services.seat_hold_create(
        user=user, schedule_id=schedule.id, seat_number=number, queue_key=token.key, now=now
    )
