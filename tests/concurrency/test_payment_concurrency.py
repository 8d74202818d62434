"""Payments under real concurrency, on PostgreSQL: never charged twice, never paid
for an expired hold, and money that always adds up (the bank test)."""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest
from django.db import connection, connections, transaction
from django.db.models import Count
from django.utils import timezone

from concerts import services as concert_services
from concerts.models import Reservation, Seat
from config.errors import DomainError
from config.models import IdempotencyRecord
from payments import services
from payments.models import Payment
from payments.selectors import money_reconcile
from queueing import services as queue_services
from queueing.models import WaitingRoom
from tests.concurrency.helpers import errors, run_concurrently, without_idempotency_constraint
from tests.conftest import admitted_client, hold_seat
from tests.factories import ConcertFactory, UserFactory, make_schedule
from wallet import services as wallet_services
from wallet.models import LedgerEntry, Wallet

pytestmark = pytest.mark.django_db(transaction=True)
LIVE = ["held", "confirmed"]


def setup_paying_fan():
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=1000)
    schedule = make_schedule(concert)
    fan = UserFactory()
    client = admitted_client(fan, concert)
    wallet_services.wallet_charge(user_id=fan.pk, amount=500_000, now=timezone.now())
    reservation = hold_seat(fan, schedule, 1, now=timezone.now())
    return fan, client, reservation


def post_pay(client, reservation_id, key):
    response = client.post(
        "/api/v1/payments",
        {"reservation_id": reservation_id},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )
    return response.status_code, response.json()


def test_50_payments_of_one_reservation_with_50_keys_charge_once():
    fan, client, reservation = setup_paying_fan()
    results = run_concurrently(post_pay, [(client, reservation.id, f"k{i}") for i in range(50)])
    assert errors(results) == []
    statuses = Counter(status for _, (status, _) in results)
    assert statuses == {201: 1, 409: 49}, statuses
    codes = Counter(body["error"]["code"] for _, (s, body) in results if s == 409)
    assert codes == {"already_paid": 49}
    assert Payment.objects.filter(status="paid").count() == 1
    assert LedgerEntry.objects.filter(kind="payment").count() == 1


def test_50_payments_with_one_key_are_one_201_replayed_or_in_use():
    fan, client, reservation = setup_paying_fan()
    results = run_concurrently(post_pay, [(client, reservation.id, "one-key")] * 50)
    assert errors(results) == []
    answers = [value for _, value in results]
    created = [body for status, body in answers if status == 201]
    assert created and all(body == created[0] for body in created)
    others = [body["error"]["code"] for status, body in answers if status != 201]
    assert set(others) <= {"idempotency_key_in_use"}
    assert LedgerEntry.objects.filter(kind="payment").count() == 1
    assert post_pay(client, reservation.id, "one-key") == (201, created[0])


def test_control_without_the_key_constraint_one_key_answers_two_ways():
    """Without the one-record-per-key constraint both requests run: the seat guards
    still stop a double charge, but a retry no longer gets the first answer back."""
    with without_idempotency_constraint():
        fan, client, reservation = setup_paying_fan()
        results = run_concurrently(post_pay, [(client, reservation.id, "one-key")] * 20)
        codes = {body["error"]["code"] for _, (status, body) in results if status != 201}
        assert "already_paid" in codes, codes  # a second execution, not a replay
        assert IdempotencyRecord.objects.filter(key="one-key").count() > 1


ENOUGH = 60  # of each of pay, cancel and charge, before the bank test stops
OPERATION_BUDGET = 400  # per thread: a bound, so a broken run ends instead of hanging


def test_bank_20_threads_money_always_adds_up():
    """20 threads of random charges, holds, payments, cancels and sweeps, with money
    snapshots taken in between, until each kind of write has happened ENOUGH times."""
    concert = ConcertFactory(hold_ttl_seconds=2, max_seats_per_fan=10)
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=1000)
    schedule = make_schedule(concert, seat_price=20_000)
    fans = UserFactory.create_batch(10)
    seats = list(Seat.objects.filter(schedule=schedule).values_list("number", flat=True))
    snapshots: list[tuple[int, int, int, int]] = []
    counts: Counter = Counter()
    lock = threading.Lock()

    def snapshot():
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            report = money_reconcile()
        return report

    def turn_key(fan, now):
        """The fan's token (a new one after a payment ended the last): the services
        refuse it while it waits, a refusal counted like any other."""
        token, _ = queue_services.queue_token_issue(user=fan, concert_id=concert.id, now=now)
        return token.key

    def worker(seed: int):
        rng = random.Random(seed)
        try:
            for _ in range(OPERATION_BUDGET):
                with lock:
                    if all(counts[op] >= ENOUGH for op in ("pay", "cancel", "charge")):
                        return
                fan = rng.choice(fans)
                op = rng.choice(
                    ["charge", "hold", "hold", "pay", "pay", "cancel", "expire", "snap"]
                )
                now = timezone.now()
                try:
                    if op == "charge":
                        wallet_services.wallet_charge(
                            user_id=fan.pk, amount=rng.choice([10_000, 30_000]), now=now
                        )
                    elif op == "hold":
                        concert_services.seat_hold_create(
                            user=fan,
                            schedule_id=schedule.id,
                            seat_number=rng.choice(seats),
                            queue_key=turn_key(fan, now),
                            now=now,
                        )
                    elif op == "pay":
                        mine = list(
                            Reservation.objects.filter(user=fan, status="held").values_list(
                                "id", flat=True
                            )
                        )
                        if mine:
                            services.payment_submit(
                                user=fan,
                                reservation_id=rng.choice(mine),
                                queue_key=turn_key(fan, now),
                                idempotency_key=None,
                                now=now,
                            )
                    elif op == "cancel":
                        mine = list(
                            Reservation.objects.filter(user=fan, status__in=LIVE).values_list(
                                "id", flat=True
                            )
                        )
                        if mine:
                            services.booking_cancel(
                                user_id=fan.pk, reservation_id=rng.choice(mine), now=now
                            )
                    elif op == "expire":
                        concert_services.seat_holds_release_expired(now=now)
                    else:
                        report = snapshot()
                        with lock:
                            snapshots.append(
                                (report.charges, report.balances, report.payments, report.refunds)
                            )
                            assert report.ok, report.problems
                    with lock:
                        counts[op] += 1
                except DomainError as exc:
                    with lock:
                        counts[f"{op}:{exc.code}"] += 1
        finally:
            connections.close_all()

    results = run_concurrently(worker, [(i,) for i in range(20)], timeout=120)
    assert errors(results) == [], errors(results)[:3]
    assert all(counts[op] >= ENOUGH for op in ("pay", "cancel", "charge")), counts
    assert snapshots, "no mid-run snapshot was taken"
    for charges, balances, payments, refunds in snapshots:
        assert charges == balances + payments - refunds
    final = money_reconcile()
    assert final.ok, final.problems
    from django.core.management import call_command

    call_command("money_reconcile")  # exits 0
    doubled = (
        Reservation.objects.filter(status__in=LIVE)
        .values("seat")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    assert not doubled.exists()
    assert not Wallet.objects.filter(balance__lt=0).exists()
