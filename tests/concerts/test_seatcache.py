"""A date's available seats answered from Redis (issue 13), and always current:
every write that frees or takes a seat invalidates it after commit, and an expired
hold is free the moment it expires with no write at all."""

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from concerts import seatcache, selectors
from concerts.models import Reservation, Seat
from config.errors import DomainError
from payments import services as payment_services
from tests.conftest import admit, admitted_client, hold_seat
from tests.factories import UserFactory, make_schedule

pytestmark = pytest.mark.django_db(transaction=True)


def free(schedule, now=None):
    return [
        s.number
        for s in selectors.seat_list_available(schedule=schedule, now=now or timezone.now())
    ]


def test_a_repeat_read_and_a_revalidation_need_no_sql(date):
    client = admitted_client(UserFactory(), date.concert)
    first = client.get(f"/api/v1/schedules/{date.id}/seats")
    assert first.status_code == 200
    with CaptureQueriesContext(connection) as queries:
        again = client.get(f"/api/v1/schedules/{date.id}/seats")
        revalidated = client.get(
            f"/api/v1/schedules/{date.id}/seats", HTTP_IF_NONE_MATCH=first["ETag"]
        )
    assert again.json() == first.json()
    assert revalidated.status_code == 304
    assert len(queries) == 0  # authentication, gate and seats all answered by Redis


def test_a_new_hold_and_a_cancel_are_seen_on_the_next_read(date):
    fan = UserFactory()
    assert 7 in free(date)  # cached now
    reservation = hold_seat(fan, date, 7)
    assert 7 not in free(date)
    payment_services.booking_cancel(
        user_id=fan.pk, reservation_id=reservation.pk, now=timezone.now()
    )
    assert 7 in free(date)


def test_an_expired_hold_is_free_the_moment_it_expires_though_nothing_was_written(date):
    reservation = hold_seat(UserFactory(), date, 3)
    assert 3 not in free(date)  # cached, with the hold's end as its limit
    after = reservation.expires_at + timedelta(milliseconds=1)
    assert 3 in free(date, now=after)
    assert Reservation.objects.get(pk=reservation.pk).status == "held"  # no job has run


def test_an_operator_price_change_is_seen_at_once(date):
    before = selectors.schedule_availability(schedule_id=date.id, now=timezone.now())
    assert before.seats[0].price == 100_000
    seat = Seat.objects.get(schedule=date, number=1)
    seat.price = 120_000
    seat.save()
    after = selectors.schedule_availability(schedule_id=date.id, now=timezone.now())
    assert after.seats[0].price == 120_000


def test_an_answer_read_before_a_write_is_never_kept_after_it(date):
    """A reader reads the version, then PostgreSQL; a hold commits and bumps in between."""
    answer, seen = seatcache.read(date.id, now=timezone.now())
    assert answer is None
    stale = selectors._availability_answer(schedule=date, now=timezone.now())  # seat 5 free
    hold_seat(UserFactory(), date, 5)  # commits and bumps
    seatcache.store(date.id, seen_version=seen, answer=stale)  # too late: refused
    assert 5 not in free(date)


def test_control_an_answer_stored_under_the_version_at_store_time_goes_stale(date, monkeypatch):
    """Store the answer under the version current when it is stored (not the one seen
    before reading PostgreSQL), and the same interleaving serves a taken seat as free."""
    late = (
        "redis.call('HSET', KEYS[1], 'dv', redis.call('HGET', KEYS[1], 'v') or '0',"
        " 'data', ARGV[2]) return 1"
    )
    monkeypatch.setattr(seatcache, "_STORE", late)
    answer, seen = seatcache.read(date.id, now=timezone.now())
    stale = selectors._availability_answer(schedule=date, now=timezone.now())
    hold_seat(UserFactory(), date, 5)
    seatcache.store(date.id, seen_version=seen, answer=stale)
    assert 5 in free(date)  # wrong: the version rule is what prevents it


@override_settings(
    CACHES={
        "default": {
            "BACKEND": "config.cache.PooledRedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "KEY_PREFIX": "redis-down-test",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
)
def test_with_redis_down_every_read_is_a_postgresql_read(date):
    hold_seat(UserFactory(), date, 9)
    assert 9 not in free(date)
    assert len(free(date)) == 49


def test_the_seats_body_is_what_the_documented_serializer_says(date):
    from concerts.api import SeatsOutput, seats_body

    hold_seat(UserFactory(), date, 4)
    seats = selectors.seat_list_available(schedule=date, now=timezone.now())
    assert seats_body(date.id, seats) == SeatsOutput({"schedule_id": date.id, "seats": seats}).data


# --- a hold of a visibly taken seat is refused from the cached seats ---------------


def try_hold(fan, token, date, number, now=None):
    from concerts import services

    try:
        services.seat_hold_create(
            user=fan, schedule_id=date.id, seat_number=number, queue_key=token.key,
            now=now or timezone.now(),
        )  # fmt: skip
        return "held"
    except DomainError as exc:
        return exc.code


@pytest.fixture
def taken(date):
    """Seat 5 held by its owner; another fan admitted. The cache is cold."""
    owner = UserFactory()
    held = hold_seat(owner, date, 5)
    other = UserFactory()
    return owner, held, other, admit(other, date.concert_id)


def test_a_hold_of_a_taken_seat_fills_the_cache_then_needs_no_sql(date, taken):
    owner, held, other, token = taken
    with CaptureQueriesContext(connection) as first:
        assert try_hold(other, token, date, 5) == "seat_unavailable"
    assert len(first) == 2  # the seat's holder, then the date's seats to cache
    owners_turn = admit(owner, date.concert_id)
    with CaptureQueriesContext(connection) as again:
        assert try_hold(other, token, date, 5) == "seat_unavailable"
        assert try_hold(owner, owners_turn, date, 5) == "seat_already_yours"
    assert len(again) == 0  # the seats and the turn both from Redis


def test_control_a_cold_cache_reads_the_holder_from_postgresql_every_time(date, taken):
    _, _, other, token = taken
    for _ in range(2):
        seatcache.bump([date.id])  # as a write on the date does
        with CaptureQueriesContext(connection) as queries:
            assert try_hold(other, token, date, 5) == "seat_unavailable"
        assert len(queries) == 2


def test_a_seat_the_cache_saw_taken_is_held_once_it_frees(date, taken):
    owner, held, other, token = taken
    assert try_hold(other, token, date, 5) == "seat_unavailable"  # cached as taken
    payment_services.booking_cancel(user_id=owner.pk, reservation_id=held.pk, now=timezone.now())
    assert try_hold(other, token, date, 5) == "held"


def test_a_seat_the_cache_saw_held_is_free_the_moment_the_hold_expires(date, taken):
    _, held, other, token = taken
    assert try_hold(other, token, date, 5) == "seat_unavailable"  # cached as taken
    after = held.expires_at + timedelta(milliseconds=1)
    assert try_hold(other, token, date, 5, now=after) == "held"


def test_with_redis_down_a_taken_seat_is_refused_from_postgresql(date, taken):
    from tests.config.test_redis_down import DOWN

    _, _, other, token = taken
    with override_settings(CACHES=DOWN):
        with CaptureQueriesContext(connection) as queries:
            assert try_hold(other, token, date, 5) == "seat_unavailable"
        assert any("concerts_reservation" in q["sql"] for q in queries.captured_queries)


def test_a_cached_date_is_the_instance_keywords_would_make(date):
    from concerts.models import Schedule

    answer = selectors._availability_answer(schedule=date, now=timezone.now())
    cached = selectors._cached_schedule(date.id, answer)
    by_keywords = Schedule(
        id=date.id, concert_id=date.concert_id, starts_at=date.starts_at,
        booking_opens_at=date.booking_opens_at, booking_closes_at=date.booking_closes_at,
    )  # fmt: skip
    columns = [field.attname for field in Schedule._meta.concrete_fields]
    assert [getattr(cached, c) for c in columns] == [getattr(by_keywords, c) for c in columns]
    assert cached.created_at is None and cached._state.adding


def test_an_answer_is_decoded_once_per_process_until_the_date_changes(date):
    """Every fan reads the same bytes until the next write: decoded once. A write
    brings new bytes, so a new answer (never the old one from the memo)."""
    now = timezone.now()
    free(date, now)  # the answer cached in Redis
    first, _ = seatcache.read(date.id, now=now)
    again, _ = seatcache.read(date.id, now=now)
    assert first is again and 5 in [n for n, _ in first["seats"]]
    hold_seat(UserFactory(), date, 5)
    assert 5 not in free(date)
    changed, _ = seatcache.read(date.id, now=timezone.now())
    assert changed is not first and 5 not in [n for n, _ in changed["seats"]]


def test_the_decoded_answers_stay_bounded(monkeypatch):
    monkeypatch.setattr(seatcache, "_DECODED_MAX", 3)
    monkeypatch.setattr(seatcache, "_decoded_answers", {})
    for n in range(10):
        assert seatcache._decoded(b'{"n": %d}' % n) == {"n": n}
        assert len(seatcache._decoded_answers) <= 3


def test_a_cached_date_is_built_and_rendered_once_until_it_changes(date):
    """Every fan reading the same cached seats gets one shared, read-only answer,
    rendered once; a write brings a new answer, built and rendered anew."""
    from concerts.api import _seats_rendered

    now = timezone.now()
    selectors.schedule_availability(schedule_id=date.id, now=now)  # cached in Redis
    first = selectors.schedule_availability(schedule_id=date.id, now=now)
    again = selectors.schedule_availability(schedule_id=date.id, now=now)
    assert first is again and first.shared and isinstance(first.seats, tuple)
    assert _seats_rendered(date.id, first) is _seats_rendered(date.id, again)
    etag, body, rendered = _seats_rendered(date.id, first)
    assert rendered == json.dumps(body, separators=(",", ":")).encode()
    hold_seat(UserFactory(), date, 5)
    changed = selectors.schedule_availability(schedule_id=date.id, now=timezone.now())
    assert changed is not first and 5 not in [s.number for s in changed.seats]
    assert _seats_rendered(date.id, changed)[0] != etag


def test_a_date_read_from_postgresql_is_not_kept(date):
    """With Redis down every read is PostgreSQL's own answer, never shared, so
    nothing is kept for it."""
    from concerts import api
    from tests.config.test_redis_down import DOWN

    with override_settings(CACHES=DOWN):
        availability = selectors.schedule_availability(schedule_id=date.id, now=timezone.now())
    kept = len(api._rendered)
    api._seats_rendered(date.id, availability)
    assert not availability.shared and len(api._rendered) == kept


def test_a_shared_date_closed_for_booking_shows_no_seats(date):
    """The booking window is checked on every read, shared answer or not."""
    now = timezone.now()
    selectors.schedule_availability(schedule_id=date.id, now=now)
    assert selectors.schedule_availability(schedule_id=date.id, now=now).seats
    after_close = date.booking_closes_at + timedelta(seconds=1)
    assert selectors.schedule_availability(schedule_id=date.id, now=after_close).seats == ()


def test_the_built_and_rendered_answers_stay_bounded(date, monkeypatch):
    from concerts import api
    from config.memo import KeptFor

    monkeypatch.setattr(selectors, "_built", KeptFor(2))
    monkeypatch.setattr(api, "_rendered", KeptFor(2))
    answer = {"concert_id": date.concert_id, "starts_at": 0, "booking_opens_at": 0,
              "booking_closes_at": 0, "seats": [[1, 100]]}  # fmt: skip
    for _ in range(5):
        built = selectors._built_from_cache(date.id, dict(answer))
        api._seats_rendered(date.id, built)
        assert len(selectors._built) <= 2 and len(api._rendered) <= 2


def test_a_kept_value_is_for_that_very_object_only():
    from config.memo import KeptFor

    kept = KeptFor(8)
    first, twin = {"a": 1}, {"a": 1}
    kept.keep(first, "derived")
    assert kept.get(first) == "derived" and kept.get(twin) is None  # equal is not same


def test_two_dates_with_the_same_answer_are_never_mixed_up(date):
    """Two dates whose cached answers decode to one object (the same bytes) each get
    their own date back."""
    other = make_schedule(date.concert)
    answer = {"concert_id": date.concert_id, "starts_at": 0, "booking_opens_at": 0,
              "booking_closes_at": 0, "seats": [[1, 100]]}  # fmt: skip
    assert selectors._built_from_cache(date.id, answer).schedule.pk == date.id
    assert selectors._built_from_cache(other.id, answer).schedule.pk == other.id
