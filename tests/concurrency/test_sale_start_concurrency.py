"""A scheduled sale's start under real concurrency, on PostgreSQL (issue 16).

- Two beats start the same sale at once: it starts exactly once (the room's row lock,
  then a re-check). The control takes the lock away and the sale starts twice, the
  second start overwriting the audit record with an empty pre-queue.
- A fan lines up while the start runs: the line-up's statement waits for the line
  lock, then reads whether the sale has started through a VOLATILE function (a
  snapshot of its own), sees the start, and queues behind the pre-queue. The control
  makes that function STABLE (the statement's snapshot, taken before the start
  committed), and the fan is left in a pre-queue that has already been shuffled.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from queueing import selectors, services
from queueing.models import QueueToken, WaitingRoom
from tests.concurrency.helpers import errors, run_concurrently, wait_until_blocked_on_a_lock
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


def a_line_up_waiting_for_the_start(monkeypatch, *, fresh_read: bool):
    """The start has taken the line lock and is shuffling when a fan lines up: the fan's
    statement (its clock still before the on-sale time) waits for the lock, and reads
    the room once the start has committed. Returns the fan's token and the outcomes."""
    concert, start = scheduled_sale(pre_queue=10)
    fan = UserFactory()
    shuffling, finish = threading.Event(), threading.Event()
    real_order = services.pre_queue_order

    def order_slowly(**kwargs):  # called under the exclusive line lock
        shuffling.set()
        assert finish.wait(30)
        return real_order(**kwargs)

    monkeypatch.setattr(services, "pre_queue_order", order_slowly)
    outcome: list = []

    def begin_sale():
        try:
            outcome.append(services.queue_sale_start(concert_id=concert.id, now=start))
        finally:
            connections.close_all()

    def join():
        try:
            outcome.append(
                services.queue_token_issue(
                    user=fan, concert_id=concert.id, now=start - timedelta(seconds=1)
                )[0].status
            )
        except Exception as exc:  # asserted on below
            outcome.append(exc)
        finally:
            connections.close_all()

    if not fresh_read:  # the control: the room read with the statement's own snapshot
        set_volatility("STABLE")
    try:
        starter = threading.Thread(target=begin_sale)
        starter.start()
        assert shuffling.wait(30)  # the start holds the line lock
        joiner = threading.Thread(target=join)
        joiner.start()
        wait_until_blocked_on_a_lock()  # the fan's statement waits for it
        finish.set()
        starter.join(30)
        joiner.join(30)
        assert not joiner.is_alive() and not starter.is_alive()
    finally:
        if not fresh_read:
            set_volatility("VOLATILE")
    return concert, QueueToken.objects.get(user=fan, concert=concert), outcome


def set_volatility(kind: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER FUNCTION queueing_sale_open(bigint) {kind}")


def test_a_fan_lining_up_while_the_sale_starts_queues_behind_the_pre_queue(monkeypatch):
    concert, token, outcome = a_line_up_waiting_for_the_start(monkeypatch, fresh_read=True)
    assert 10 in outcome and "waiting" in outcome
    assert token.status == "waiting"
    assert selectors.queue_position(token=token) == 11  # behind the ten shuffled
    assert not QueueToken.objects.filter(concert=concert, status="pre_queue").exists()


def test_control_with_a_stale_read_of_the_room_a_fan_is_left_in_the_pre_queue(monkeypatch):
    concert, token, outcome = a_line_up_waiting_for_the_start(monkeypatch, fresh_read=False)
    assert 10 in outcome and "pre_queue" in outcome  # the statement's snapshot said
    assert token.status == "pre_queue"  # "not started": the fan is stranded, no place
    assert WaitingRoom.objects.get(pk=concert.pk).sale_started_at is not None
