"""After-commit admission runs coalesce (queueing.services._admit_soon): a commit
that frees a slot while a run is going leaves a mark and returns at once, and the
running one goes round again for it after its commit. Real threads, each with its
own PostgreSQL connection; the control shows that without the second round the
freed slot is left behind.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connections
from django.test import override_settings
from django.utils import timezone

from queueing import services
from queueing.models import QueueToken, WaitingRoom
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


def test_a_slot_freed_while_a_run_is_going_is_refilled_by_that_run(monkeypatch):
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
    # The running one looked for the mark after its commit and went round again.
    assert len(calls) == 2
    assert status(third) == "active"
    assert status(fourth) == "waiting"  # capacity never exceeded, FIFO kept


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
