"""The bookable dates' query compiled once (concerts.selectors.schedule_list_bookable
on PostgreSQL): each call runs `_bookable`'s SQL with its own concert and time, and
answers exactly what the ORM queryset answers, in every state a date can be in."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from concerts import selectors
from concerts.models import Reservation
from tests.conftest import hold_seat
from tests.factories import ConcertFactory, UserFactory, make_schedule

pytestmark = pytest.mark.django_db


def as_listed(dates) -> list[tuple]:
    return [
        (d.id, d.concert_id, d.starts_at, d.booking_opens_at, d.booking_closes_at,
         d.created_at, d.available_seats)
        for d in dates
    ]  # fmt: skip


def orm(concert_id: int, now) -> list[tuple]:
    return as_listed(selectors._bookable(concert_id=concert_id, now=now))


@pytest.fixture
def dates():
    """A concert with dates in every state, and a second concert's date."""
    concert = ConcertFactory()
    now = timezone.now()
    held = make_schedule(concert, starts_in=timedelta(days=3))
    make_schedule(concert, starts_in=timedelta(days=9))  # every seat free
    make_schedule(concert, opened_ago=timedelta(days=-2))  # not open yet
    make_schedule(
        concert, starts_in=timedelta(hours=2), closes_before_start=timedelta(hours=3)
    )  # closed
    full = make_schedule(concert, starts_in=timedelta(days=5))
    for number in range(1, 51):
        hold_seat(UserFactory(), full, number, now)
    for number in (1, 2, 3):
        hold_seat(UserFactory(), held, number, now)
    Reservation.objects.filter(schedule=held, seat__number=1).update(
        status=Reservation.Status.CONFIRMED
    )
    Reservation.objects.filter(schedule=held, seat__number=2).update(
        expires_at=now + timedelta(seconds=30)
    )
    make_schedule(ConcertFactory(), starts_in=timedelta(days=4))
    return concert, now, held


def test_the_compiled_query_answers_what_the_orm_answers(dates):
    concert, now, held = dates
    listed = as_listed(selectors.schedule_list_bookable(concert_id=concert.id, now=now))
    assert listed == orm(concert.id, now)
    assert [(row[0], row[-1]) for row in listed][0] == (held.id, 47)
    assert len(listed) == 2  # the held date and the free one; not full, closed or another's


def test_each_call_runs_with_its_own_time_and_concert(dates):
    concert, now, held = dates
    later = now + timedelta(minutes=1)  # seat 2's hold has lapsed, seat 3's has not
    listed = as_listed(selectors.schedule_list_bookable(concert_id=concert.id, now=later))
    assert listed == orm(concert.id, later)
    assert (listed[0][0], listed[0][-1]) == (held.id, 48)
    after_every_hold = now + timedelta(hours=1)
    assert as_listed(
        selectors.schedule_list_bookable(concert_id=concert.id, now=after_every_hold)
    ) == orm(concert.id, after_every_hold)
    other = ConcertFactory()
    assert selectors.schedule_list_bookable(concert_id=other.id, now=now) == []


def test_the_dates_are_one_statement(dates):
    concert, now, _ = dates
    selectors.schedule_list_bookable(concert_id=concert.id, now=now)  # compiled
    with CaptureQueriesContext(connection) as queries:
        selectors.schedule_list_bookable(concert_id=concert.id, now=now)
    assert len(queries) == 1
