import pytest

from queueing.models import WaitingRoom
from tests.factories import ConcertFactory, make_schedule


@pytest.fixture
def date():
    """A date of a concert whose room admits up to 1,000 fans."""
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=1000)
    return make_schedule(concert)
