"""Waitlist offers under real concurrency, on PostgreSQL (issue 16): a freed seat is
never offered to two fans, no fan is offered two seats, and nobody outside the
waitlist takes a seat while the waitlist waits for it.

The guard: each offer locks the first waiting entry with SKIP LOCKED, inside the
transaction that frees the seat, and inserts the hold under the one-live-hold-per-
seat constraint. The control reads the first entry without the lock, and two
sweeps freeing seats at once offer the same fan two seats.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db.models import Count
from django.utils import timezone

from concerts import services
from concerts.exceptions import SeatUnavailable
from concerts.models import Reservation, WaitlistEntry
from queueing.models import QueueToken
from tests.concurrency.helpers import errors, run_concurrently
from tests.conftest import admit
from tests.factories import (
    ConcertFactory,
    UserFactory,
    lapsed_holds_on_every_seat,
    make_schedule,
)

pytestmark = pytest.mark.django_db(transaction=True)


def lapsed_sell_out_with_a_waitlist(waiting: int):
    """A date whose 50 seats are all held by holds that have just lapsed (nobody has
    swept them yet), and `waiting` fans on its waitlist."""
    concert = ConcertFactory()
    schedule = make_schedule(concert)
    then = timezone.now() - timedelta(minutes=10)
    lapsed_holds_on_every_seat(schedule, then=then)
    fans = UserFactory.create_batch(waiting)
    for fan in fans:
        WaitlistEntry.objects.create(user=fan, schedule=schedule, created_at=then)
    return schedule, fans


def live_holds_per_seat(schedule) -> Counter:
    rows = (
        Reservation.objects.filter(schedule=schedule, status__in=["held", "confirmed"])
        .values("seat__number").annotate(n=Count("id"))
    )  # fmt: skip
    return Counter({row["seat__number"]: row["n"] for row in rows})


def test_freed_seats_go_once_each_to_the_waitlist_in_order_and_to_nobody_else():
    schedule, fans = lapsed_sell_out_with_a_waitlist(waiting=60)
    now = timezone.now()
    strangers = UserFactory.create_batch(16)
    keys = {s.pk: admit(s, schedule.concert_id, now=now).key for s in strangers}

    def sweep():
        return services.seat_holds_release_expired(now=now, batch_size=5)

    def try_a_seat(stranger):
        try:
            services.seat_hold_create(
                user=stranger, schedule_id=schedule.id, seat_number=random.randint(1, 50),
                queue_key=keys[stranger.pk], now=now,
            )  # fmt: skip
            return "held"
        except SeatUnavailable:
            return "refused"

    calls = [(sweep, ()), (sweep, ())] + [(try_a_seat, (s,)) for s in strangers]
    results = run_concurrently(lambda fn, args: fn(*args), calls)
    assert errors(results) == []
    assert all(value == "refused" for _, value in results[2:])  # nobody jumped the waitlist
    assert live_holds_per_seat(schedule) == Counter({n: 1 for n in range(1, 51)})
    offered = list(WaitlistEntry.objects.filter(schedule=schedule, status="offered"))
    assert sorted(e.user_id for e in offered) == sorted(f.pk for f in fans[:50])  # in order
    assert all(e.reservation.user_id == e.user_id for e in offered)
    assert len({e.reservation_id for e in offered}) == 50  # one seat each
    holders = Reservation.objects.filter(schedule=schedule, status="held").values("user_id")
    assert Counter(r["user_id"] for r in holders).most_common(1)[0][1] == 1
    assert WaitlistEntry.objects.filter(schedule=schedule, status="waiting").count() == 10
    turns = QueueToken.objects.filter(concert=schedule.concert, user__in=fans[:50])
    assert set(turns.values_list("status", flat=True)) == {"active"}  # each with a turn


def test_control_without_locking_the_entry_one_fan_is_offered_two_seats(monkeypatch):
    schedule, fans = lapsed_sell_out_with_a_waitlist(waiting=60)
    now = timezone.now()
    both_read = threading.Barrier(2)
    first_call = threading.local()

    def unlocked_first_waiting(*, schedule_id):
        entry = (
            WaitlistEntry.objects.filter(schedule_id=schedule_id, status="waiting")
            .order_by("id")
            .first()
        )
        if not getattr(first_call, "done", False):
            first_call.done = True
            both_read.wait(timeout=30)  # two offers in flight read the same first fan
        return entry

    monkeypatch.setattr(services, "_waitlist_first_waiting", unlocked_first_waiting)
    results = run_concurrently(
        lambda: services.seat_holds_release_expired(now=now, batch_size=5), [(), ()]
    )
    assert errors(results) == []
    holders = Counter(
        Reservation.objects.filter(schedule=schedule, status="held").values_list(
            "user_id", flat=True
        )
    )
    assert holders[fans[0].pk] == 2  # the first fan was offered two seats ...
    offered = WaitlistEntry.objects.filter(schedule=schedule, status="offered").count()
    assert offered < 50  # ... so fewer fans got an offer than seats were freed
