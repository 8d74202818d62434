import pytest
from django.utils import timezone

from concerts import services as concert_services
from tests.conftest import admitted_client
from wallet import services as wallet_services


def fund(user, amount):
    wallet_services.wallet_charge(user_id=user.pk, amount=amount, now=timezone.now())


def hold(user, schedule, number=5):
    return concert_services.seat_hold_create(
        user=user, schedule_id=schedule.id, seat_number=number, now=timezone.now()
    )


@pytest.fixture
def paying_fan(fan, concert, schedule):
    """A fan admitted to the concert, holding seat 5 (₩100,000), with ₩150,000."""
    client = admitted_client(fan, concert)
    fund(fan, 150_000)
    reservation = hold(fan, schedule)
    return fan, client, reservation
