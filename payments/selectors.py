"""Reads for payments: a payment, the fan's tickets, and money reconciliation."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, Q, QuerySet, Sum

from concerts import selectors as concert_selectors
from concerts.exceptions import ConcertNotFound
from concerts.models import Concert, Reservation
from payments.exceptions import CheckoutNotFound, PaymentNotFound
from payments.models import Payment
from queueing import selectors as queue_selectors
from wallet.models import LedgerEntry, Wallet
from wallet.selectors import wallet_mismatches


def payment_get_for(*, user_id: int, payment_id: int) -> Payment:
    payment = (
        Payment.objects.filter(user_id=user_id, pk=payment_id)
        .select_related("reservation__seat", "reservation__schedule__concert")
        .first()
    )
    if payment is None:
        raise PaymentNotFound()
    return payment


def checkout_payments_for(*, user_id: int, checkout_id: int) -> list[Payment]:
    """The seats of one of the fan's checkouts; anyone else's is CheckoutNotFound."""
    payments = list(
        Payment.objects.filter(Q(checkout_id=checkout_id) | Q(pk=checkout_id, checkout_id=None))
        .filter(user_id=user_id)
        .exclude(status=Payment.Status.FAILED)
        .select_related("reservation__seat", "reservation__schedule__concert")
        .order_by("id")
    )
    if not payments:
        raise CheckoutNotFound()
    return payments


def payment_list_for(*, user_id: int) -> QuerySet[Payment]:
    """The fan's payments of every status, newest first."""
    return (
        Payment.objects.filter(user_id=user_id)
        .select_related("reservation__seat", "reservation__schedule__concert")
        .order_by("-id")
    )


def ticket_list_for(*, user_id: int) -> QuerySet[Payment]:
    """The fan's confirmed bookings, as their paid payments, soonest show first."""
    return (
        Payment.objects.filter(user_id=user_id, status=Payment.Status.PAID)
        .select_related("reservation__seat", "reservation__schedule__concert")
        .order_by("reservation__schedule__starts_at", "id")
    )


@dataclass
class MoneyReport:
    charges: int = 0
    payments: int = 0
    refunds: int = 0
    balances: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def money_reconcile() -> MoneyReport:
    """Check the money across the whole system (read in one snapshot by the caller
    if it wants one; see the management command).

    - charges = balances + payments - refunds, summed over the ledger and wallets;
    - every wallet's balance equals its own ledger;
    - every confirmed reservation has exactly one paid payment and one matching debit;
    - every paid payment belongs to a confirmed reservation;
    - every refunded payment has exactly one matching refund entry.
    """
    report = MoneyReport()
    sums = dict(
        LedgerEntry.objects.values("kind")
        .annotate(total=Sum("amount"))
        .values_list("kind", "total")
    )
    report.charges = sums.get("charge") or 0
    report.payments = sums.get("payment") or 0
    report.refunds = sums.get("refund") or 0
    report.balances = Wallet.objects.aggregate(total=Sum("balance"))["total"] or 0
    if report.charges != report.balances + report.payments - report.refunds:
        report.problems.append(
            f"charges ₩{report.charges:,} != balances ₩{report.balances:,} + payments "
            f"₩{report.payments:,} - refunds ₩{report.refunds:,}"
        )
    for m in wallet_mismatches():
        report.problems.append(
            f"wallet of {m.username} (user {m.user_id}): balance ₩{m.balance:,}, "
            f"ledger ₩{m.ledger_sum:,}"
        )

    confirmed = Reservation.objects.filter(status=Reservation.Status.CONFIRMED).annotate(
        paid=Count("payments", filter=Q(payments__status=Payment.Status.PAID))
    )
    for reservation in confirmed.exclude(paid=1):
        report.problems.append(
            f"reservation {reservation.pk} is confirmed with {reservation.paid} paid payment(s)"
        )
    debits = {
        row["payment_id"]: (row["n"], row["total"])
        for row in LedgerEntry.objects.filter(kind="payment")
        .values("payment_id")
        .annotate(n=Count("id"), total=Sum("amount"))
    }
    refunds = {
        row["payment_id"]: (row["n"], row["total"])
        for row in LedgerEntry.objects.filter(kind="refund")
        .values("payment_id")
        .annotate(n=Count("id"), total=Sum("amount"))
    }
    successful = Payment.objects.filter(
        status__in=[Payment.Status.PAID, Payment.Status.REFUNDED]
    ).select_related("reservation")
    checkouts: dict[int, list[Payment]] = defaultdict(list)
    for payment in successful:
        checkouts[payment.checkout_id or payment.pk].append(payment)
    for checkout_id, members in checkouts.items():  # one debit per checkout, for its sum
        expected = sum(p.amount for p in members)
        n, total = debits.get(checkout_id, (0, 0))
        if (n, total) != (1, expected):
            seats = ", ".join(f"{p.pk} (reservation {p.reservation_id})" for p in members)
            report.problems.append(
                f"payment {seats} has {n} ledger debit(s) totalling ₩{total or 0:,}, "
                f"expected one of ₩{expected:,}"
            )
    for payment in successful:
        if payment.status == Payment.Status.PAID:
            if payment.reservation.status != Reservation.Status.CONFIRMED:
                report.problems.append(
                    f"payment {payment.pk} is paid but reservation {payment.reservation_id} "
                    f"is {payment.reservation.status}"
                )
        else:
            n, total = refunds.get(payment.pk, (0, 0))
            if (n, total) != (1, payment.amount):
                report.problems.append(
                    f"refunded payment {payment.pk} has {n} refund entr(ies) totalling "
                    f"₩{total or 0:,}, expected one of ₩{payment.amount:,}"
                )
    orphans = LedgerEntry.objects.filter(kind="payment", payment_id__isnull=True).count()
    if orphans:
        report.problems.append(f"{orphans} ledger debit(s) belong to no payment")
    return report


# --- the operators' live sale dashboard -----------------------------------------


@dataclass(frozen=True)
class SaleDashboard:
    """One concert's sale, right now and over the last 30 minutes, for operators."""

    concert: Concert
    room: queue_selectors.RoomLive
    dates: list[concert_selectors.DateSales]
    revenue: int  # won paid for the concert's seats, less refunds
    sales_series: list[int]  # seats paid per minute

    @property
    def held(self) -> int:
        return sum(d.held for d in self.dates)

    @property
    def sold(self) -> int:
        return sum(d.sold for d in self.dates)

    @property
    def admitted_last_minute(self) -> int:
        return self.room.admissions_series[-1] if self.room.admissions_series else 0

    @property
    def early_polls_last_minute(self) -> int:
        return self.room.early_polls_series[-1] if self.room.early_polls_series else 0


def sale_dashboard(*, concert_id: int, now: datetime) -> SaleDashboard:
    """The live sale: the line (queueing), seats per date (concerts) and the money
    (payments), each read by its own app. A handful of queries, for a page that
    refreshes every few seconds for a few operators."""
    concert = Concert.objects.filter(pk=concert_id).first()
    if concert is None:
        raise ConcertNotFound()
    room = queue_selectors.room_live(concert_id=concert_id, now=now)
    revenue = (
        Payment.objects.filter(
            reservation__schedule__concert_id=concert_id, status=Payment.Status.PAID
        ).aggregate(total=Sum("amount"))["total"]
        or 0
    )
    return SaleDashboard(
        concert=concert,
        room=room,
        dates=concert_selectors.sales_by_date(concert_id=concert_id, now=now),
        revenue=revenue,
        sales_series=concert_selectors.sales_per_minute(
            concert_id=concert_id, minutes=room.minutes
        ),
    )
