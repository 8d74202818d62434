from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from concerts import services
from concerts.exceptions import InvalidPrice, InvalidSchedule
from concerts.models import Schedule, Seat
from tests.factories import ConcertFactory, make_schedule

pytestmark = pytest.mark.django_db


def test_a_new_schedule_comes_with_50_seats_at_its_price():
    schedule = make_schedule(seat_price=77_000)
    seats = list(schedule.seats.order_by("number"))
    assert [s.number for s in seats] == list(range(1, 51))
    assert {s.price for s in seats} == {77_000}


def test_schedule_create_refuses_a_booking_window_after_the_show():
    now = timezone.now()
    with pytest.raises(InvalidSchedule):
        services.schedule_create(
            concert=ConcertFactory(),
            starts_at=now,
            booking_opens_at=now - timedelta(days=1),
            booking_closes_at=now + timedelta(hours=1),
            seat_price=1000,
        )
    assert not Schedule.objects.exists()


@pytest.mark.parametrize("price", [0, -5, 1.5, True])
def test_schedule_create_refuses_a_non_positive_price(price):
    now = timezone.now()
    with pytest.raises(InvalidPrice):
        services.schedule_create(
            concert=ConcertFactory(),
            starts_at=now + timedelta(days=2),
            booking_opens_at=now,
            booking_closes_at=now + timedelta(days=1),
            seat_price=price,
        )
    assert not Seat.objects.exists()


@pytest.mark.parametrize("number", [0, 51, 1000])
def test_database_refuses_a_seat_number_outside_1_to_50(number):
    schedule = make_schedule()
    Seat.objects.filter(schedule=schedule, number=50).delete()
    with pytest.raises(IntegrityError), transaction.atomic():
        Seat.objects.create(schedule=schedule, number=number, price=1000)


def test_database_refuses_a_duplicate_seat_number():
    schedule = make_schedule()
    with pytest.raises(IntegrityError), transaction.atomic():
        Seat.objects.create(schedule=schedule, number=7, price=1000)


@pytest.mark.parametrize("price", [0, -1])
def test_database_refuses_a_non_positive_price(price):
    schedule = make_schedule()
    with pytest.raises(IntegrityError), transaction.atomic():
        Seat.objects.filter(schedule=schedule, number=1).update(price=price)


def test_database_refuses_a_booking_window_closing_after_the_show():
    schedule = make_schedule()
    with pytest.raises(IntegrityError), transaction.atomic():
        Schedule.objects.filter(pk=schedule.pk).update(
            booking_closes_at=schedule.starts_at + timedelta(minutes=1)
        )


def test_seat_price_update_changes_one_seat():
    schedule = make_schedule(seat_price=50_000)
    seat = schedule.seats.get(number=1)
    services.seat_price_update(seat=seat, price=90_000)
    assert schedule.seats.get(number=1).price == 90_000
    assert schedule.seats.get(number=2).price == 50_000
