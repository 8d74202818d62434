"""A fan leaving while an admission makes their token active, on PostgreSQL with real
threads: the leave's one statement decides from the token under its row lock."""

from __future__ import annotations

import threading

import pytest
from django.db import connections, transaction
from django.utils import timezone

from queueing import services
from queueing.models import QueueToken, WaitingRoom
from tests.concurrency.helpers import wait_until_blocked_on_a_lock
from tests.factories import ConcertFactory, UserFactory
from tests.queueing.conftest import counted

pytestmark = pytest.mark.django_db(transaction=True)


def leave_while_admitted() -> tuple[QueueToken, int, list[Exception]]:
    """An admission (an operator's admit-next) makes the fan's waiting token active and
    counts it out of its bucket, and holds its transaction open while the fan's leave
    arrives and waits for the token's lock; then the admission commits."""
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=0)
    now = timezone.now()
    token, _ = services.queue_token_issue(user=UserFactory(), concert_id=concert.id, now=now)
    assert (token.status, counted(concert)) == ("waiting", 1)
    admitted, release, failures = threading.Event(), threading.Event(), []

    def admission() -> None:
        try:
            with transaction.atomic():
                assert services.queue_admit_next(concert_id=concert.id, now=now, count=1)
                admitted.set()
                release.wait(10)
        except Exception as exc:  # noqa: BLE001 - asserted on below
            failures.append(exc)
        finally:
            connections.close_all()

    def leave() -> None:
        try:
            admitted.wait(10)
            services.queue_leave(key=token.key, user_id=token.user_id, now=timezone.now())
        except Exception as exc:  # noqa: BLE001 - asserted on below
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=admission), threading.Thread(target=leave)]
    for thread in threads:
        thread.start()
    try:
        assert admitted.wait(10)
        wait_until_blocked_on_a_lock()  # the leave, on the token the admission holds
    finally:
        release.set()
        for thread in threads:
            thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    token.refresh_from_db()
    return token, counted(concert), failures


def test_a_leave_waiting_for_an_admission_ends_the_turn_and_counts_the_fan_out_once():
    token, in_line, failures = leave_while_admitted()
    assert failures == []
    assert token.status == "left"
    assert in_line == 0


def test_control_without_the_leaves_lock_the_fan_is_counted_out_twice(monkeypatch):
    """Off, the statement decides from its snapshot, taken before it waited: the token
    still looked waiting, so it counted the fan out of the bucket again after the
    admission had. Here the bucket's check constraint refuses the second count (it
    would go below zero), so the fan's leave fails and the turn stays taken; in a
    bucket holding other fans, the count would be one short, silently."""
    monkeypatch.setattr(services, "LEAVE_LOCK", "")
    token, in_line, failures = leave_while_admitted()
    assert [type(f).__name__ for f in failures] == ["IntegrityError"]
    assert "queue_bucket_not_negative" in str(failures[0])
    assert token.status == "active"
    assert in_line == 0
