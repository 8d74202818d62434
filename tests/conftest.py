import pytest
from django.core.cache import cache
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
