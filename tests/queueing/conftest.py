import pytest
from django.utils import timezone

from queueing import services
from queueing.models import WaitingRoom
from tests.factories import ConcertFactory, UserFactory


@pytest.fixture
def concert(db):
    return ConcertFactory()


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def room(concert):
    return services.waiting_room_get(concert_id=concert.id)


def set_capacity(concert, max_active, paused=False):
    WaitingRoom.objects.update_or_create(
        pk=concert.id, defaults={"max_active": max_active, "admission_paused": paused}
    )


def line_up(concert, n, now, **kw):
    return [
        services.queue_token_issue(user=UserFactory(), concert_id=concert.id, now=now, **kw)[0]
        for _ in range(n)
    ]
