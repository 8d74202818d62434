"""Writes for payments: pay for a held seat, cancel a booking, refund it.

Each command has one entry point, called once by the API view, the page and
the admin action alike:
- payment_submit: the gate, idempotency, "already paid?" and the transaction;
- booking_cancel: a fan's cancel, of a hold (released) or a paid booking (refunded);
- payment_refund_by_operator: an operator's refund, by payment.

Paying is one transaction that locks, in the global order, the fan, the seat and
the reservation (concerts.reservations_lock, one statement); then one statement
(concerts.reservations_confirm) confirms the seat, ends the fan's turn, locking the
fan's queue token (queueing's queue_turn_end_part), records the payment (`_paying`)
and, once the turn has ended, locks the wallet and debits it (wallet's
wallet_debit_part). A fan who keeps the turn (another seat held) is debited after
the turn's lock, by wallet_debit. The wallet's lock comes last either way, so a
payment cannot deadlock with holds, cancellations or the cleanup jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import partial

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from concerts import services as concert_services
from concerts.models import Reservation
from config import rawsql
from config.idempotency import Answer, fingerprint, run_once
from payments.exceptions import (
    AlreadyPaid,
    CancellationClosed,
    CheckoutInvalid,
    HoldExpired,
    PaymentMissing,
    PaymentNotFound,
    PaymentNotRefundable,
    ReservationNotPayable,
)
from payments.models import Payment
from payments.serializers import CheckoutOutput, payment_body
from queueing import services as queue_services
from wallet import services as wallet_services
from wallet.exceptions import InsufficientBalance
from wallet.services import LedgerRef

RStatus = Reservation.Status
End = Reservation.EndReason
PAY_SCOPE = "payments.pay"
CHECKOUT_SCOPE = "payments.checkout"
MAX_CHECKOUT_SEATS = 10


def payment_submit(
    *,
    user: AbstractBaseUser,
    reservation_id: int,
    queue_key: str | None,
    idempotency_key: str | None,
    now: datetime,
) -> Answer:
    """Pay the fan's held seat from their wallet; the answer is the API's (status, body).

    The same Idempotency-Key replays the first answer, even after the payment ended
    the fan's turn. Otherwise, in one transaction under the locks: a paid
    reservation is AlreadyPaid (this outranks "your turn ended"); the fan's turn is
    checked (gate errors are not stored, so a retry can succeed); the hold must be
    live; the payment is recorded, the wallet debited (a ledger entry) and the seat
    confirmed. The turn ends once the fan has no live hold left for the concert,
    and the freed queue slot is refilled right after commit. If the wallet falls
    short or the hold has lapsed, nothing is debited, the seat goes back on sale at
    once, the failed attempt is recorded, and the refusal (402 insufficient_balance,
    409 hold_expired) is the answer.
    """

    def execute() -> tuple[int, dict]:
        (payment,) = _pay(user=user, reservation_ids=[reservation_id], queue_key=queue_key, now=now)
        return 201, payment_body(payment)

    return run_once(
        user_id=user.pk,
        scope=PAY_SCOPE,
        key=idempotency_key,
        print_=fingerprint(PAY_SCOPE, {"reservation_id": reservation_id}),
        now=now,
        execute=execute,
    )


def checkout_submit(
    *,
    user: AbstractBaseUser,
    reservation_ids: list[int],
    queue_key: str | None,
    idempotency_key: str | None,
    now: datetime,
    top_up: int = 0,
) -> Answer:
    """Pay several held seats of one concert in one payment: all or nothing, one
    wallet debit, one Idempotency-Key. The same rules as payment_submit, for every
    seat at once; the turn ends at checkout when no live hold is left.

    `top_up` (won, 0 for none) first charges the wallet in the same transaction, so
    a fan short of money tops up and pays in one step and never loses the seats to
    a surprise refusal: if the payment cannot go through, the top-up is undone too.
    """

    def execute() -> tuple[int, dict]:
        payments = _pay(
            user=user, reservation_ids=reservation_ids, queue_key=queue_key, now=now,
            top_up=top_up,
        )  # fmt: skip
        return 201, checkout_body(payments)

    return run_once(
        user_id=user.pk,
        scope=CHECKOUT_SCOPE,
        key=idempotency_key,
        print_=fingerprint(
            CHECKOUT_SCOPE, {"reservation_ids": sorted(reservation_ids), "top_up": top_up}
        ),
        now=now,
        execute=execute,
    )


def _checkout_status(statuses: set[str]) -> str:
    if statuses == {Payment.Status.PAID}:
        return "paid"
    return "refunded" if statuses == {Payment.Status.REFUNDED} else "partly_refunded"


def checkout_body(payments: list[Payment]) -> dict:
    return CheckoutOutput(
        {
            "checkout_id": payments[0].checkout_id or payments[0].pk,
            "amount": sum(p.amount for p in payments),
            "status": _checkout_status({p.status for p in payments}),
            "paid_at": payments[0].paid_at,
            "payments": payments,
        }
    ).data


def _pay(
    *,
    user: AbstractBaseUser,
    reservation_ids: list[int],
    queue_key: str | None,
    now: datetime,
    top_up: int = 0,
) -> list[Payment]:
    ids = sorted(set(reservation_ids))
    if not 1 <= len(ids) <= MAX_CHECKOUT_SEATS:
        raise CheckoutInvalid(f"A payment covers 1 to {MAX_CHECKOUT_SEATS} held seats.")
    try:
        # No savepoint: run_once's transaction holds this one (and its stored answer),
        # and a refusal rolls it back in full; what the refusal keeps (the seats given
        # back, the failed attempts) is its aftermath, which run_once commits after.
        with transaction.atomic(savepoint=False):
            reservations = concert_services.reservations_lock(user_id=user.pk, reservation_ids=ids)
            if any(r.status == RStatus.CONFIRMED for r in reservations):
                raise AlreadyPaid()
            concert_ids = {r.schedule.concert_id for r in reservations}
            if len(concert_ids) != 1:
                raise CheckoutInvalid("All the seats in one payment must be for one concert.")
            (concert_id,) = concert_ids
            # Beneath the lock, the write itself re-checks: only a live hold becomes
            # confirmed, so a payment can never confirm a seat twice or after its time.
            # It also says whether the fan holds other seats of the concert: if not,
            # the turn ends in the same statement; paying for some seats keeps it for
            # the others. (An error below rolls the confirmation back.)
            turn_end = queue_services.queue_turn_end_part(
                key=queue_key, user=user, concert_id=concert_id, now=now, reason="paid",
                unless=concert_services.OTHERS_HELD,
            )  # fmt: skip
            # And the payment rows and the debit too, unless a top-up must come first.
            ride = turn_end is not None and not top_up
            confirmation = concert_services.reservations_confirm(
                user_id=user.pk, concert_id=concert_id, ids=ids, now=now, turn_end=turn_end,
                then=_paying(user_id=user.pk, seats=len(ids), now=now) if ride else (),
            )  # fmt: skip
            confirmed, still_held, turn_tried, turn_ended, answers = confirmation
            if still_held:
                queue_services.queue_turn_lock(
                    key=queue_key, user=user, concert_id=concert_id, now=now
                )
            else:
                queue_services.queue_turn_end(
                    key=queue_key, user=user, concert_id=concert_id, now=now, reason="paid",
                    tried=turn_tried, ended=turn_ended,
                )  # fmt: skip
            if any(r.status == RStatus.CANCELLED for r in reservations):
                raise ReservationNotPayable()
            if not all(r.is_live(now=now) for r in reservations):
                raise HoldExpired()
            if confirmed != len(ids):  # reached only if the locks above failed us
                paid = Reservation.objects.filter(pk__in=ids, status=RStatus.CONFIRMED)
                raise AlreadyPaid() if paid.exists() else HoldExpired()
            paid_ids, debited = answers or (None, 0)
            if paid_ids is None:  # not written in the confirmation's statement
                payments = [
                    _payment_record(r, status=Payment.Status.PAID, now=now) for r in reservations
                ]
            else:
                payments = [
                    rawsql.saved(_payment(r, status=Payment.Status.PAID, now=now), pk)
                    for r, pk in zip(reservations, paid_ids, strict=True)
                ]
            if len(payments) > 1:  # a checkout of one seat keeps checkout_id null
                checkout_id = payments[0].pk
                Payment.objects.filter(pk__in=[p.pk for p in payments]).update(
                    checkout_id=checkout_id
                )
                for payment in payments:
                    payment.checkout_id = checkout_id
            if top_up:
                wallet_services.wallet_charge(user_id=user.pk, amount=top_up, now=now)
            if not debited:  # not in the statement: turn kept, no wallet, short, top-up
                wallet_services.wallet_debit(
                    user_id=user.pk,
                    amount=sum(p.amount for p in payments),
                    now=now,
                    ref=_ledger_ref(payments[0], seats=len(payments)),
                )
            for reservation in reservations:
                reservation.status = RStatus.CONFIRMED
    except HoldExpired as exc:
        exc.aftermath = partial(
            _record_failure, user=user, reservation_ids=ids, reason="hold_expired", now=now
        )
        raise
    except InsufficientBalance as exc:
        refusal = InsufficientBalance(
            f"{exc.message} Nothing was charged, and the seat{'s were' if len(ids) > 1 else ' was'}"
            " released for other fans.",
            details={**exc.details, "released_reservation_ids": ids},
        )
        refusal.aftermath = partial(
            _record_failure, user=user, reservation_ids=ids, reason="insufficient_balance", now=now
        )
        raise refusal from None
    for payment, reservation in zip(payments, reservations, strict=True):
        payment.reservation = reservation
    return payments


def _record_failure(
    *, user: AbstractBaseUser, reservation_ids: list[int], reason: str, now: datetime
) -> None:
    """A refused payment's aftermath, after its transaction rolled back (run_once runs
    it, in the transaction that stores the answer): give the seats back at once and
    keep each failed attempt, with its reason, for audit."""
    with transaction.atomic(savepoint=False):
        reservations = concert_services.reservations_lock(
            user_id=user.pk, reservation_ids=reservation_ids
        )
        concert_services.reservation_end(ids=reservation_ids, now=now, reason=End.PAYMENT_FAILED)
        for reservation in reservations:
            _payment_record(
                reservation, status=Payment.Status.FAILED, now=now, failure_reason=reason
            )


def _ledger_ref(payment: Payment, *, seats: int = 1) -> LedgerRef:
    """A seat's ledger reference; a checkout of several seats is debited once, under
    its first payment's id (its checkout_id) and no single reservation."""
    reservation_id = payment.reservation_id if seats == 1 else None
    return LedgerRef(payment_id=payment.pk, reservation_id=reservation_id)


def _paying(*, user_id: int, seats: int, now: datetime) -> tuple[rawsql.Part, rawsql.Part]:
    """A payment's writes as parts of reservations_confirm's statement (made with a
    turn_end): a paid payment for each hold it confirms (as `_payment` makes it;
    answered with their ids, in reservation order), then the wallet's debit of their
    sum, under the first one's id (`_ledger_ref`: a checkout of several seats names
    no reservation). A hold not confirmed gets no payment, and the caller refuses the
    whole payment. The debit rides only when the statement ended the turn, after the
    token's lock; a fan who keeps the turn (another seat held) is debited after
    queue_turn_lock, by wallet_debit, so the wallet's lock is last either way."""
    table, paid = Payment._meta.db_table, concert_services.PAID
    payments = rawsql.Part(
        f"paying AS (INSERT INTO {table} (user_id, reservation_id, amount, status,"
        f" failure_reason, created_at, paid_at) SELECT user_id, id, price, %s, '', %s, %s"
        f" FROM {paid} ORDER BY id RETURNING id, reservation_id, amount)",
        [Payment.Status.PAID, now, now],
        "(SELECT array_agg(id ORDER BY reservation_id) FROM paying)",
    )
    first = "(SELECT id FROM paying ORDER BY reservation_id LIMIT 1)"
    debit = wallet_services.wallet_debit_part(
        user_id=user_id, amount="(SELECT sum(amount) FROM paying)", now=now,
        ref=(first, "(SELECT reservation_id FROM paying)" if seats == 1 else "NULL"),
        when=concert_services.TURN_ENDED,
    )  # fmt: skip
    return payments, debit


def _payment(
    reservation: Reservation, *, status: str, now: datetime, failure_reason: str = ""
) -> Payment:
    """A payment attempt for the reservation's price: paid, or failed with its reason."""
    return Payment(
        user_id=reservation.user_id,
        reservation=reservation,
        amount=reservation.price,
        status=status,
        failure_reason=failure_reason,
        created_at=now,
        paid_at=now if status == Payment.Status.PAID else None,
    )


def _payment_record(
    reservation: Reservation, *, status: str, now: datetime, failure_reason: str = ""
) -> Payment:
    """`_payment`, written: plain SQL (one INSERT ... RETURNING id)."""
    payment = _payment(reservation, status=status, now=now, failure_reason=failure_reason)
    return rawsql.insert(payment)


@dataclass(frozen=True)
class Cancellation:
    reservation: Reservation
    refunded_amount: int
    status_before: str  # what the reservation was when the cancel arrived


def booking_cancel(*, user_id: int, reservation_id: int, now: datetime) -> Cancellation:
    """Cancel the fan's reservation, freeing the seat at once: a hold is released, a
    paid booking is refunded to the wallet.

    A paid booking can be cancelled until its date's booking closes (then 409
    cancellation_closed). The refund, the payment's new status and the freed seat
    commit together. Idempotent: cancelling again refunds nothing more and answers
    with the earlier refund.
    """
    with transaction.atomic():
        reservation = concert_services.reservation_lock(
            user_id=user_id, reservation_id=reservation_id
        )
        status_before = reservation.status
        if reservation.status == RStatus.HELD:
            concert_services.reservation_end_locked(
                reservation=reservation, now=now, reason=End.CANCELLED
            )
            return Cancellation(reservation, 0, status_before)
        payment = (
            Payment.objects.select_for_update(no_key=True)
            .filter(
                reservation=reservation, status__in=[Payment.Status.PAID, Payment.Status.REFUNDED]
            )
            .first()
        )
        if reservation.status != RStatus.CONFIRMED:
            refunded = (
                payment.amount if payment and payment.status == Payment.Status.REFUNDED else 0
            )
            return Cancellation(reservation, refunded, status_before)
        if payment is None or payment.status != Payment.Status.PAID:
            raise PaymentMissing(details={"reservation_id": reservation.pk})
        _refund_locked(reservation=reservation, payment=payment, now=now)
        return Cancellation(reservation, payment.amount, status_before)


def payment_refund_by_operator(*, payment_id: int, now: datetime) -> Cancellation:
    """An operator refunds a paid booking, by its payment: the same rule as the fan's
    cancel (until booking closes). Only a paid payment can be refunded; a failed
    or already refunded one is refused (409 payment_not_refundable)."""
    found = Payment.objects.filter(pk=payment_id).values_list("user_id", "reservation_id").first()
    if found is None:
        raise PaymentNotFound()
    user_id, reservation_id = found
    with transaction.atomic():
        reservation = concert_services.reservation_lock(
            user_id=user_id, reservation_id=reservation_id
        )
        payment = Payment.objects.select_for_update(no_key=True).get(pk=payment_id)
        if payment.status != Payment.Status.PAID or reservation.status != RStatus.CONFIRMED:
            raise PaymentNotRefundable(details={"status": payment.status})
        status_before = reservation.status
        _refund_locked(reservation=reservation, payment=payment, now=now)
        return Cancellation(reservation, payment.amount, status_before)


def _refund_locked(*, reservation: Reservation, payment: Payment, now: datetime) -> None:
    """The refund rule, written once: give a paid booking's money back and free its
    seat. Call under reservation_lock with the payment row locked."""
    if now >= reservation.schedule.booking_closes_at:
        raise CancellationClosed()
    wallet_services.wallet_refund(
        user_id=payment.user_id, amount=payment.amount, now=now, ref=_ledger_ref(payment)
    )
    Payment.objects.filter(pk=payment.pk).update(status=Payment.Status.REFUNDED, refunded_at=now)
    concert_services.reservation_end_locked(reservation=reservation, now=now, reason=End.REFUNDED)
