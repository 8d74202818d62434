"""The waiting room under real concurrency, on PostgreSQL.

Each guarded race has a control that switches the guard off and shows the
race really happens, so these tests can fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from queueing import selectors, services
from queueing.models import BUCKET_SIZE, BUCKET_STRIPES, QueueBucket, QueueToken, WaitingRoom
from tests.concurrency.helpers import errors, race_width, run_concurrently
from tests.factories import ConcertFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def make_concert(max_active: int = 0, paused: bool = False):
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=max_active, admission_paused=paused)
    return concert


def issue(user, concert_id):
    return services.queue_token_issue(user=user, concert_id=concert_id, now=timezone.now())


def positions_in_issue_order(concert) -> list[int | None]:
    tokens = QueueToken.objects.filter(concert=concert).order_by("id")
    return [selectors.queue_position(token=t) for t in tokens]


def test_500_fans_lining_up_at_once_get_exact_positions_1_to_500():
    """500 fans at once (fewer on a server with fewer connections: the width is printed)."""
    n = race_width(500)
    concert = make_concert(max_active=0)
    users = UserFactory.create_batch(n)
    results = run_concurrently(issue, [(u, concert.id) for u in users])
    assert errors(results) == []
    assert QueueToken.objects.filter(concert=concert).count() == n
    assert positions_in_issue_order(concert) == list(range(1, n + 1))
    assert sum(QueueBucket.objects.filter(concert=concert).values_list("waiting", flat=True)) == n


def test_control_lost_bucket_updates_break_positions(monkeypatch):
    """Without the atomic F() increment (read, then write), positions go wrong."""

    def racy_bucket_add(*, concert_id, number, stripe, delta):
        bucket, _ = QueueBucket.objects.get_or_create(
            concert_id=concert_id, number=number, stripe=stripe
        )
        seen = bucket.waiting
        time.sleep(0.001)  # the gap any read-modify-write has, made visible
        QueueBucket.objects.filter(pk=bucket.pk).update(waiting=seen + delta)

    def racy_insert(*, user_id, concert_id, now, count_active=True, api_key=None):
        """The line-up's insert, with its bucket count as a separate read-then-write."""
        token = QueueToken.objects.create(
            concert_id=concert_id, user_id=user_id, status="waiting", created_at=now,
            last_seen_at=now,
        )  # fmt: skip
        racy_bucket_add(
            concert_id=concert_id, number=token.pk // BUCKET_SIZE,
            stripe=token.pk % BUCKET_STRIPES, delta=1,
        )  # fmt: skip
        room = services._RoomState(admission_paused=False, capacity=0, active_now=0)
        return services._Made(services._Sale.OPEN, token=token, room=room)

    monkeypatch.setattr(services, "_insert_waiting", racy_insert)
    n = race_width(200)
    concert = make_concert(max_active=0)
    users = UserFactory.create_batch(n)
    assert errors(run_concurrently(issue, [(u, concert.id) for u in users])) == []
    # The tokens are all there, but the count the positions rest on lost updates.
    assert QueueToken.objects.filter(concert=concert).count() == n
    waiting = sum(QueueBucket.objects.filter(concert=concert).values_list("waiting", flat=True))
    assert waiting < n


def test_50_concurrent_requests_by_one_fan_give_one_token():
    concert = make_concert(max_active=0)
    fan = UserFactory()
    results = run_concurrently(issue, [(fan, concert.id)] * 50)
    assert errors(results) == []
    assert QueueToken.objects.filter(concert=concert, user=fan).count() == 1
    keys = {value[0].key for kind, value in results}
    assert len(keys) == 1
    assert sum(created for _, (_, created) in results) == 1


def test_control_without_the_guard_one_fan_gets_several_tokens(monkeypatch):
    """With the existing-token check and the unique constraint both off, duplicates appear."""
    monkeypatch.setattr(services.selectors, "queue_token_live_for", lambda **kw: None)
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX queue_one_live_token_per_fan")
    try:
        concert = make_concert(max_active=0)
        fan = UserFactory()
        run_concurrently(issue, [(fan, concert.id)] * 50)
        assert QueueToken.objects.filter(concert=concert, user=fan).count() > 1
    finally:
        QueueToken.objects.all().delete()
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE UNIQUE INDEX queue_one_live_token_per_fan ON queueing_queuetoken "
                "(concert_id, user_id) WHERE status IN ('waiting', 'active')"
            )


def _line_up_1000(concert):
    users = UserFactory.create_batch(1000)
    now = timezone.now()
    tokens = [QueueToken(concert=concert, user=u, created_at=now, last_seen_at=now) for u in users]
    with transaction.atomic():
        QueueToken.objects.bulk_create(tokens)
        services.queue_buckets_rebuild(concert_id=concert.id)
    return list(
        QueueToken.objects.filter(concert=concert).order_by("id").values_list("id", flat=True)
    )


def admit(concert_id):
    return services.queue_admit_next(concert_id=concert_id, now=timezone.now())


def test_10_concurrent_admission_runs_admit_exactly_the_100_earliest():
    concert = make_concert(max_active=100)
    ids = _line_up_1000(concert)
    results = run_concurrently(admit, [(concert.id,)] * 10)
    assert errors(results) == []
    active = set(
        QueueToken.objects.filter(concert=concert, status="active").values_list("id", flat=True)
    )
    assert active == set(ids[:100])
    assert sum(len(value) for _, value in results) == 100
    # Again: nothing more until a slot frees.
    again = run_concurrently(admit, [(concert.id,)] * 10)
    assert sum(len(value) for _, value in again) == 0
    assert QueueToken.objects.filter(concert=concert, status="active").count() == 100
    # Positions of those still waiting are exact.
    assert positions_in_issue_order(concert)[100:] == list(range(1, 901))
    # One slot frees: exactly the 101st is admitted.
    services.queue_token_leave(token=QueueToken.objects.get(pk=ids[0]), now=timezone.now())
    assert QueueToken.objects.get(pk=ids[100]).status == "active"
    assert QueueToken.objects.filter(concert=concert, status="active").count() == 100


def test_control_without_the_room_lock_admission_overshoots(monkeypatch):
    monkeypatch.setattr(
        services, "_lock_room", lambda *, concert_id: WaitingRoom.objects.get(pk=concert_id)
    )
    concert = make_concert(max_active=100)
    _line_up_1000(concert)
    run_concurrently(admit, [(concert.id,)] * 10)
    assert QueueToken.objects.filter(concert=concert, status="active").count() > 100


def test_issuing_from_two_os_processes_keeps_positions_exact():
    concert = make_concert(max_active=0)
    users = UserFactory.create_batch(300)
    ids = [str(u.pk) for u in users]
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    }
    barrier = f"queue-issue-{concert.id}"  # both processes start together, whenever they boot
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.concurrency.queue_issue_worker",
                str(concert.id),
                barrier,
                *ids[i::2],
            ],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
    assert QueueToken.objects.filter(concert=concert).count() == 300
    assert positions_in_issue_order(concert) == list(range(1, 301))
    # Both processes really interleaved in the line.
    owners = list(
        QueueToken.objects.filter(concert=concert).order_by("id").values_list("user_id", flat=True)
    )
    half = {u.pk for u in users[::2]}
    switches = sum(
        1 for a, b in zip(owners, owners[1:], strict=False) if (a in half) != (b in half)
    )
    assert switches > 10


def test_a_burst_of_42_fans_for_30_free_slots_are_told_30_active_at_once():
    """Issue 11: in a burst, fans admitted by another fan's admission run were told to
    wait while their slot was free. Each answer must say what the database says."""
    from collections import Counter

    from tests.conftest import token_client

    concert = make_concert(max_active=30)
    clients = [token_client(UserFactory()) for _ in range(42)]

    def line_up(client):
        response = client.post(f"/api/v1/concerts/{concert.id}/queue")
        return response.status_code, response.json()["status"], response.json()["token"]

    results = run_concurrently(line_up, [(c,) for c in clients])
    assert errors(results) == []
    told = Counter(status for _, (_, status, _) in results)
    assert told == {"active": 30, "waiting": 12}, told
    actually = dict(QueueToken.objects.filter(concert=concert).values_list("key", "status"))
    assert all(actually[key] == status for _, (_, status, key) in results)
    assert QueueToken.objects.filter(concert=concert, status="active").count() == 30


def test_control_without_reading_the_watched_token_fans_are_told_to_wait_while_active(
    monkeypatch,
):
    """Switch off the re-read of the fan's own token in the admission run: in the same
    burst, fans admitted by someone else's run are told 'waiting'."""
    from collections import Counter

    from tests.conftest import token_client

    real_admit = services._admit
    monkeypatch.setattr(services, "_admit", lambda **kw: real_admit(**{**kw, "watch": None}))
    concert = make_concert(max_active=30)
    clients = [token_client(UserFactory()) for _ in range(42)]
    results = run_concurrently(
        lambda c: c.post(f"/api/v1/concerts/{concert.id}/queue").json(), [(c,) for c in clients]
    )
    actually = dict(QueueToken.objects.filter(concert=concert).values_list("key", "status"))
    told_wrong = Counter(
        body["status"] for _, body in results if actually[body["token"]] != body["status"]
    )
    assert told_wrong["waiting"] > 0, "the race did not happen; the burst test could not fail"


def _admission_while_a_line_up_is_in_flight():
    """Fan A draws an id but has not committed when fan B (a later id) has, and an
    admission run with one free slot starts. Returns (A's id, B's id, admitted)."""
    concert = make_concert(max_active=0)
    fan_a, fan_b = UserFactory(), UserFactory()
    drawn, release = threading.Event(), threading.Event()
    out: dict = {}

    def slow_line_up():
        try:
            with transaction.atomic():
                made = services._insert_waiting(
                    user_id=fan_a.pk, concert_id=concert.id, now=timezone.now()
                )
                out["a"] = made.token.pk
                drawn.set()
                release.wait(30)  # still in flight: id drawn, nothing committed
        finally:
            connections.close_all()

    def admission():
        try:
            out["admitted"] = services.queue_admit_next(
                concert_id=concert.id, now=timezone.now(), count=1
            )
        finally:
            connections.close_all()

    slow = threading.Thread(target=slow_line_up)
    slow.start()
    assert drawn.wait(30)
    b, _ = services.queue_token_issue(user=fan_b, concert_id=concert.id, now=timezone.now())
    admit = threading.Thread(target=admission)
    admit.start()
    admit.join(0.5)  # give the run every chance to go ahead of fan A
    release.set()
    slow.join(30)
    admit.join(30)
    return out["a"], b.pk, out["admitted"]


def test_admission_waits_for_a_line_up_in_flight_and_keeps_fifo():
    a, b, admitted = _admission_while_a_line_up_is_in_flight()
    assert a < b
    assert admitted == [a]


def test_control_without_the_line_lock_a_later_fan_is_admitted_first(monkeypatch):
    monkeypatch.setattr(services, "_lock_line", lambda *, concert_id: None)
    a, b, admitted = _admission_while_a_line_up_is_in_flight()
    assert a < b
    assert admitted == [b]  # fan B jumped fan A: the lock is what keeps FIFO


def _flush_in_listed_order(seen: dict[int, int]) -> int:
    """The control's flush: it locks tokens in the order Redis listed them, as the old
    `UPDATE ... FROM unnest(...)` did whenever its plan was driven by the array (the
    plan on the 20,000-fan rehearsal's table: a nested loop over the function scan)."""
    from datetime import UTC, datetime

    with transaction.atomic():
        for token_id, ms in seen.items():
            QueueToken.objects.filter(pk=token_id, status="waiting").update(
                last_seen_at=datetime.fromtimestamp(ms / 1000, tz=UTC)
            )
    return len(seen)


def _wait_for_lock_waiters(count: int) -> None:
    """Until `count` sessions of this database wait on a row or transaction lock."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0] >= count:
                return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} sessions ever waited on a lock")


def _admission_meets_a_presence_flush():
    """Two waiting fans, 1 < 2. A third session holds fan 1's row; an admission run
    for both queues behind it, then a presence flush of (2, 1) arrives. When the row
    is let go, the admission takes 1 and wants 2. Returns (ids, admitted, errors)."""
    from queueing import mirror

    concert = make_concert(max_active=0)
    first, _ = issue(UserFactory(), concert.id)
    second, _ = issue(UserFactory(), concert.id)
    seen_ms = int(time.time() * 1000) + 60_000
    held, release = threading.Event(), threading.Event()
    out: dict = {"errors": []}

    def blocker():
        try:
            with transaction.atomic():
                QueueToken.objects.select_for_update(no_key=True).get(pk=first.pk)
                held.set()
                release.wait(30)
        finally:
            connections.close_all()

    def admission():
        try:
            out["admitted"] = services.queue_admit_next(
                concert_id=concert.id, now=timezone.now(), count=2
            )
        except Exception as exc:
            out["errors"].append(exc)
        finally:
            connections.close_all()

    def flush():
        try:
            mirror._presence_apply({second.pk: seen_ms, first.pk: seen_ms})  # Redis's order
        except Exception as exc:
            out["errors"].append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=blocker)]
    threads[0].start()
    assert held.wait(30)
    threads.append(threading.Thread(target=admission))
    threads[1].start()
    _wait_for_lock_waiters(1)  # the admission waits for fan 1
    threads.append(threading.Thread(target=flush))
    threads[2].start()
    _wait_for_lock_waiters(2)  # and so does the flush
    release.set()
    for thread in threads:
        thread.join(30)
    return [first.pk, second.pk], out.get("admitted"), out["errors"]


def test_a_presence_flush_and_an_admission_lock_in_one_order_and_never_deadlock():
    ids, admitted, errs = _admission_meets_a_presence_flush()
    assert errs == []
    assert admitted == ids


def test_control_a_flush_locking_in_join_order_deadlocks_with_admission(monkeypatch):
    from django.db.utils import OperationalError

    from queueing import mirror

    monkeypatch.setattr(mirror, "_presence_apply", _flush_in_listed_order)
    _, _, errs = _admission_meets_a_presence_flush()
    assert any(isinstance(e, OperationalError) and "deadlock" in str(e) for e in errs), errs
