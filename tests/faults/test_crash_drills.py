"""Fault drills (issue 14): a worker killed mid-task, a database connection dropped
mid-payment, Redis down mid-sale. Each asserts that nothing is lost or doubled."""

import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.test import Client, override_settings
from django.utils import timezone

from concerts import services as concert_services
from concerts.models import Reservation
from payments import services as payment_services
from payments.models import Payment
from payments.selectors import money_reconcile
from queueing import services as queue_services
from queueing.models import QueueToken, WaitingRoom
from tests.config.test_redis_down import DOWN
from tests.conftest import admit, hold_seat
from tests.factories import ConcertFactory, UserFactory, lapsed_holds_on_every_seat, make_schedule
from wallet import services as wallet_services
from wallet.models import LedgerEntry

ROOT = Path(__file__).resolve().parents[2]

KILLED_SWEEP = """
import os, sys, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.test_settings")
import django; django.setup()
from django.utils import timezone
from concerts import services
real_end = services.reservation_end
def end_then_hang(**kwargs):
    changed = real_end(**kwargs)  # written, not committed
    print(changed, flush=True)
    time.sleep(600)  # the worker dies here, inside the transaction
services.reservation_end = end_then_hang
services.seat_holds_release_expired(now=timezone.now())
"""


@pytest.mark.django_db(transaction=True)
def test_a_sweep_killed_mid_transaction_changes_nothing_and_the_next_run_does_it_once():
    concert = ConcertFactory()
    schedule = make_schedule(concert)
    lapsed_holds_on_every_seat(schedule, then=timezone.now() - timedelta(minutes=10))
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    }
    worker = subprocess.Popen(
        [sys.executable, "-c", KILLED_SWEEP], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    assert worker.stdout.readline().strip() == "50"  # it wrote all 50 ...
    os.killpg(worker.pid, signal.SIGKILL)  # ... and died before committing
    worker.wait(timeout=30)
    assert Reservation.objects.filter(status="held").count() == 50  # rolled back
    assert concert_services.seat_holds_release_expired(now=timezone.now()) == 50
    assert concert_services.seat_holds_release_expired(now=timezone.now()) == 0
    assert Reservation.objects.filter(status="expired").count() == 50


@pytest.mark.django_db
def test_work_registered_in_a_rolled_back_transaction_never_runs(
    django_capture_on_commit_callbacks,
):
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=1)
    now = timezone.now()
    first, second = (
        queue_services.queue_token_issue(user=UserFactory(), concert_id=concert.id, now=now)[0]
        for _ in range(2)
    )
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        queue_services.queue_tokens_end(ids=[first.pk], now=now, reason="operator")
        raise RuntimeError("the payment failed after ending the turn")
    assert callbacks == []  # the refill admission was never run
    assert QueueToken.objects.get(pk=first.pk).status == "active"
    assert QueueToken.objects.get(pk=second.pk).status == "waiting"


@pytest.mark.django_db(transaction=True)
def test_a_connection_dropped_mid_payment_fails_cleanly_and_a_retry_pays_once(monkeypatch):
    concert = ConcertFactory()
    schedule = make_schedule(concert)
    fan = UserFactory()
    wallet_services.wallet_charge(user_id=fan.pk, amount=200_000, now=timezone.now())
    reservation = hold_seat(fan, schedule, 3)
    key = QueueToken.objects.get(user=fan).key
    inside, backend = threading.Event(), []
    real_confirm = concert_services.reservations_confirm

    def debit_then_lose_the_connection(**kwargs):
        confirmation = real_confirm(**kwargs)  # the hold confirmed, the wallet debited
        assert confirmation.answers[1] == 1, "the statement did not debit"
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend.append(cursor.fetchone()[0])
        inside.set()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(30)")  # the server drops us during this
        return confirmation

    monkeypatch.setattr(
        payment_services.concert_services, "reservations_confirm", debit_then_lose_the_connection
    )
    outcome: list[object] = []

    def pay():
        try:
            outcome.append(
                payment_services.payment_submit(
                    user=fan,
                    reservation_id=reservation.id,
                    queue_key=key,
                    idempotency_key="drop-1",
                    now=timezone.now(),
                )  # fmt: skip
            )
        except Exception as exc:  # the request fails: that is the clean outcome
            outcome.append(exc)
        finally:
            connection.close()

    payer = threading.Thread(target=pay)
    payer.start()
    assert inside.wait(30)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [backend[0]])
    payer.join(60)
    assert isinstance(outcome[0], Exception)  # it failed, and nothing of it committed
    assert not LedgerEntry.objects.filter(kind="payment").exists()
    assert not Payment.objects.exists()
    assert Reservation.objects.get(pk=reservation.pk).status == "held"
    assert money_reconcile().ok
    monkeypatch.setattr(payment_services.concert_services, "reservations_confirm", real_confirm)
    retry = payment_services.payment_submit(
        user=fan, reservation_id=reservation.id, queue_key=key,
        idempotency_key="drop-1", now=timezone.now(),
    )  # fmt: skip
    assert retry.status == 201  # the same key pays now, once
    assert LedgerEntry.objects.filter(kind="payment").count() == 1
    assert money_reconcile().ok


@pytest.mark.django_db
def test_redis_down_mid_sale_and_back_keeps_every_guarantee(fan, concert, schedule):
    wallet_services.wallet_charge(user_id=fan.pk, amount=300_000, now=timezone.now())
    poller = UserFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=1)
    admit(fan, concert.id)
    waiting, _ = queue_services.queue_token_issue(
        user=poller, concert_id=concert.id, now=timezone.now()
    )
    first = Client().get("/api/v1/queue", HTTP_X_QUEUE_TOKEN=waiting.key)
    assert first.status_code == 200
    assert Client().get("/api/v1/queue", HTTP_X_QUEUE_TOKEN=waiting.key).status_code == 429
    with override_settings(CACHES=DOWN):  # Redis goes down mid-sale
        assert Client().get("/api/v1/queue", HTTP_X_QUEUE_TOKEN=waiting.key).status_code == 200
        held = hold_seat(fan, schedule, 9)
        answer = payment_services.payment_submit(
            user=fan, reservation_id=held.id, queue_key=QueueToken.objects.get(user=fan).key,
            idempotency_key="while-down", now=timezone.now(),
        )  # fmt: skip
        assert answer.status == 201  # seats and money are decided by PostgreSQL
    # Redis is back, with nothing done by hand: a fan's polls are paced again.
    newcomer, _ = queue_services.queue_token_issue(
        user=UserFactory(), concert_id=concert.id, now=timezone.now()
    )
    assert Client().get("/api/v1/queue", HTTP_X_QUEUE_TOKEN=newcomer.key).status_code == 200
    assert Client().get("/api/v1/queue", HTTP_X_QUEUE_TOKEN=newcomer.key).status_code == 429
    assert Reservation.objects.filter(seat=held.seat, status__in=["held", "confirmed"]).count() == 1
    assert money_reconcile().ok
