"""Which guard stops a seat being paid twice, and what the sweep may do to a payment.

A seat is paid once thanks to three guards, each tested alone with the other two
switched off, and all three off in a control that shows the double charge:
- the lock: reservations_lock (fan, seat and reservation rows) and the re-check
  under it (a confirmed reservation is already_paid);
- the held check: the confirming UPDATE itself only turns a *held, live* row
  into confirmed (reservations_confirm);
- the constraint: one paid-or-refunded payment per reservation (a unique index).
In every run the fan's own queue-token lock is switched off (queue_turn_end), so
that the race is about the seat alone.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection
from django.utils import timezone

from concerts import services as concert_services
from concerts.models import Reservation
from config.errors import DomainError
from payments import services
from payments.models import Payment
from queueing.models import QueueToken, WaitingRoom
from tests.concurrency.helpers import (
    errors,
    first_call_waits_for,
    pay_through_reservation_lock,
    run_concurrently,
)
from tests.conftest import hold_seat
from tests.factories import ConcertFactory, UserFactory, make_schedule
from wallet import services as wallet_services
from wallet.models import LedgerEntry

pytestmark = pytest.mark.django_db(transaction=True)


def paying_fan():
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=1000)
    schedule = make_schedule(concert)
    fan = UserFactory()
    wallet_services.wallet_charge(user_id=fan.pk, amount=500_000, now=timezone.now())
    reservation = hold_seat(fan, schedule, 1)
    return fan, reservation, QueueToken.objects.get(user=fan).key


def pay(fan, reservation, key, now=None):
    try:
        services.payment_submit(
            user=fan,
            reservation_id=reservation.id,
            queue_key=key,
            idempotency_key=None,
            now=now or timezone.now(),
        )
        return "paid"
    except DomainError as exc:
        return exc.code
    except IntegrityError as exc:
        return "refused by the constraint" if "payment_one_success" in str(exc) else repr(exc)


@contextmanager
def guards(monkeypatch, *, lock: bool, held_check: bool, constraint: bool):
    monkeypatch.setattr(services.queue_services, "queue_turn_end", lambda **kw: None)
    if not lock:
        # The gap between reading the hold and acting on it: every payer has read it
        # before any acts (a barrier, not a sleep, so a slow machine cannot close it).
        # Only a payer's first read waits: a refused one reads again to record it.
        all_read = first_call_waits_for(20, timeout=30)

        def unlocked(*, user_id, reservation_id):
            reservation = Reservation.objects.select_related("seat", "schedule__concert").get(
                pk=reservation_id
            )
            all_read()
            return reservation

        monkeypatch.setattr(services.concert_services, "reservation_lock", unlocked)
        pay_through_reservation_lock(monkeypatch, services.concert_services)
    if not held_check:

        def confirm_blindly(*, user_id, concert_id, ids, now, turn_end=None, then=()):
            confirmed = Reservation.objects.filter(id__in=ids).update(
                status="confirmed", confirmed_at=now, expires_at=None
            )
            return services.concert_services.Confirmation(confirmed, still_held=False)

        monkeypatch.setattr(services.concert_services, "reservations_confirm", confirm_blindly)
    if not constraint:
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX payment_one_success_per_reservation")
    try:
        yield
    finally:
        if not constraint:
            with connection.cursor() as cursor:
                cursor.execute("TRUNCATE payments_payment")
                cursor.execute(
                    "CREATE UNIQUE INDEX payment_one_success_per_reservation ON payments_payment"
                    " (reservation_id) WHERE status IN ('paid', 'refunded')"
                )


def race_20_payments(monkeypatch, **switches):
    with guards(monkeypatch, **switches):
        fan, reservation, key = paying_fan()
        results = run_concurrently(pay, [(fan, reservation, key)] * 20)
        assert errors(results) == []
        return (
            LedgerEntry.objects.filter(kind="payment", reservation_id=reservation.id).count(),
            Payment.objects.filter(reservation=reservation, status="paid").count(),
            [value for _, value in results],
        )


def test_control_with_all_three_guards_off_a_seat_is_paid_twice(monkeypatch):
    debits, paid, _ = race_20_payments(monkeypatch, lock=False, held_check=False, constraint=False)
    assert debits > 1 and paid > 1, "the race did not happen; the guards' tests could not fail"


def test_the_lock_alone_pays_once(monkeypatch):
    debits, paid, outcomes = race_20_payments(
        monkeypatch, lock=True, held_check=False, constraint=False
    )
    assert (debits, paid) == (1, 1)
    assert sorted(set(outcomes)) == ["already_paid", "paid"]


def test_the_held_check_alone_pays_once(monkeypatch):
    debits, paid, outcomes = race_20_payments(
        monkeypatch, lock=False, held_check=True, constraint=False
    )
    assert (debits, paid) == (1, 1)
    assert outcomes.count("paid") == 1


def test_the_constraint_alone_pays_once(monkeypatch):
    debits, paid, outcomes = race_20_payments(
        monkeypatch, lock=False, held_check=False, constraint=True
    )
    assert (debits, paid) == (1, 1)
    assert outcomes.count("paid") == 1
    assert "refused by the constraint" in outcomes


# --- a payment and the hold's expiry sweep, in both orders ---------------------------


def test_the_sweep_first_then_the_payment_is_refused_and_the_seat_is_free():
    fan, reservation, key = paying_fan()
    boundary = reservation.expires_at
    assert concert_services.seat_holds_release_expired(now=boundary) == 1
    # The payment's clock says the hold is still live, but the row says it ended.
    assert pay(fan, reservation, key, now=boundary - timedelta(microseconds=1)) == "hold_expired"
    reservation.refresh_from_db()
    assert reservation.status == "expired"
    assert not LedgerEntry.objects.filter(kind="payment").exists()
    assert Payment.objects.get().status == "failed"


def sweep_while_the_payment_holds_its_locks(monkeypatch, fan, reservation, key, swept=None):
    """Run the sweep at the hold's boundary while the payment, its clock a moment
    before, sits inside its transaction, after the statement that confirms the hold
    and debits the wallet. The payment goes on once the sweep has finished, or, for
    a sweep that sets `swept` itself, once it has read the holds."""
    inside = threading.Event()
    signals_itself = swept is not None
    swept = swept or threading.Event()
    sweep_result: list[int] = []
    real_confirm = concert_services.reservations_confirm

    def confirm_then_wait(**kwargs):
        confirmation = real_confirm(**kwargs)
        inside.set()
        assert swept.wait(30), "the sweep never ran"
        return confirmation

    monkeypatch.setattr(services.concert_services, "reservations_confirm", confirm_then_wait)
    boundary = reservation.expires_at

    def sweep():
        assert inside.wait(30), "the payment never reached its transaction"
        sweep_result.append(concert_services.seat_holds_release_expired(now=boundary))
        if not signals_itself:
            swept.set()
        return sweep_result[0]

    results = run_concurrently(
        lambda job: job(),
        [(lambda: pay(fan, reservation, key, now=boundary - timedelta(microseconds=1)),), (sweep,)],
    )
    assert errors(results) == []
    return results[0][1], sweep_result[0]


def test_a_sweep_during_the_payment_skips_the_locked_hold_and_the_payment_stands(monkeypatch):
    fan, reservation, key = paying_fan()
    paid, released = sweep_while_the_payment_holds_its_locks(monkeypatch, fan, reservation, key)
    assert (paid, released) == ("paid", 0)  # SKIP LOCKED: the sweep passed it by
    reservation.refresh_from_db()
    assert reservation.status == "confirmed"
    assert concert_services.seat_holds_release_expired(now=reservation.schedule.starts_at) == 0
    assert LedgerEntry.objects.filter(kind="payment").count() == 1


def test_control_a_sweep_that_ignores_locks_and_status_expires_a_paid_seat(monkeypatch):
    """Without SKIP LOCKED's row lock and the sweep's status check, the sweep reads
    the hold before the payment commits and overwrites the confirmed seat."""

    has_read = threading.Event()

    def blind_sweep(*, now, batch_size=5000):
        ids = list(
            Reservation.objects.filter(status="held", expires_at__lte=now).values_list(
                "id", flat=True
            )
        )
        has_read.set()  # the payment may commit now; this UPDATE waits for it, then wins
        return Reservation.objects.filter(id__in=ids).update(status="expired", ended_at=now)

    monkeypatch.setattr(concert_services, "seat_holds_release_expired", blind_sweep)
    fan, reservation, key = paying_fan()
    paid, released = sweep_while_the_payment_holds_its_locks(
        monkeypatch, fan, reservation, key, swept=has_read
    )
    reservation.refresh_from_db()
    assert paid == "paid" and released == 1
    assert reservation.status == "expired"  # the damage: a paid seat back on sale
    assert Payment.objects.filter(reservation=reservation, status="paid").count() == 1
