"""Between the gate and the write (issue 10): the write re-checks under its locks.

A page or view may pass the gate a moment before the write runs. Whatever happens
in that gap (the turn lapses, an operator ends it, the hold expires while the
payment waits for its locks), the outcome is consistent: paid with the seat the
fan's, or refused with nothing debited and the seat where the rules put it.
"""

import threading
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from concerts import services as concert_services
from concerts.models import Reservation
from payments import services
from payments.models import Payment
from queueing import services as queue_services
from queueing.models import QueueToken, WaitingRoom
from tests.concurrency.helpers import errors, pay_through_reservation_lock, run_concurrently
from tests.conftest import admit, hold_seat
from tests.factories import ConcertFactory, UserFactory, make_schedule
from wallet import services as wallet_services
from wallet.models import LedgerEntry

pytestmark = pytest.mark.django_db(transaction=True)


def setup():
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=1000)
    schedule = make_schedule(concert)
    fan = UserFactory()
    wallet_services.wallet_charge(user_id=fan.pk, amount=200_000, now=timezone.now())
    reservation = hold_seat(fan, schedule, 1)
    return concert, schedule, fan, reservation, QueueToken.objects.get(user=fan)


def pay(fan, reservation, key, now):
    return services.payment_submit(
        user=fan, reservation_id=reservation.id, queue_key=key, idempotency_key=None, now=now
    )


def rival_takes_seat_1(rival, schedule, key, now, *, after, done):
    """The rival, once `after` is set, holds seat 1 at `now`; sets `done` either way."""
    assert after.wait(30)
    try:
        return concert_services.seat_hold_create(
            user=rival, schedule_id=schedule.id, seat_number=1, queue_key=key, now=now
        ).user_id
    finally:
        done.set()


def test_an_operator_ending_the_turn_after_the_gate_stops_the_payment():
    concert, _, fan, reservation, token = setup()
    now = timezone.now()
    queue_services.queue_gate_pass(key=token.key, user=fan, concert_id=concert.id, now=now)
    queue_services.queue_tokens_end(ids=[token.pk], now=now, reason="operator")  # the gap
    with pytest.raises(Exception) as refused:
        pay(fan, reservation, token.key, now)
    assert refused.value.code == "queue_token_expired"
    reservation.refresh_from_db()
    assert reservation.status == "held"  # a refused turn does not cost the fan the hold
    assert not LedgerEntry.objects.filter(kind="payment").exists()


def test_an_operator_ending_the_turn_after_the_gate_stops_the_hold():
    concert, schedule, fan, _, token = setup()
    now = timezone.now()
    queue_services.queue_gate_pass(key=token.key, user=fan, concert_id=concert.id, now=now)
    queue_services.queue_tokens_end(ids=[token.pk], now=now, reason="operator")
    with pytest.raises(Exception) as refused:
        concert_services.seat_hold_create(
            user=fan, schedule_id=schedule.id, seat_number=2, queue_key=token.key, now=now
        )
    assert refused.value.code == "queue_token_expired"
    assert not Reservation.objects.filter(seat__number=2).exists()


def test_a_hold_that_expires_while_the_payment_waits_for_its_locks_is_not_sold_twice():
    """The payment arrives a moment before the hold ends, then waits for the fan's
    lock (another of the fan's requests holds it). Meanwhile the hold expires and
    another fan takes the seat. When the payment gets its locks it finds the hold
    ended: refused, nothing debited, and the seat stays the other fan's."""
    _, schedule, fan, reservation, token = setup()
    rival = UserFactory()
    arrived_at = reservation.expires_at - timedelta(milliseconds=1)
    after_expiry = reservation.expires_at + timedelta(seconds=1)
    rival_key = admit(rival, schedule.concert_id, now=after_expiry).key
    fan_lock_taken, rival_done = threading.Event(), threading.Event()

    def another_request_of_the_fan():
        with transaction.atomic():
            get_user_model().objects.select_for_update(no_key=True).filter(pk=fan.pk).exists()
            fan_lock_taken.set()
            assert rival_done.wait(30)

    def the_payment():
        assert fan_lock_taken.wait(30)
        try:
            return pay(fan, reservation, token.key, arrived_at).status
        except Exception as exc:
            return exc.code

    def the_rival():
        return rival_takes_seat_1(
            rival, schedule, rival_key, after_expiry, after=fan_lock_taken, done=rival_done
        )

    results = run_concurrently(
        lambda job: job(), [(another_request_of_the_fan,), (the_payment,), (the_rival,)]
    )
    assert errors(results) == []
    assert results[1][1] == "hold_expired" and results[2][1] == rival.pk
    assert not LedgerEntry.objects.filter(wallet_id=fan.pk, kind="payment").exists()
    assert Payment.objects.get(user=fan).status == "failed"
    live = Reservation.objects.filter(seat__number=1, status__in=["held", "confirmed"])
    assert [r.user_id for r in live] == [rival.pk]


def test_a_payment_that_arrived_in_time_is_honoured_when_nobody_took_the_seat():
    """The same wait, with no rival: the payment is judged as of its arrival, while
    the hold was live, and the seat, still locked by it, becomes the fan's."""
    _, _, fan, reservation, token = setup()
    arrived_at = reservation.expires_at - timedelta(milliseconds=1)
    answer = pay(fan, reservation, token.key, arrived_at)
    assert answer.status == 201
    reservation.refresh_from_db()
    assert reservation.status == "confirmed"


def test_control_a_payment_trusting_what_it_read_before_the_wait_sells_the_seat_twice(
    monkeypatch,
):
    """Read the hold before waiting for the locks (a stale read), confirm without the
    held check, and without the one-live-reservation-per-seat constraint: the rival's
    seat is sold to the fan too."""
    from tests.concurrency.helpers import without_constraint

    _, schedule, fan, reservation, token = setup()

    def stale_lock(*, user_id, reservation_id, before_the_wait=lambda: None):
        snapshot = Reservation.objects.select_related("seat", "schedule__concert").get(
            pk=reservation_id
        )
        before_the_wait()
        get_user_model().objects.select_for_update(no_key=True).filter(pk=user_id).exists()
        return snapshot

    def confirm_blindly(*, user_id, concert_id, ids, now, turn_end=None, then=()):
        confirmed = Reservation.objects.filter(id__in=ids).update(status="confirmed")
        return concert_services.Confirmation(confirmed, still_held=False)

    monkeypatch.setattr(services.concert_services, "reservation_lock", stale_lock)
    pay_through_reservation_lock(monkeypatch, services.concert_services)
    monkeypatch.setattr(services.concert_services, "reservations_confirm", confirm_blindly)
    monkeypatch.setattr(services.queue_services, "queue_turn_end", lambda **kw: None)
    rival = UserFactory()
    arrived_at = reservation.expires_at - timedelta(milliseconds=1)
    after_expiry = reservation.expires_at + timedelta(seconds=1)
    rival_key = admit(rival, schedule.concert_id, now=after_expiry).key
    with without_constraint(
        table="payments_payment",  # emptied afterwards, like the index's own table below
        drop="DROP INDEX reservation_one_live_per_seat",
        create="CREATE UNIQUE INDEX reservation_one_live_per_seat ON concerts_reservation "
        "(seat_id) WHERE status IN ('held', 'confirmed')",
    ):
        read, rival_done = threading.Event(), threading.Event()

        def the_payment():
            def let_the_rival_in():
                read.set()
                assert rival_done.wait(30)

            def signalled(**kwargs):
                return stale_lock(**kwargs, before_the_wait=let_the_rival_in)

            monkeypatch.setattr(services.concert_services, "reservation_lock", signalled)
            return pay(fan, reservation, token.key, arrived_at).status

        def the_rival():
            return rival_takes_seat_1(
                rival, schedule, rival_key, after_expiry, after=read, done=rival_done
            )

        results = run_concurrently(lambda job: job(), [(the_payment,), (the_rival,)])
        assert results == [("ok", 201), ("ok", rival.pk)]
        live = Reservation.objects.filter(seat__number=1, status__in=["held", "confirmed"])
        assert sorted(r.user_id for r in live) == sorted([fan.pk, rival.pk])  # sold twice
        Reservation.objects.filter(seat__number=1).exclude(user=rival).update(status="expired")


def a_hold_commits_while_the_payment_waits_for_the_fan(monkeypatch, *, asked_before_lock: bool):
    """The fan pays for seat 1 while, in another request, holding seat 2. The hold has
    the fan's lock (paused right after its lock statement) when the payment starts
    and waits for that lock; the hold then commits, and the payment goes on. Returns the turn's
    status and whether seat 2 is held, once both are done.

    With `asked_before_lock`, the payment asks whether the fan holds other seats in
    a snapshot taken before its wait (as a lock statement that also asked it would):
    it misses seat 2."""
    concert, schedule, fan, reservation, token = setup()
    now = timezone.now()
    fan_locked, payment_waits = threading.Event(), threading.Event()
    real_insert = concert_services._hold_insert_if_free  # the statement after the locks

    def paused_after_the_locks(**kwargs):
        fan_locked.set()
        assert payment_waits.wait(30)
        return real_insert(**kwargs)

    monkeypatch.setattr(concert_services, "_hold_insert_if_free", paused_after_the_locks)
    if asked_before_lock:
        real_lock, real_confirm = (
            concert_services.reservations_lock,
            concert_services.reservations_confirm,
        )
        asked = {}

        def lock_after_asking(*, user_id, reservation_ids):
            asked["others"] = (
                Reservation.objects.filter(
                    user_id=user_id,
                    status="held",
                    expires_at__gt=now,
                    schedule__concert_id=concert.id,
                )  # fmt: skip
                .exclude(id__in=reservation_ids)
                .exists()
            )
            return real_lock(user_id=user_id, reservation_ids=reservation_ids)

        def confirm_with_that_answer(*, turn_end=None, then=(), **kwargs):
            # The turn's end is then decided in Python, on the answer asked before.
            confirmed = real_confirm(**kwargs).confirmed
            return concert_services.Confirmation(confirmed, still_held=asked["others"])

        monkeypatch.setattr(concert_services, "reservations_lock", lock_after_asking)
        monkeypatch.setattr(concert_services, "reservations_confirm", confirm_with_that_answer)

    def the_hold():
        return concert_services.seat_hold_create(
            user=fan, schedule_id=schedule.id, seat_number=2, queue_key=token.key, now=now
        ).seat.number

    def the_payment():
        assert fan_locked.wait(30)
        return pay(fan, reservation, token.key, now).status

    def let_the_hold_go_on_once_the_payment_waits():
        from tests.concurrency.test_sale_start_concurrency import wait_until_blocked_on_a_lock

        assert fan_locked.wait(30)
        wait_until_blocked_on_a_lock()
        payment_waits.set()

    jobs = [(the_hold,), (the_payment,), (let_the_hold_go_on_once_the_payment_waits,)]
    results = run_concurrently(lambda job: job(), jobs)
    assert errors(results) == []
    assert [value for _, value in results[:2]] == [2, 201]
    held = Reservation.objects.filter(
        user=fan, seat__number=2, status="held", expires_at__gt=now
    ).exists()
    return QueueToken.objects.get(pk=token.pk).status, held


def test_a_hold_committed_while_the_payment_waited_keeps_the_turn(monkeypatch):
    """The payment asks about the fan's other holds after its lock, never before: a
    turn never ends while the fan still holds a seat of the concert."""
    assert a_hold_commits_while_the_payment_waits_for_the_fan(
        monkeypatch, asked_before_lock=False
    ) == ("active", True)


def test_control_asked_before_the_lock_the_turn_ends_with_a_seat_still_held(monkeypatch):
    assert a_hold_commits_while_the_payment_waits_for_the_fan(
        monkeypatch, asked_before_lock=True
    ) == ("ended", True)
