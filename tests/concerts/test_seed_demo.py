import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from concerts.models import Concert, Schedule, Seat

pytestmark = pytest.mark.django_db


def counts():
    return (
        Concert.objects.count(),
        Schedule.objects.count(),
        Seat.objects.count(),
        get_user_model().objects.count(),
    )


def test_seed_demo_loads_concerts_dates_seats_and_fans(capsys):
    call_command("seed_demo")
    concerts, schedules, seats, users = counts()
    assert concerts >= 3
    assert schedules >= 2 * concerts
    assert seats == 50 * schedules
    assert users >= 3
    out = capsys.readouterr().out
    assert "fan1 / concert-fan-1" in out
    fan1 = get_user_model().objects.get(username="fan1")
    assert fan1.check_password("concert-fan-1")


def test_seed_demo_twice_duplicates_nothing():
    call_command("seed_demo")
    first = counts()
    call_command("seed_demo")
    assert counts() == first
