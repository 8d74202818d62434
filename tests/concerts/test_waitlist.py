"""Waitlists for sold-out dates (issue 16): join, leave, and offers of freed seats."""

from datetime import timedelta

import pytest
from django.utils import timezone

from concerts import selectors, services
from concerts.exceptions import SeatsStillAvailable, SeatUnavailable, WaitlistEntryNotFound
from concerts.models import Reservation, WaitlistEntry
from payments import services as payment_services
from queueing.models import QueueToken
from tests.conftest import admit, hold_seat, token_client
from tests.factories import UserFactory
from wallet import services as wallet_services

pytestmark = pytest.mark.django_db


@pytest.fixture
def sold_out(schedule):
    """Every seat of the date held, each by its own fan: (schedule, holds by seat)."""
    now = timezone.now()
    holds = {n: hold_seat(UserFactory(), schedule, n, now=now) for n in range(1, 51)}
    # They outlast any offer made in a test, so only the seats a test frees come free.
    Reservation.objects.filter(schedule=schedule).update(expires_at=now + timedelta(hours=1))
    return schedule, holds


def join(user, schedule, now=None):
    return services.waitlist_join(user=user, schedule_id=schedule.id, now=now or timezone.now())


def two_fans_waiting(schedule):
    first, second = UserFactory(), UserFactory()
    join(first, schedule)
    join(second, schedule)
    return first, second


def let_go(holds, number, now=None):
    """The fan holding seat `number` cancels the hold: the seat frees."""
    payment_services.booking_cancel(
        user_id=holds[number].user_id, reservation_id=holds[number].pk, now=now or timezone.now()
    )


def test_a_fan_cannot_join_while_the_date_has_a_free_seat(schedule):
    with pytest.raises(SeatsStillAvailable):
        join(UserFactory(), schedule)


def test_one_entry_per_fan_per_date(sold_out):
    schedule, _ = sold_out
    fan = UserFactory()
    first, created = join(fan, schedule)
    again, created_again = join(fan, schedule)
    assert (created, created_again, again.pk) == (True, False, first.pk)
    assert WaitlistEntry.objects.filter(user=fan).count() == 1


def test_a_cancelled_hold_goes_to_the_first_fan_waiting_with_a_turn_to_pay(sold_out):
    schedule, holds = sold_out
    first, second = two_fans_waiting(schedule)
    now = timezone.now()
    let_go(holds, 7, now)

    entry = WaitlistEntry.objects.get(user=first)
    assert entry.status == "offered"
    offer = entry.reservation
    assert (offer.user_id, offer.seat.number, offer.status) == (first.pk, 7, "held")
    assert offer.expires_at == now + timedelta(seconds=schedule.concert.hold_ttl)
    # The offer comes with a turn: an active queue token until the offer ends.
    token = QueueToken.objects.get(user=first, concert=schedule.concert)
    assert (token.status, token.active_until) == ("active", offer.expires_at)
    assert WaitlistEntry.objects.get(user=second).status == "waiting"
    # Nobody else can take the seat while it is offered.
    with pytest.raises(SeatUnavailable):
        hold_seat(UserFactory(), schedule, 7)


def test_the_offered_fan_pays_with_the_turn_that_came_with_the_offer(sold_out):
    schedule, holds = sold_out
    fan = UserFactory()
    wallet_services.wallet_charge(user_id=fan.pk, amount=500_000, now=timezone.now())
    join(fan, schedule)
    services.reservation_release_by_operator(reservation_id=holds[3].pk, now=timezone.now())
    (entry,) = selectors.waitlist_for_user(user_id=fan.pk, now=timezone.now())
    answer = payment_services.payment_submit(
        user=fan, reservation_id=entry.reservation_id, queue_key=entry.offer_token,
        idempotency_key="wl-1", now=timezone.now(),
    )  # fmt: skip
    assert answer.status == 201
    assert Reservation.objects.get(pk=entry.reservation_id).status == "confirmed"
    assert WaitlistEntry.objects.get(pk=entry.pk).status == "offered"  # and booked


def test_a_lapsed_offer_goes_to_the_next_fan(sold_out):
    schedule, holds = sold_out
    first, second = two_fans_waiting(schedule)
    now = timezone.now()
    let_go(holds, 9, now)
    offer = WaitlistEntry.objects.get(user=first).reservation
    later = offer.expires_at + timedelta(seconds=1)
    assert services.seat_holds_release_expired(now=later) >= 1  # the sweep, as beat runs it
    assert WaitlistEntry.objects.get(user=first).status == "lapsed"
    passed_on = WaitlistEntry.objects.get(user=second)
    assert passed_on.status == "offered"
    assert passed_on.reservation.seat.number == 9


def test_a_fan_trying_a_lapsed_offer_seat_first_is_refused_and_the_waitlist_keeps_it(
    sold_out, django_capture_on_commit_callbacks
):
    schedule, holds = sold_out
    first, second = two_fans_waiting(schedule)
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):  # the seat cache learns of it
        let_go(holds, 9, now)
    later = WaitlistEntry.objects.get(user=first).reservation.expires_at + timedelta(seconds=1)
    # Before any sweep, a fan with a turn goes for the seat whose offer just lapsed:
    stranger = UserFactory()
    admit(stranger, schedule.concert_id, now=later)
    with pytest.raises(SeatUnavailable):
        services.seat_hold_create(
            user=stranger, schedule_id=schedule.id, seat_number=9,
            queue_key=QueueToken.objects.get(user=stranger).key, now=later,
        )  # fmt: skip
    assert WaitlistEntry.objects.get(user=second).reservation.seat.number == 9


def test_leaving_the_waitlist_declines_an_open_offer_for_the_next_fan(sold_out):
    schedule, holds = sold_out
    first, second = two_fans_waiting(schedule)
    let_go(holds, 1)
    services.waitlist_leave(user_id=first.pk, schedule_id=schedule.id, now=timezone.now())
    assert WaitlistEntry.objects.get(user=first).status == "left"
    assert WaitlistEntry.objects.get(user=second).reservation.seat.number == 1
    with pytest.raises(WaitlistEntryNotFound):
        services.waitlist_leave(user_id=first.pk, schedule_id=schedule.id, now=timezone.now())


def test_the_api_joins_lists_with_positions_offers_and_leaves(sold_out):
    schedule, holds = sold_out
    ahead, fan = UserFactory(), UserFactory()
    join(ahead, schedule)
    client = token_client(fan)
    joined = client.post(f"/api/v1/schedules/{schedule.id}/waitlist")
    assert joined.status_code == 201
    assert (joined.json()["status"], joined.json()["position"]) == ("waiting", 2)
    assert client.post(f"/api/v1/schedules/{schedule.id}/waitlist").status_code == 200
    for number in (4, 5):  # two seats free: the first to the fan ahead, the next to this fan
        let_go(holds, number)
    (entry,) = client.get("/api/v1/waitlist").json()
    assert entry["status"] == "offered" and entry["position"] is None
    assert entry["offer"]["seat_number"] == 5
    assert entry["offer"]["queue_token"] == QueueToken.objects.get(user=fan).key
    assert client.delete(f"/api/v1/schedules/{schedule.id}/waitlist").status_code == 204
    assert client.get("/api/v1/waitlist").json()[0]["status"] == "left"


def test_the_api_refuses_a_date_with_free_seats(schedule):
    answer = token_client(UserFactory()).post(f"/api/v1/schedules/{schedule.id}/waitlist")
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "seats_available"


def test_operators_see_the_waitlist_in_the_admin(sold_out, operator_client):
    schedule, _ = sold_out
    fan = UserFactory(username="waiting-fan")
    join(fan, schedule)
    page = operator_client.get("/admin/concerts/waitlistentry/?status__exact=waiting")
    assert page.status_code == 200 and "waiting-fan" in page.content.decode()
    entry = WaitlistEntry.objects.get(user=fan)
    assert (
        operator_client.get(f"/admin/concerts/waitlistentry/{entry.pk}/change/").status_code == 200
    )


def test_the_sweeps_sql_and_the_embedded_orm_free_the_same_seats_to_the_same_fans(sold_out):
    """_waitlist_freed_sql (PostgreSQL, one array parameter) and _waitlist_freed_orm
    (make run's SQLite) do the same: lapse the offers that ended, name the freed seats
    of dates with fans waiting."""
    from django.db import transaction

    schedule, holds = sold_out
    two_fans_waiting(schedule)
    let_go(holds, 4)  # an offer to the first fan, then its time runs out
    offer = WaitlistEntry.objects.get(status="offered")
    later = offer.reservation.expires_at + timedelta(seconds=1)
    Reservation.objects.filter(pk__in=[holds[7].pk, holds[9].pk]).update(
        expires_at=later - timedelta(seconds=2)
    )
    ids = [offer.reservation_id, holds[7].pk, holds[9].pk]
    outcomes = []
    for helper in (services._waitlist_freed_sql, services._waitlist_freed_orm):
        with transaction.atomic():
            Reservation.objects.filter(pk__in=ids).update(
                status="expired", ended_at=later, end_reason="expired"
            )
            freed = helper(ids=ids, now=later)
            states = sorted(WaitlistEntry.objects.values_list("id", "status"))
            outcomes.append((freed, states))
            transaction.set_rollback(True)
    assert outcomes[0] == outcomes[1]
    freed, states = outcomes[0]
    assert freed == sorted((schedule.pk, holds[n].seat_id) for n in (4, 7, 9))
    assert ("lapsed" in dict(states).values()) and len(states) == 2
