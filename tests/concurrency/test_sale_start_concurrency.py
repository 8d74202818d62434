"""A scheduled sale's start under real concurrency, on PostgreSQL (issue 16).

- Two beats start the same sale at once: it starts exactly once (the room's row lock,
  then a re-check). The control takes the lock away and the sale starts twice, the
  second start overwriting the audit record with an empty pre-queue.
- A fan joins the pre-queue while the start runs: the start waits for that line-up
  (the line lock, which the line-up takes before it reads the room), so the fan is
  shuffled in. The control skips the line-up's lock, and the fan is left behind in a
  pre-queue that has already been shuffled.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from queueing import selectors, services
from queueing.models import QueueToken, WaitingRoom
from tests.concurrency.helpers import errors, run_concurrently
from tests.factories import ConcertFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def scheduled_sale(pre_queue: int):
    """A sale starting in a minute, with `pre_queue` fans already in its pre-queue."""
    start = timezone.now() + timedelta(minutes=1)
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(
        sale_starts_at=start, pre_queue_minutes=30, max_active=0
    )
    for _ in range(pre_queue):
        services.queue_token_issue(
            user=UserFactory(), concert_id=concert.id, now=start - timedelta(minutes=5)
        )
    return concert, start


def two_beats(concert, start) -> list:
    results = run_concurrently(
        lambda: services.queue_sale_start(concert_id=concert.id, now=start), [(), ()]
    )
    assert errors(results) == []
    return sorted((value for _, value in results), key=str)


def test_two_beats_start_a_sale_exactly_once():
    concert, start = scheduled_sale(pre_queue=40)
    assert two_beats(concert, start) == [40, None]
    room = WaitingRoom.objects.get(pk=concert.pk)
    assert room.pre_queue_size == 40
    line = list(QueueToken.objects.filter(concert=concert).order_by("id"))
    assert [t.status for t in line] == ["waiting"] * 40
    assert [t.user_id for t in line] == services.pre_queue_order(
        seed=room.shuffle_seed, user_ids=[t.user_id for t in line]
    )  # the recorded seed explains the line
    assert [selectors.queue_position(token=t) for t in line] == list(range(1, 41))


def test_control_without_the_room_lock_the_sale_starts_twice(monkeypatch):
    concert, start = scheduled_sale(pre_queue=40)
    both_checked = threading.Barrier(2)

    def unlocked_room(*, concert_id):
        room = WaitingRoom.objects.get(pk=concert_id)  # read, not locked
        both_checked.wait(timeout=30)  # both beats saw "not started"
        return room

    monkeypatch.setattr(services, "_lock_room", unlocked_room)
    outcomes = two_beats(concert, start)
    assert None not in outcomes  # it started twice ...
    assert outcomes == [0, 40]
    # ... and the second start, finding nobody left in the pre-queue, overwrote the
    # audit record: the seed on file no longer explains the line.
    assert WaitingRoom.objects.get(pk=concert.pk).pre_queue_size == 0


def wait_until_blocked_on_a_lock(deadline: float = 30) -> None:
    """Until another session waits for a lock (an event, with a deadline)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            )
            if cursor.fetchone()[0]:
                return
        time.sleep(0.02)
    raise AssertionError("nobody waited for the lock")


def a_line_up_in_flight_during_the_start(monkeypatch, *, line_up_locks: bool):
    """One fan's line-up has read the room (not started) and is about to make its
    pre-queue token when the sale starts. Returns that fan's token afterwards."""
    concert, start = scheduled_sale(pre_queue=10)
    fan = UserFactory()
    inside, go = threading.Event(), threading.Event()
    real_create = QueueToken.objects.create

    def create_when_told(**fields):
        inside.set()
        assert go.wait(30)
        return real_create(**fields)

    monkeypatch.setattr(QueueToken.objects, "create", create_when_told)
    if not line_up_locks:
        real_lock_line = services._lock_line

        def lock_line_but_not_for_line_ups(*, concert_id, shared=False):
            if not shared:
                real_lock_line(concert_id=concert_id)

        monkeypatch.setattr(services, "_lock_line", lock_line_but_not_for_line_ups)
    outcome: list = []

    def join():
        try:
            outcome.append(
                services.queue_token_issue(
                    user=fan, concert_id=concert.id, now=start - timedelta(seconds=1)
                )
            )
        except Exception as exc:  # asserted on below
            outcome.append(exc)
        finally:
            connections.close_all()

    def begin_sale():
        try:
            outcome.append(services.queue_sale_start(concert_id=concert.id, now=start))
        finally:
            connections.close_all()

    joiner = threading.Thread(target=join)
    joiner.start()
    assert inside.wait(30)  # the line-up read the room: the sale has not started
    starter = threading.Thread(target=begin_sale)
    starter.start()
    if line_up_locks:
        wait_until_blocked_on_a_lock()  # the start waits for the line-up in flight
    else:
        starter.join(30)  # nothing makes it wait
    go.set()
    joiner.join(30)
    starter.join(30)
    assert not joiner.is_alive() and not starter.is_alive()
    return concert, QueueToken.objects.get(user=fan, concert=concert), outcome


def test_a_fan_joining_the_pre_queue_while_the_sale_starts_is_shuffled_in(monkeypatch):
    concert, token, outcome = a_line_up_in_flight_during_the_start(monkeypatch, line_up_locks=True)
    assert 11 in outcome  # the start counted the fan in flight
    assert token.status == "waiting"
    assert 1 <= selectors.queue_position(token=token) <= 11
    assert not QueueToken.objects.filter(concert=concert, status="pre_queue").exists()


def test_control_without_the_line_ups_lock_a_fan_is_left_in_the_pre_queue(monkeypatch):
    concert, token, outcome = a_line_up_in_flight_during_the_start(monkeypatch, line_up_locks=False)
    assert 10 in outcome  # the start ran without the fan in flight ...
    assert token.status == "pre_queue"  # ... who is stranded, with no place, after it
    assert WaitingRoom.objects.get(pk=concert.pk).sale_started_at is not None
