"""Payments API: pay (idempotent, gated), read a payment, tickets, cancel-and-refund."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from concerts import selectors as concert_selectors
from concerts.api import ReservationOutput
from config.api import Pagination, replay_if_done, run_idempotent
from payments import selectors, services
from payments.exceptions import AlreadyPaid
from queueing import services as queue_services
from queueing.api import QUEUE_TOKEN_HEADER
from queueing.exceptions import QueueGateError
from queueing.gate import HEADER as QUEUE_HEADER
from wallet.api import IDEMPOTENCY_KEY

SCOPE = "payments.pay"


class PayInput(serializers.Serializer):
    reservation_id = serializers.IntegerField(min_value=1)


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


class PaymentListApi(APIView):
    """Pay a held seat from the wallet. Needs an active queue token; accepts an Idempotency-Key."""

    @extend_schema(
        request=PayInput,
        parameters=[QUEUE_TOKEN_HEADER, IDEMPOTENCY_KEY],
        responses={201: PaymentOutput},
    )
    def post(self, request: Request) -> Response:
        replay = replay_if_done(request, scope=SCOPE)
        if replay is not None:
            return replay  # the first answer stands, even though the turn has since ended
        data = PayInput(data=request.data)
        data.is_valid(raise_exception=True)
        reservation_id = data.validated_data["reservation_id"]
        reservation = concert_selectors.reservation_get_for(
            user_id=request.user.pk, reservation_id=reservation_id
        )
        now = timezone.now()
        try:
            queue_services.queue_gate_pass(
                key=request.headers.get(QUEUE_HEADER),
                user=request.user,
                concert_id=reservation.schedule.concert_id,
                now=now,
            )
        except QueueGateError:
            # A payment ends the fan's turn, and commits together with its stored answer:
            # a retry that lost the race replays that answer, and any other second try of
            # a paid reservation is "already paid", not "your turn ended".
            replay = replay_if_done(request, scope=SCOPE)
            if replay is not None:
                return replay
            if selectors.reservation_is_paid(
                user_id=request.user.pk, reservation_id=reservation_id
            ):
                raise AlreadyPaid() from None
            raise

        def execute():
            payment = services.payment_create(
                user=request.user, reservation_id=reservation_id, now=timezone.now()
            )
            return 201, PaymentOutput(payment).data

        return run_idempotent(request, scope=SCOPE, execute=execute)


class PaymentDetailApi(APIView):
    @extend_schema(responses=PaymentOutput)
    def get(self, request: Request, payment_id: int) -> Response:
        payment = selectors.payment_get_for(user_id=request.user.pk, payment_id=payment_id)
        return Response(PaymentOutput(payment).data)


class TicketListOutput(serializers.Serializer):
    payment_id = serializers.IntegerField(source="id")
    reservation_id = serializers.IntegerField()
    concert_id = serializers.IntegerField(source="reservation.schedule.concert_id")
    concert = serializers.CharField(source="reservation.schedule.concert.title")
    venue = serializers.CharField(source="reservation.schedule.concert.venue")
    schedule_id = serializers.IntegerField(source="reservation.schedule_id")
    starts_at = serializers.DateTimeField(source="reservation.schedule.starts_at")
    seat_number = serializers.IntegerField(source="reservation.seat.number")
    amount_paid = serializers.IntegerField(source="amount")
    paid_at = serializers.DateTimeField()


class TicketListApi(APIView):
    """The fan's confirmed bookings, paginated."""

    @extend_schema(responses=TicketListOutput(many=True))
    def get(self, request: Request) -> Response:
        paginator = Pagination()
        page = paginator.paginate_queryset(
            selectors.ticket_list_for(user_id=request.user.pk), request, view=self
        )
        return paginator.get_paginated_response(TicketListOutput(page, many=True).data)


class CancelOutput(ReservationOutput):
    refunded_amount = serializers.IntegerField()


class ReservationDetailApi(APIView):
    """One of the fan's reservations (GET), or cancel it (DELETE): a hold is released,
    a paid booking is cancelled and refunded to the wallet. Others' are 404.
    Needs authentication only: a fan whose turn has ended can still cancel."""

    @extend_schema(responses=ReservationOutput)
    def get(self, request: Request, reservation_id: int) -> Response:
        reservation = concert_selectors.reservation_get_for(
            user_id=request.user.pk, reservation_id=reservation_id
        )
        return Response(ReservationOutput(reservation, context={"now": timezone.now()}).data)

    @extend_schema(responses=CancelOutput)
    def delete(self, request: Request, reservation_id: int) -> Response:
        now = timezone.now()
        cancellation = services.booking_cancel(
            user_id=request.user.pk, reservation_id=reservation_id, now=now
        )
        body = ReservationOutput(cancellation.reservation, context={"now": now}).data
        return Response({**body, "refunded_amount": cancellation.refunded_amount})
