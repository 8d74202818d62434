import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _clear_cache():
    """Each test starts with an empty shared cache (a Redis db of its own)."""
    from queueing.selectors import clear_local_estimates

    cache.clear()
    clear_local_estimates()
    yield
    cache.clear()
    clear_local_estimates()


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
    WaitingRoom.objects.create(concert=concert, max_active=10_000)
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
