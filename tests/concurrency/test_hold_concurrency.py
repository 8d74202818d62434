"""Seat holds under real concurrency, on PostgreSQL: never a double booking."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections, transaction
from django.db.models import Count
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token

from concerts import services
from concerts.exceptions import SeatUnavailable
from concerts.models import Reservation, Seat
from queueing.models import QueueToken, WaitingRoom
from tests.concurrency.helpers import errors, interleavings, race_width, run_concurrently
from tests.conftest import admit, admitted_client
from tests.factories import ConcertFactory, UserFactory, make_schedule

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]
LIVE = ["held", "confirmed"]


def open_concert():
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=100_000)
    return concert


def post_hold(client, schedule_id, number):
    response = client.post(
        "/api/v1/reservations", {"schedule_id": schedule_id, "seat_number": number}, format="json"
    )
    code = response.json().get("error", {}).get("code") if response.status_code >= 400 else None
    return response.status_code, code


def test_200_fans_racing_for_one_seat_20_times_exactly_one_wins_each_time():
    """200 threads, each a fan with its own connection, race 20 times (a barrier per round);
    fewer on a server with fewer connections (the width is printed)."""
    n = race_width(200)
    concert = open_concert()
    clients = [admitted_client(UserFactory(), concert) for _ in range(n)]
    schedules = [make_schedule(concert) for _ in range(20)]
    barrier = threading.Barrier(len(clients))
    outcomes = [[None] * len(clients) for _ in schedules]

    def fan(index, client):
        try:
            for round_no, schedule in enumerate(schedules):
                barrier.wait(timeout=60)
                try:
                    outcomes[round_no][index] = post_hold(client, schedule.id, 7)
                except Exception as exc:
                    outcomes[round_no][index] = ("exception", repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=fan, args=(i, c)) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    for round_no, schedule in enumerate(schedules):
        counted = Counter(outcomes[round_no])
        assert counted == {(201, None): 1, (409, "seat_unavailable"): n - 1}, (round_no, counted)
        assert Reservation.objects.filter(schedule=schedule, status__in=LIVE).count() == 1


def hold_via_service(user, schedule_id, number, queue_key):
    try:
        services.seat_hold_create(
            user=user,
            schedule_id=schedule_id,
            seat_number=number,
            queue_key=queue_key,
            now=timezone.now(),
        )
        return "held"
    except SeatUnavailable:
        return "taken"


def test_control_without_the_lock_and_the_constraint_a_seat_is_sold_twice(monkeypatch):
    """Switch the seat lock off and drop the constraint: the same race double-books.

    Without the lock, the seat read stands in for it, and the fans who passed the
    unlocked "already taken?" check go on together (a barrier), as they would on a
    busy server: the race happens on every run, not only on lucky ones."""
    together = threading.Barrier(50)

    def unlocked_seat(*, user_id, schedule_id, seat_number, turn=None):
        lock_the_fan_only(user_id)
        seat = Seat.objects.get(schedule_id=schedule_id, number=seat_number)
        # Some fans may have been refused before this point: go on without them.
        with contextlib.suppress(threading.BrokenBarrierError):
            together.wait(timeout=3)
        return seat, None  # no turn: the hold locks it by itself

    monkeypatch.setattr(services, "_lock_fan_and_seat", unlocked_seat)
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX reservation_one_live_per_seat")
    try:
        concert = open_concert()
        schedule = make_schedule(concert)
        users = UserFactory.create_batch(50)
        results = run_concurrently(
            hold_via_service, [(u, schedule.id, 7, admit(u, concert.id).key) for u in users]
        )
        assert errors(results) == []
        live = Reservation.objects.filter(schedule=schedule, seat__number=7, status__in=LIVE)
        assert live.count() > 1, "the race did not happen; the suite could not fail"
    finally:
        Reservation.objects.all().delete()
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE UNIQUE INDEX reservation_one_live_per_seat ON concerts_reservation "
                "(seat_id) WHERE status IN ('held', 'confirmed')"
            )


def test_the_constraint_alone_still_stops_a_double_booking(monkeypatch):
    """With only the lock off, the database refuses the second hold (a clean 409)."""

    def unlocked_seat(*, user_id, schedule_id, seat_number, turn=None):
        lock_the_fan_only(user_id)
        return Seat.objects.get(schedule_id=schedule_id, number=seat_number), None

    monkeypatch.setattr(services, "_lock_fan_and_seat", unlocked_seat)
    concert = open_concert()
    schedule = make_schedule(concert)
    results = run_concurrently(
        hold_via_service,
        [(u, schedule.id, 7, admit(u, concert.id).key) for u in UserFactory.create_batch(50)],
    )
    assert errors(results) == []
    assert Counter(v for _, v in results)["held"] == 1


def test_1000_attempts_from_two_processes_fill_each_seat_exactly_once():
    n = race_width(200)  # one connection per fan thread, across the two processes
    attempts = -(-1000 // n)  # about 1000 attempts in all, however many fans
    concert = open_concert()
    schedule = make_schedule(concert)
    fans = []
    for user in UserFactory.create_batch(n):
        client = admitted_client(user, concert)  # admits the fan
        auth = Token.objects.get(user=user).key
        fans.append(f"{auth}:{QueueToken.objects.get(user=user).key}")
        del client
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "ALLOWED_HOSTS": "testserver",
    }
    barrier = f"holds-{schedule.id}"  # both processes start together, whenever they boot
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.concurrency.hold_worker",
                str(schedule.id),
                barrier,
                str(attempts),
                *fans[i::2],
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    totals: Counter = Counter()
    owner_of: dict[int, str] = {}
    for index, proc in enumerate(procs):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        report = json.loads(out.strip().splitlines()[-1])
        totals.update(report["counts"])
        owner_of.update({place: f"process {index}" for place in report["sequence"]})
    # The two processes really ran at the same time: in the order both shared, their
    # requests alternate many times (run one after the other, they would switch once).
    assert interleavings([owner_of[place] for place in sorted(owner_of)]) > 20
    assert sum(totals.values()) == attempts * n
    assert not [k for k in totals if k.startswith("5")], totals  # no server errors
    allowed = {"201", "409:seat_unavailable", "409:seat_already_yours", "409:seat_limit_reached"}
    assert set(totals) <= allowed, totals
    per_seat = (
        Reservation.objects.filter(schedule=schedule, status__in=LIVE)
        .values("seat")
        .annotate(n=Count("id"))
    )
    assert {row["n"] for row in per_seat} == {1}
    assert len(per_seat) == 50 == totals["201"]


@override_settings(MAX_SEATS_PER_FAN=4)
def test_a_fan_firing_20_holds_at_once_ends_with_exactly_the_limit():
    concert = open_concert()
    schedule = make_schedule(concert)
    fan = UserFactory()
    key = admit(fan, concert.id).key
    results = run_concurrently(
        hold_via_service_any, [(fan, schedule.id, n, key) for n in range(1, 21)]
    )
    assert errors(results) == []
    assert Reservation.objects.filter(user=fan, status__in=LIVE).count() == 4


@override_settings(MAX_SEATS_PER_FAN=4)
def test_control_without_the_fan_lock_the_limit_is_exceeded(monkeypatch):
    """Without the fan's lock, the fan's holds go on together past their seats' locks
    (a barrier, as on a busy server), each counting the fan's holds before any of
    them commits: the race happens on every run, not only on lucky ones."""
    together = threading.Barrier(20)

    def lock_the_seat_only(*, user_id, schedule_id, seat_number, turn=None):
        seat = Seat.objects.select_for_update(no_key=True).get(
            schedule_id=schedule_id, number=seat_number
        )
        with contextlib.suppress(threading.BrokenBarrierError):
            together.wait(timeout=3)
        return seat, None

    monkeypatch.setattr(services, "_lock_fan_and_seat", lock_the_seat_only)
    concert = open_concert()
    schedule = make_schedule(concert)
    fan = UserFactory()
    key = admit(fan, concert.id).key
    run_concurrently(hold_via_service_any, [(fan, schedule.id, n, key) for n in range(1, 21)])
    assert Reservation.objects.filter(user=fan, status__in=LIVE).count() > 4


def lock_the_fan_only(user_id):
    """The fan's lock of _lock_fan_and_seat without the seat's (for the controls)."""
    get_user_model().objects.select_for_update(no_key=True).filter(pk=user_id).exists()


def hold_via_service_any(user, schedule_id, number, queue_key):
    from config.errors import DomainError

    try:
        return hold_via_service(user, schedule_id, number, queue_key)
    except DomainError as exc:
        return exc.code


def _expired_holds(n: int):
    concert = open_concert()
    schedules = [make_schedule(concert) for _ in range(n // 50)]
    now = timezone.now() - timedelta(minutes=10)
    users = UserFactory.create_batch(10)
    rows = [
        Reservation(
            user=users[i % 10],
            schedule=s,
            seat=seat,
            status="held",
            price=seat.price,
            created_at=now,
            expires_at=now + timedelta(minutes=5),
        )
        for i, s in enumerate(schedules)
        for seat in s.seats.all()
    ]
    Reservation.objects.bulk_create(rows)


def state():
    return sorted(Reservation.objects.values_list("id", "status", "ended_at"))


def test_a_sweep_in_batches_skips_a_row_another_transaction_holds_and_leaves_it_to_the_next_run():
    """Each batch starts after the last one's ids. A hold locked elsewhere (a payment
    under way) is skipped, every other lapsed hold is ended, batch after batch, and
    the next run ends the skipped one once it is free."""
    _expired_holds(50)
    ids = sorted(Reservation.objects.values_list("id", flat=True))
    now = timezone.now()
    locked, release = threading.Event(), threading.Event()

    def holder():
        with transaction.atomic():
            Reservation.objects.select_for_update().get(pk=ids[4])
            locked.set()
            assert release.wait(30)

    thread = threading.Thread(target=lambda: (holder(), connection.close()))
    thread.start()
    try:
        assert locked.wait(30)
        with CaptureQueriesContext(connection) as queries:
            assert services.seat_holds_release_expired(now=now, batch_size=7) == 49
    finally:
        release.set()
        thread.join(30)
    assert {id_: status for id_, status, _ in state()}[ids[4]] == "held"
    reads = [q["sql"] for q in queries.captured_queries if "SKIP LOCKED" in q["sql"]]
    assert len(reads) == 8  # 49 rows in batches of 7, then the empty batch that ends the run
    # Each read after the first starts after the last id its predecessor ended.
    assert all(f'"id" > {ids[7 * n]}' in read for n, read in enumerate(reads[1:], 1)), reads
    assert services.seat_holds_release_expired(now=now, batch_size=7) == 1
    assert {status for _, status, _ in state()} == {"expired"}


def test_control_a_sweep_without_row_locks_or_status_check_releases_holds_twice(monkeypatch):
    """Without SKIP LOCKED row locks and the WHERE status='held' re-check, two sweeps
    at once both release the same holds (each counts them, each writes them)."""
    _expired_holds(500)
    now = timezone.now()
    both_read = threading.Barrier(2)

    def blind_sweep():
        ids = list(
            Reservation.objects.filter(status="held", expires_at__lte=now).values_list(
                "id", flat=True
            )
        )
        both_read.wait(timeout=30)
        return Reservation.objects.filter(id__in=ids).update(status="expired", ended_at=now)

    results = run_concurrently(blind_sweep, [()] * 2)
    assert errors(results) == []
    assert sum(v for _, v in results) == 1000  # 500 holds, each released twice


def test_cleanup_job_twice_at_once_then_three_times_leaves_identical_state():
    _expired_holds(2000)
    now = timezone.now()
    results = run_concurrently(
        lambda: services.seat_holds_release_expired(now=now, batch_size=300), [()] * 2
    )
    assert errors(results) == []
    assert sum(v for _, v in results) == 2000  # each hold released once, work split
    after_concurrent = state()
    assert {s for _, s, _ in after_concurrent} == {"expired"}
    for _ in range(3):
        assert services.seat_holds_release_expired(now=now) == 0
    assert state() == after_concurrent
