from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from concerts import selectors, services
from concerts.exceptions import (
    BookingClosed,
    ReservationNotFound,
    SeatLimitReached,
    SeatNotFound,
    SeatUnavailable,
)
from concerts.models import Reservation
from payments.services import booking_cancel
from queueing import services as queue_services
from queueing.models import QueueToken
from tests.conftest import admit, hold_seat
from tests.factories import UserFactory, make_schedule

pytestmark = pytest.mark.django_db
HELD, EXPIRED = Reservation.Status.HELD, Reservation.Status.EXPIRED


def hold(user, schedule, number, now):
    return hold_seat(user, schedule, number, now=now)


def available_numbers(schedule, now):
    return [s.number for s in selectors.seat_list_available(schedule=schedule, now=now)]


def test_a_hold_lasts_five_minutes_and_takes_the_seat_off_the_list(schedule, fan):
    now = timezone.now()
    reservation = hold(fan, schedule, 7, now)
    assert reservation.status == HELD
    assert reservation.expires_at == now + timedelta(seconds=300)
    assert reservation.price == 100_000
    assert 7 not in available_numbers(schedule, now)
    assert len(available_numbers(schedule, now)) == 49


def test_second_fan_cannot_hold_a_held_seat(schedule, fan, other_fan):
    now = timezone.now()
    hold(fan, schedule, 7, now)
    with pytest.raises(SeatUnavailable):
        hold(other_fan, schedule, 7, now)


def test_an_expired_hold_is_free_the_moment_it_expires_before_any_job(schedule, fan, other_fan):
    t = timezone.now()
    first = hold(fan, schedule, 7, t)
    ttl = timedelta(seconds=300)
    # Until T+TTL the seat is taken...
    assert 7 not in available_numbers(schedule, t + ttl - timedelta(seconds=1))
    with pytest.raises(SeatUnavailable):
        hold(other_fan, schedule, 7, t + ttl - timedelta(seconds=1))
    # ...at T+TTL it is free in every availability query, and at T+TTL+1 s another fan holds it.
    assert 7 in available_numbers(schedule, t + ttl)
    second = hold(other_fan, schedule, 7, t + ttl + timedelta(seconds=1))
    assert second.status == HELD
    first.refresh_from_db()
    assert first.status == EXPIRED


def test_the_per_concert_hold_ttl_override(schedule, fan):
    schedule.concert.hold_ttl_seconds = 60
    schedule.concert.save()
    now = timezone.now()
    assert hold(fan, schedule, 1, now).expires_at == now + timedelta(seconds=60)


@override_settings(MAX_SEATS_PER_FAN=2)
def test_the_per_fan_limit_counts_live_reservations_per_date(concert, fan):
    schedule, other_date = make_schedule(concert), make_schedule(concert)
    now = timezone.now()
    hold(fan, schedule, 1, now)
    hold(fan, schedule, 2, now)
    with pytest.raises(SeatLimitReached):
        hold(fan, schedule, 3, now)
    hold(fan, other_date, 3, now)  # another date has its own limit
    # An expired hold no longer counts.
    assert hold(fan, schedule, 3, now + timedelta(seconds=301)).status == HELD


def test_the_per_concert_limit_override(schedule, fan):
    schedule.concert.max_seats_per_fan = 1
    schedule.concert.save()
    now = timezone.now()
    hold(fan, schedule, 1, now)
    with pytest.raises(SeatLimitReached):
        hold(fan, schedule, 2, now)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"opened_ago": timedelta(days=-1)},  # opens tomorrow
        {"starts_in": timedelta(hours=2), "closes_before_start": timedelta(hours=3)},  # closed
    ],
)
def test_no_holds_and_no_seats_outside_the_booking_window(concert, fan, kwargs):
    schedule = make_schedule(concert, **kwargs)
    now = timezone.now()
    with pytest.raises(BookingClosed):
        hold(fan, schedule, 1, now)
    assert available_numbers(schedule, now) == []
    assert selectors.schedule_list_bookable(concert_id=concert.id, now=now) == []


def test_a_past_show_is_not_bookable(schedule, fan):
    after_show = schedule.starts_at + timedelta(minutes=1)
    with pytest.raises(BookingClosed):
        hold(fan, schedule, 1, after_show)


def test_seat_numbers_run_1_to_50(schedule, fan):
    with pytest.raises(SeatNotFound):
        hold(fan, schedule, 51, timezone.now())


def test_cancelling_a_hold_frees_the_seat_at_once(schedule, fan, other_fan):
    now = timezone.now()
    reservation = hold(fan, schedule, 9, now)
    cancelled = booking_cancel(user_id=fan.pk, reservation_id=reservation.pk, now=now)
    assert cancelled.reservation.status == Reservation.Status.CANCELLED
    assert cancelled.reservation.end_reason == "cancelled"
    assert 9 in available_numbers(schedule, now)
    assert hold(other_fan, schedule, 9, now).status == HELD
    # Cancelling again changes nothing.
    again = booking_cancel(user_id=fan.pk, reservation_id=reservation.pk, now=now)
    assert again.reservation.status == Reservation.Status.CANCELLED


def test_a_fan_cannot_cancel_someone_elses_hold(schedule, fan, other_fan):
    reservation = hold(fan, schedule, 9, timezone.now())
    with pytest.raises(ReservationNotFound):
        booking_cancel(user_id=other_fan.pk, reservation_id=reservation.pk, now=timezone.now())


def test_a_live_hold_keeps_the_queue_token_alive(concert, schedule, fan):
    now = timezone.now()
    token, _ = queue_services.queue_token_issue(user=fan, concert_id=concert.id, now=now)
    turn_ends = token.active_until
    later = turn_ends - timedelta(seconds=60)
    reservation = hold(fan, schedule, 3, later)
    token.refresh_from_db()
    assert token.active_until == reservation.expires_at > turn_ends
    # Past the original turn, the gate still lets the fan through while the hold lives...
    queue_services.queue_gate_pass(
        key=token.key, user=fan, concert_id=concert.id, now=turn_ends + timedelta(seconds=10)
    )
    # ...and the expiry job leaves it alone.
    assert (
        queue_services.queue_expire_stale(now=turn_ends + timedelta(seconds=10))["active_expired"]
        == 0
    )
    assert QueueToken.objects.get(pk=token.pk).status == "active"


def test_cleanup_job_marks_expired_holds_and_is_idempotent(schedule):
    now = timezone.now()
    for number in range(1, 6):
        hold(UserFactory(), schedule, number, now)
    later = now + timedelta(seconds=301)
    assert services.seat_holds_release_expired(now=later) == 5
    assert services.seat_holds_release_expired(now=later) == 0
    assert Reservation.objects.filter(status=EXPIRED).count() == 5


def test_dates_list_open_dates_with_available_counts_in_time_order(concert, fan):
    late = make_schedule(concert, starts_in=timedelta(days=9))
    early = make_schedule(concert, starts_in=timedelta(days=2))
    make_schedule(concert, opened_ago=timedelta(days=-2))  # not open yet
    full = make_schedule(concert, starts_in=timedelta(days=5))
    now = timezone.now()
    for number in range(1, 51):
        hold(UserFactory(), full, number, now)
    hold(fan, early, 1, now)
    dates = selectors.schedule_list_bookable(concert_id=concert.id, now=now)
    assert [(d.id, d.available_seats) for d in dates] == [(early.id, 49), (late.id, 50)]


def test_a_hold_just_after_the_turn_lapsed_is_refused_and_revives_nothing(concert, schedule, fan):
    """Defect (issue 9): a hold placed after the turn lapsed, before any sweep,
    revived the turn whose slot was already given away."""
    from queueing.exceptions import QueueTokenExpired

    now = timezone.now()
    token = admit(fan, concert.id, now=now)
    lapsed_at = token.active_until
    with pytest.raises(QueueTokenExpired):
        services.seat_hold_create(
            user=fan, schedule_id=schedule.id, seat_number=4, queue_key=token.key, now=lapsed_at
        )
    assert not Reservation.objects.exists()
    assert QueueToken.objects.get(pk=token.pk).active_until == lapsed_at


def test_a_hold_needs_the_fans_own_turn_for_that_concert(concert, schedule, fan, other_fan):
    from queueing.exceptions import QueueTokenInvalid, QueueTokenMissing

    now = timezone.now()
    with pytest.raises(QueueTokenMissing):
        services.seat_hold_create(
            user=fan, schedule_id=schedule.id, seat_number=4, queue_key=None, now=now
        )
    someone_elses = admit(other_fan, concert.id, now=now)
    with pytest.raises(QueueTokenInvalid):
        services.seat_hold_create(
            user=fan, schedule_id=schedule.id, seat_number=4, queue_key=someone_elses.key, now=now
        )
    assert not Reservation.objects.exists()


def test_an_integrity_error_that_is_not_a_lost_seat_race_is_not_called_seat_unavailable(
    schedule, fan
):
    """Defect (issue 9): every IntegrityError in a hold was reported as
    seat_unavailable, hiding real faults behind "that seat was just taken"."""
    from django.db import IntegrityError, connection

    with connection.cursor() as cursor:  # rolled back with the test's transaction
        cursor.execute(
            "ALTER TABLE concerts_reservation ADD CONSTRAINT test_no_price_over_1 "
            "CHECK (price <= 1)"
        )
    with pytest.raises(IntegrityError, match="test_no_price_over_1"):
        hold(fan, schedule, 6, timezone.now())
