"""How the payments resource reads over the API: shared by the views and by
payment_submit, whose answer is stored for idempotent replays."""

from __future__ import annotations

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
    status = serializers.CharField()
    paid_at = serializers.DateTimeField()
    ticket = TicketOutput(source="*")
