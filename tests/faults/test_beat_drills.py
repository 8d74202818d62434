"""Fault drills for the beat jobs (issue 14): nothing is lost when beat stops, runs
late, or runs twice at once."""

from datetime import timedelta

import pytest
from django.utils import timezone

from concerts import selectors as concert_selectors
from concerts import services as concert_services
from concerts.models import Reservation
from queueing import services as queue_services
from queueing import tasks as queue_tasks
from queueing.models import QueueToken, WaitingRoom
from tests.concurrency.helpers import errors, run_concurrently
from tests.factories import ConcertFactory, UserFactory, make_schedule


def line_up(concert, n, now):
    return [
        queue_services.queue_token_issue(user=UserFactory(), concert_id=concert.id, now=now)[0]
        for _ in range(n)
    ]


@pytest.mark.django_db
def test_beat_stopped_for_ten_minutes_loses_nothing_and_catches_up_in_one_run(
    django_capture_on_commit_callbacks,
):
    now = timezone.now()
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=2)
    schedule = make_schedule(concert, starts_in=timedelta(days=3))
    tokens = line_up(concert, 6, now)
    assert [t.status for t in tokens[:2]] == ["active", "active"]
    for token in tokens[:2]:
        concert_services.seat_hold_create(
            user=token.user, schedule_id=schedule.id, seat_number=token.pk % 50 + 1,
            queue_key=token.key, now=now,
        )  # fmt: skip
    # Beat stops. Ten minutes pass; the waiting fans keep polling (presence).
    later = now + timedelta(minutes=10)
    for token in tokens[2:]:
        queue_services.queue_token_touch(token=token, now=later - timedelta(seconds=30))
    # Correctness did not wait for beat: the holds are free, the turns are over.
    assert len(concert_selectors.seat_list_available(schedule=schedule, now=later)) == 50
    for token in tokens[:2]:
        with pytest.raises(Exception) as refused:
            queue_services.queue_gate_pass(
                key=token.key, user=token.user, concert_id=concert.id, now=later
            )
        assert refused.value.code == "queue_token_expired"
    # Beat returns: one run of each job clears the whole backlog.
    with django_capture_on_commit_callbacks(execute=True):
        assert concert_services.seat_holds_release_expired(now=later) == 2
        assert queue_services.queue_expire_stale(now=later)["active_expired"] == 2
    assert concert_services.seat_holds_release_expired(now=later) == 0
    assert queue_services.queue_expire_stale(now=later) == {"active_expired": 0, "idle_expired": 0}
    # Admission resumed in line-up order and within capacity.
    statuses = [QueueToken.objects.get(pk=t.pk).status for t in tokens]
    assert statuses == ["expired", "expired", "active", "active", "waiting", "waiting"]
    assert not Reservation.objects.filter(status="held").exists()


@pytest.mark.django_db(transaction=True)
def test_two_beats_running_every_job_at_once_admit_once_and_release_once():
    """Two beats by mistake: both run admission, the turn sweep and the hold sweep
    over and over while the line moves. Every token is admitted at most once and in
    order, capacity is never exceeded, and every hold is released exactly once."""
    now = timezone.now()
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=5)
    tokens = line_up(concert, 40, now)
    schedule = make_schedule(concert)
    seats = list(schedule.seats.order_by("number"))
    expired_holds = Reservation.objects.bulk_create(
        Reservation(
            user=UserFactory(), schedule=schedule, seat=seat, status="held", price=seat.price,
            created_at=now - timedelta(minutes=10), expires_at=now - timedelta(minutes=5),
        )
        for seat in seats
    )  # fmt: skip
    released: list[int] = []

    def beat(rounds: int) -> int:
        admitted = 0
        for round_no in range(rounds):
            moment = now + timedelta(seconds=round_no)
            admitted += queue_tasks.admit_waiting.run()
            queue_services.queue_expire_stale(now=moment)
            released.append(concert_services.seat_holds_release_expired(now=moment, batch_size=7))
            active = QueueToken.objects.filter(concert=concert, status="active").count()
            assert active <= 5, active
        return admitted

    # Between rounds, admitted fans finish and leave, so the line keeps moving.
    def the_line_moves():
        for _ in range(30):
            for token in QueueToken.objects.filter(concert=concert, status="active")[:2]:
                queue_services.queue_token_leave(token=token, now=timezone.now())
        return 0

    results = run_concurrently(lambda job, *a: job(*a), [(beat, 30), (beat, 30), (the_line_moves,)])
    assert errors(results) == []
    assert sum(released) == len(expired_holds)  # each hold released once, work split
    admitted = list(
        QueueToken.objects.filter(concert=concert, admitted_at__isnull=False)
        .order_by("id").values_list("id", flat=True)
    )  # fmt: skip
    never = [t.pk for t in tokens if t.pk not in admitted]
    assert not never or min(never) > max(admitted)  # nobody skipped in the line
