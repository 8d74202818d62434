import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from queueing import services as queue_services
from queueing.models import WaitingRoom
from tests.conftest import token_client
from tests.factories import ConcertFactory, make_schedule


@pytest.fixture
def concert(db):
    concert = ConcertFactory()
    WaitingRoom.objects.create(concert=concert, max_active=10_000)
    return concert


@pytest.fixture
def schedule(concert):
    return make_schedule(concert)


def admitted_client(user, concert) -> APIClient:
    """An API client for a fan with an active queue token for the concert."""
    token, _ = queue_services.queue_token_issue(
        user=user, concert_id=concert.id, now=timezone.now()
    )
    assert token.status == "active", token.status
    client = token_client(user)
    client.credentials(
        HTTP_AUTHORIZATION=client._credentials["HTTP_AUTHORIZATION"], HTTP_X_QUEUE_TOKEN=token.key
    )
    return client
