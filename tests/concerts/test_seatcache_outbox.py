"""A seat-map invalidation that cannot reach Redis is kept in PostgreSQL and
delivered by beat (config.outbox, issue 13): other processes that still reach Redis
must not go on serving the old seat map until it expires (MAX_AGE)."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import override_settings
from django.utils import timezone

from concerts import seatcache, selectors
from concerts.models import Seat
from config import outbox, tasks
from config.models import PendingForget
from tests.concerts.test_seatcache import free
from tests.config.test_redis_down import DOWN
from tests.conftest import hold_seat
from tests.factories import UserFactory, make_schedule
from tests.faults.conftest import in_a_process_without_redis

pytestmark = pytest.mark.django_db(transaction=True)


def price_of_seat_one(schedule) -> int:
    return (
        selectors.schedule_availability(schedule_id=schedule.id, now=timezone.now()).seats[0].price
    )


def kept() -> list[tuple[str, str]]:
    return list(PendingForget.objects.order_by("pk").values_list("kind", "cache_key"))


def reprice_in_a_process_without_redis(schedule, price: int) -> None:
    """An operator's price change, saved in a process whose Redis is a closed port:
    its bump after commit cannot reach Redis, while this process still reads the
    cached seat map."""
    in_a_process_without_redis(
        "from concerts.models import Seat; "
        f"seat = Seat.objects.get(schedule_id={schedule.id}, number=1); "
        f"seat.price = {price}; seat.save()"
    )


def test_a_bump_that_cannot_reach_redis_is_delivered_by_beat_across_processes(date):
    assert price_of_seat_one(date) == 100_000  # cached in the shared Redis
    reprice_in_a_process_without_redis(date, 120_000)
    assert kept() == [("seats", str(date.id))]
    # Control: until it is delivered, this process (which reaches Redis) still serves
    # the old answer from the cache; the delivery is what makes it current.
    assert price_of_seat_one(date) == 100_000
    assert tasks.deliver_pending_forgets() == 1
    assert kept() == []
    assert price_of_seat_one(date) == 120_000


def test_with_the_breaker_open_a_hold_keeps_its_bump_at_once_and_beat_delivers_it(date):
    """A blip a moment ago opened this process's breaker: the hold's bump is not tried
    (a bump comes with every hold, and must not wait for a timeout), it is kept."""
    assert 4 in free(date)  # cached
    cache._cache.mark_down(OSError("a blip a moment ago"))
    hold_seat(UserFactory(), date, 4)
    assert kept() == [("seats", str(date.id))]
    cache._cache._down_until = 0  # the breaker closes again
    assert 4 in free(date)  # the control: stale until the bump is delivered
    assert tasks.deliver_pending_forgets() == 1
    assert 4 not in free(date)


def test_pending_bumps_wait_while_redis_is_down_then_go_out(date):
    assert 6 in free(date)
    with override_settings(CACHES=DOWN):
        hold_seat(UserFactory(), date, 6)
        assert kept() == [("seats", str(date.id))]
        assert tasks.deliver_pending_forgets() == 0  # still down: kept for the next run
    assert kept() == [("seats", str(date.id))]
    assert tasks.deliver_pending_forgets() == 1
    assert 6 not in free(date)


def test_an_outage_backlog_goes_in_one_run_with_one_bump_per_date(date, monkeypatch):
    """A bump per hold during an outage, for a few dates: one delivery of a date covers
    every row kept for it before the run, so the backlog does not drain a batch a run."""
    other = make_schedule(date.concert)
    for _ in range(30):
        outbox.keep("seats", [str(date.id), str(other.id)])
    sent: list = []
    real = seatcache._bump_in_redis
    monkeypatch.setattr(seatcache, "_bump_in_redis", lambda ids: sent.append(ids) or real(ids))
    assert outbox.deliver(batch=10) == 60
    assert kept() == []
    assert sent == [sorted([date.id, other.id])]


def test_a_row_kept_after_the_run_read_the_table_waits_for_the_next_run(date, monkeypatch):
    """The run's deletion reaches only rows it could see when it began: a bump kept
    while the run is delivering may be for a commit after the delivery."""
    outbox.keep("seats", [str(date.id)])
    real = seatcache._bump_in_redis

    def bump_while_another_commit_keeps_one(ids):
        outbox.keep("seats", [str(date.id)])
        return real(ids)

    monkeypatch.setattr(seatcache, "_bump_in_redis", bump_while_another_commit_keeps_one)
    assert outbox.deliver() == 1
    assert kept() == [("seats", str(date.id))]


def test_a_kind_nobody_delivers_waits(date):
    outbox.keep("nobody", ["x"])
    outbox.keep("seats", [str(date.id)])
    assert outbox.deliver() == 1
    assert kept() == [("nobody", "x")]


def test_without_redis_at_all_nothing_is_kept(date, settings):
    """The embedded file cache (`make run`) has no seat cache: every read is a
    PostgreSQL read, and there is nothing to invalidate."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    seat = Seat.objects.get(schedule=date, number=2)
    seat.price = 90_000
    seat.save()
    assert kept() == []
