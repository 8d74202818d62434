"""How the payments resource reads over the API: shared by the views and by
payment_submit, whose answer is stored for idempotent replays."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


class TicketOutput(serializers.Serializer):
    concert_id = serializers.IntegerField(source="reservation.schedule.concert_id")
    schedule_id = serializers.IntegerField(source="reservation.schedule_id")
    starts_at = serializers.DateTimeField(source="reservation.schedule.starts_at")
    seat_number = serializers.IntegerField(source="reservation.seat.number")


class PaymentOutput(serializers.Serializer):
    payment_id = serializers.IntegerField(source="id")
    reservation_id = serializers.IntegerField()
    amount = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["paid", "refunded", "failed"])
    failure_reason = serializers.CharField(
        allow_null=True, help_text="Why a failed payment failed; null otherwise."
    )
    paid_at = serializers.DateTimeField(allow_null=True)
    refunded_at = serializers.DateTimeField(allow_null=True)
    ticket = serializers.SerializerMethodField(help_text="The seat it bought; null unless paid.")

    @extend_schema_field(TicketOutput(allow_null=True))
    def get_ticket(self, payment) -> dict | None:
        return TicketOutput(payment).data if payment.status == "paid" else None

    def to_representation(self, payment):
        data = super().to_representation(payment)
        data["failure_reason"] = payment.failure_reason or None
        return data


class CheckoutOutput(serializers.Serializer):
    checkout_id = serializers.IntegerField()
    amount = serializers.IntegerField(help_text="The total debited, in won.")
    status = serializers.ChoiceField(choices=["paid", "partly_refunded", "refunded"])
    paid_at = serializers.DateTimeField()
    payments = PaymentOutput(many=True, help_text="One per seat, each with its ticket.")


_datetime = serializers.DateTimeField()


def when_text(value) -> str | None:
    """A datetime as a DRF DateTimeField renders it (None stays None)."""
    return None if value is None else _datetime.to_representation(value)


def payment_body(payment) -> dict:
    """PaymentOutput(payment).data, built directly: every payment answers with it, and
    the nested serializers cost as much as a statement. A test holds the two equal."""
    ticket = None
    if payment.status == "paid":
        reservation = payment.reservation
        ticket = {
            "concert_id": reservation.schedule.concert_id,
            "schedule_id": reservation.schedule_id,
            "starts_at": when_text(reservation.schedule.starts_at),
            "seat_number": reservation.seat.number,
        }
    return {
        "payment_id": payment.id,
        "reservation_id": payment.reservation_id,
        "amount": payment.amount,
        "status": payment.status,
        "failure_reason": payment.failure_reason or None,
        "paid_at": when_text(payment.paid_at),
        "refunded_at": when_text(payment.refunded_at),
        "ticket": ticket,
    }
