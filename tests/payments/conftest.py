import pytest
from django.utils import timezone

from tests.conftest import admitted_client, hold_seat
from wallet import services as wallet_services


def fund(user, amount):
    wallet_services.wallet_charge(user_id=user.pk, amount=amount, now=timezone.now())


def hold(user, schedule, number=5):
    return hold_seat(user, schedule, number, now=timezone.now())


@pytest.fixture
def paying_fan(fan, concert, schedule):
    """A fan admitted to the concert, holding seat 5 (₩100,000), with ₩150,000."""
    client = admitted_client(fan, concert)
    fund(fan, 150_000)
    reservation = hold(fan, schedule)
    return fan, client, reservation
