"""Writes for payments: pay a held seat, cancel-and-refund a booking.

Paying is one transaction that locks, in the global order, the fan, the seat,
the reservation (concerts.reservation_lock) and then the wallet (wallet_debit),
so it cannot deadlock with holds, cancellations or the cleanup jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from concerts import services as concert_services
from concerts.models import Reservation
from payments.exceptions import (
    AlreadyPaid,
    CancellationClosed,
    HoldExpired,
    ReservationNotPayable,
)
from payments.models import Payment
from queueing import services as queue_services
from wallet import services as wallet_services
from wallet.exceptions import InsufficientBalance

RStatus = Reservation.Status


def payment_create(*, user: AbstractBaseUser, reservation_id: int, now: datetime) -> Payment:
    """Pay the fan's held seat from their wallet.

    In one transaction: check the hold, record the payment, debit the wallet
    (a ledger entry), confirm the reservation, and end the fan's queue token;
    the freed queue slot is refilled right after commit. If the wallet falls
    short, nothing is debited, the hold is released so the seat is on sale at
    once, the failed attempt is recorded, and InsufficientBalance (402) is raised.
    """
    try:
        with transaction.atomic():
            reservation = concert_services.reservation_lock(
                user_id=user.pk, reservation_id=reservation_id
            )
            _check_payable(reservation, now=now)
            payment = Payment.objects.create(
                user_id=user.pk,
                reservation=reservation,
                amount=reservation.price,
                status=Payment.Status.PAID,
                created_at=now,
                paid_at=now,
            )
            wallet_services.wallet_debit(
                user_id=user.pk,
                amount=reservation.price,
                now=now,
                payment_id=payment.pk,
                reservation_id=reservation.pk,
            )
            concert_services.reservation_confirm(reservation=reservation, now=now)
            queue_services.queue_token_end(
                user_id=user.pk,
                concert_id=reservation.schedule.concert_id,
                now=now,
                reason="paid",
            )
    except HoldExpired:
        _record_failure(user=user, reservation_id=reservation_id, reason="hold_expired", now=now)
        raise
    except InsufficientBalance:
        _record_failure(
            user=user, reservation_id=reservation_id, reason="insufficient_balance", now=now
        )
        raise
    payment.reservation = reservation
    return payment


def _check_payable(reservation: Reservation, *, now: datetime) -> None:
    if reservation.status == RStatus.CONFIRMED:
        raise AlreadyPaid()
    if reservation.status == RStatus.CANCELLED:
        raise ReservationNotPayable()
    if reservation.effective_status(now=now) == RStatus.EXPIRED:
        concert_services.reservation_expire(reservation=reservation, now=now)
        raise HoldExpired()


def _record_failure(
    *, user: AbstractBaseUser, reservation_id: int, reason: str, now: datetime
) -> None:
    """After a refused payment (its transaction rolled back): free the seat at once and
    keep the failed attempt, with its reason, for audit."""
    with transaction.atomic():
        reservation = concert_services.reservation_lock(
            user_id=user.pk, reservation_id=reservation_id
        )
        if reservation.status == RStatus.HELD:
            if reservation.effective_status(now=now) == RStatus.EXPIRED:
                concert_services.reservation_expire(reservation=reservation, now=now)
            else:
                concert_services.reservation_release(reservation=reservation, now=now)
        Payment.objects.create(
            user_id=user.pk,
            reservation=reservation,
            amount=reservation.price,
            status=Payment.Status.FAILED,
            failure_reason=reason,
            created_at=now,
        )


@dataclass(frozen=True)
class Cancellation:
    reservation: Reservation
    refunded_amount: int


def booking_cancel(*, user_id: int, reservation_id: int, now: datetime) -> Cancellation:
    """Cancel a hold, or cancel a paid booking and refund it, freeing the seat at once.

    A paid booking can be cancelled until its date's booking closes (then 409
    cancellation_closed). The refund, the payment's new status and the freed seat
    commit together. Idempotent: cancelling again refunds nothing more.
    """
    with transaction.atomic():
        reservation = concert_services.reservation_lock(
            user_id=user_id, reservation_id=reservation_id
        )
        payment = (
            Payment.objects.select_for_update(no_key=True)
            .filter(
                reservation=reservation, status__in=[Payment.Status.PAID, Payment.Status.REFUNDED]
            )
            .first()
        )
        if reservation.status == RStatus.HELD:
            if reservation.effective_status(now=now) == RStatus.EXPIRED:
                concert_services.reservation_expire(reservation=reservation, now=now)
            else:
                concert_services.reservation_release(reservation=reservation, now=now)
            return Cancellation(reservation, 0)
        if reservation.status != RStatus.CONFIRMED:
            refunded = (
                payment.amount if payment and payment.status == Payment.Status.REFUNDED else 0
            )
            return Cancellation(reservation, refunded)
        if now >= reservation.schedule.booking_closes_at:
            raise CancellationClosed()
        wallet_services.wallet_refund(
            user_id=user_id,
            amount=payment.amount,
            now=now,
            payment_id=payment.pk,
            reservation_id=reservation.pk,
        )
        Payment.objects.filter(pk=payment.pk).update(
            status=Payment.Status.REFUNDED, refunded_at=now
        )
        concert_services.reservation_release(reservation=reservation, now=now)
        return Cancellation(reservation, payment.amount)


def payment_refund_by_operator(*, payment_id: int, now: datetime) -> Cancellation:
    """An operator refunds a paid booking: the same rules as the fan's own cancellation."""
    payment = Payment.objects.get(pk=payment_id)
    return booking_cancel(user_id=payment.user_id, reservation_id=payment.reservation_id, now=now)
