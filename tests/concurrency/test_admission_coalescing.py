"""After-commit admission runs coalesce (queueing.services._admit_soon): a commit
that frees a slot while a run is going leaves a mark and returns at once, and the
running one looks for the mark after its commit. A request runs one round at most:
the next round goes to a Celery worker (queueing.admit_due), so no fan's request
pays for the rounds other fans' commits ask for. Real threads, each with its own
PostgreSQL connection, and a real Celery worker on the run's own Redis queue; the
control shows that without a second round the freed slot is left behind.
"""

from __future__ import annotations

import threading
import time

import pytest
from celery import signals
from celery.contrib.testing.worker import start_worker
from django.db import connections, transaction
from django.test import override_settings
from django.utils import timezone
from kombu.exceptions import OperationalError

from config.celery import app
from queueing import services
from queueing.models import QueueToken, WaitingRoom
from tests.concurrency.helpers import wait_until_blocked_on_a_lock
from tests.factories import ConcertFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def full_room_with_a_line():
    """Capacity 2, both turns taken, two fans waiting behind them."""
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=2)
    now = timezone.now()
    tokens = [
        services.queue_token_issue(user=UserFactory(), concert_id=concert.id, now=now)[0]
        for _ in range(4)
    ]
    assert [t.status for t in tokens] == ["active", "active", "waiting", "waiting"]
    return concert, tokens


def status(token) -> str:
    return QueueToken.objects.values_list("status", flat=True).get(pk=token.pk)


def run_held_open(concert, monkeypatch):
    """A run for the concert in a thread of its own, stopped after it has read the
    room (full: nothing to admit) and before it commits, still holding the run lock.
    Returns (the thread, "it has read the room", "let it commit")."""
    real = services._admit_locked
    inside, go, calls = threading.Event(), threading.Event(), []

    def admit_then_wait(**kwargs):
        admitted = real(**kwargs)
        calls.append(admitted)
        if len(calls) == 1:  # the first round only
            inside.set()
            assert go.wait(30), "the test never let the run commit"
        return admitted

    monkeypatch.setattr(services, "_admit_locked", admit_then_wait)

    def run():
        try:
            services._admit_soon(concert_id=concert.id, now=timezone.now())
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert inside.wait(30), "the run did not start"
    return thread, go, calls


def wait_for(predicate, seconds: float = 30) -> bool:
    """Whether `predicate()` came true within `seconds` (what a worker does is seen
    from outside; nothing here asserts how long it took)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def celery_worker():
    """A real Celery worker (in a thread of this process) on this run's own queue
    (config/test_settings.py), closing its database connection after each task."""

    def close_connections(**kwargs):
        connections.close_all()

    signals.task_postrun.connect(close_connections, weak=False)
    try:
        with start_worker(app, perform_ping_check=False, shutdown_timeout=30) as worker:
            yield worker
    finally:
        signals.task_postrun.disconnect(close_connections)


def test_a_slot_freed_while_a_run_is_going_is_refilled_by_a_worker(monkeypatch, request):
    concert, (first, _, third, fourth) = full_room_with_a_line()
    thread, go, calls = run_held_open(concert, monkeypatch)
    assert calls == [[]]  # it read a full room
    # A turn ends meanwhile. Its after-commit admission finds the run going: it
    # marks the concert and returns at once, without waiting for the room's lock.
    services.queue_token_leave(token=first, now=timezone.now())
    assert status(third) == "waiting"
    go.set()
    thread.join(30)
    assert not thread.is_alive()
    # The running request looked for the mark after its commit and, the room being
    # busy, sent the next round to a worker instead of going round itself.
    assert len(calls) == 1
    assert status(third) == "waiting"
    request.getfixturevalue("celery_worker")  # a worker starts and takes the task
    assert wait_for(lambda: status(third) == "active")
    assert len(calls) == 2  # the worker's round
    assert status(fourth) == "waiting"  # capacity never exceeded, FIFO kept


def test_if_the_round_cannot_be_sent_to_a_worker_the_request_goes_round_itself(monkeypatch):
    concert, (first, _, third, fourth) = full_room_with_a_line()

    def broker_refuses(*args, **kwargs):
        raise OperationalError("the broker is gone")

    monkeypatch.setattr(services.celery_app, "send_task", broker_refuses)
    thread, go, calls = run_held_open(concert, monkeypatch)
    services.queue_token_leave(token=first, now=timezone.now())
    go.set()
    thread.join(30)
    assert len(calls) == 2
    assert status(third) == "active"
    assert status(fourth) == "waiting"


def test_a_worker_goes_round_while_commits_keep_marking_the_concert(monkeypatch, celery_worker):
    """The worker's side: each of its rounds may find new marks; it goes round until
    none is left, so slots freed during its rounds are refilled too."""
    concert, (first, second, third, fourth) = full_room_with_a_line()
    real, rounds = services._admit_locked, []

    def leave(token):
        try:
            services.queue_token_leave(token=token, now=timezone.now())
        finally:
            connections.close_all()

    def admit_and_free_another(**kwargs):
        admitted = real(**kwargs)
        rounds.append(admitted)
        if len(rounds) == 1:
            # Another fan's turn ends (its own request, its own connection) while
            # this round holds the run lock: that commit marks the concert, returns.
            other = threading.Thread(target=leave, args=(second,))
            other.start()
            other.join(30)
        return admitted

    # The first round's slot: the leave below runs admission itself (no run going).
    services.queue_token_leave(token=first, now=timezone.now())
    assert status(third) == "active"
    monkeypatch.setattr(services, "_admit_locked", admit_and_free_another)
    app.send_task(services.ADMIT_DUE_TASK, kwargs={"concert_id": concert.id})
    assert wait_for(lambda: status(fourth) == "active")
    assert len(rounds) == 2 and rounds[1] == [fourth.pk]


def test_control_without_the_second_round_the_freed_slot_is_left_behind(monkeypatch):
    concert, (first, _, third, _) = full_room_with_a_line()
    monkeypatch.setattr(services, "_due_again", lambda client, due: False)
    thread, go, calls = run_held_open(concert, monkeypatch)
    services.queue_token_leave(token=first, now=timezone.now())
    go.set()
    thread.join(30)
    assert len(calls) == 1
    assert status(third) == "waiting"  # until beat's next run, or the next freed slot


def test_with_no_run_going_the_commit_runs_its_own_admission():
    concert, (first, _, third, _) = full_room_with_a_line()
    services.queue_token_leave(token=first, now=timezone.now())
    assert status(third) == "active"  # right after the commit, in the same request


def test_with_redis_down_every_commit_runs_its_own_admission():
    from tests.config.test_redis_down import DOWN

    concert, (first, _, third, _) = full_room_with_a_line()
    with override_settings(CACHES=DOWN):
        services.queue_token_leave(token=first, now=timezone.now())
    assert status(third) == "active"


def hold_the_room_lock(concert):
    """Another admission (a line-up's run, beat's, an operator's) holding the room's
    lock in a thread of its own until told. Returns (the thread, "let it go")."""
    locked, go = threading.Event(), threading.Event()

    def hold():
        try:
            with transaction.atomic():
                services._lock_room(concert_id=concert.id)
                locked.set()
                assert go.wait(30), "the test never let the room go"
        finally:
            connections.close_all()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert locked.wait(30), "the room was not locked"
    return thread, go


def leave_in_a_thread(token):
    done = threading.Event()

    def leave():
        try:
            services.queue_token_leave(token=token, now=timezone.now())
            done.set()
        finally:
            connections.close_all()

    thread = threading.Thread(target=leave, daemon=True)
    thread.start()
    return thread, done


def test_a_commit_finding_the_room_locked_sends_its_round_to_a_worker_and_never_waits(request):
    """The request's round takes the room's lock only if it is free: behind another
    admission it would wait (100-650 ms in the 1,000-fan rehearsal), so the round
    goes to a worker, which waits for the lock instead."""
    concert, (first, _, third, fourth) = full_room_with_a_line()
    holder, go = hold_the_room_lock(concert)
    leaver, left = leave_in_a_thread(first)
    # The leave's request ends while the room is still locked: it did not wait.
    leaver.join(30)
    assert left.is_set() and holder.is_alive()
    assert status(third) == "waiting"
    go.set()
    holder.join(30)
    request.getfixturevalue("celery_worker")
    assert wait_for(lambda: status(third) == "active")
    assert status(fourth) == "waiting"


def test_control_a_round_that_waits_for_the_room_holds_the_request(monkeypatch):
    real = services._admit_round
    monkeypatch.setattr(services, "_admit_round", lambda **kw: real(**{**kw, "wait": True}))
    concert, (first, _, third, _) = full_room_with_a_line()
    holder, go = hold_the_room_lock(concert)
    leaver, left = leave_in_a_thread(first)
    wait_until_blocked_on_a_lock()
    assert not left.is_set()  # the request is waiting for the room, after its commit
    go.set()
    leaver.join(30)
    holder.join(30)
    assert left.is_set() and status(third) == "active"  # its own round, at last
