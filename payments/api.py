"""The reservations and payments resources: hold a seat, read and cancel
reservations, pay (idempotent, gated), read a payment, list tickets.

Each view parses its input, makes one service or selector call and renders the
result; errors render as the envelope (config.api).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from concerts import selectors as concert_selectors
from concerts import services as concert_services
from concerts.models import SEATS_PER_SCHEDULE
from config import fastlane
from config.api import (
    IDEMPOTENCY_KEY_PARAMETER,
    QUEUE_TOKEN_HEADER,
    QUEUE_TOKEN_PARAMETER,
    StrictIntegerField,
    answer_response,
    id_field,
    idempotency_key,
    paginated,
    request_header,
)
from config.cache import Reply, RoundTrip
from config.errors import DomainError
from config.idempotency import Answer
from config.schema import paginated_list
from payments import selectors, services
from payments.serializers import CheckoutOutput, PaymentOutput, when_text
from queueing.gate import queue_gate_codes

# --- reservations -------------------------------------------------------------


class ReservationOutput(serializers.Serializer):
    reservation_id = serializers.IntegerField(source="id")
    schedule_id = serializers.IntegerField()
    seat_number = serializers.IntegerField(source="seat.number")
    price = serializers.IntegerField()
    status = serializers.SerializerMethodField()
    expires_at = serializers.DateTimeField(allow_null=True)

    def get_status(self, reservation) -> str:
        return reservation.effective_status(now=self.context["now"])


def reservation_body(reservation, *, now) -> dict:
    """ReservationOutput(reservation, context={"now": now}).data, built directly:
    every hold answers with it, and a serializer copies its fields for each
    instance (14 % of a hold's instructions: 3.74 to 3.20 million, bench.instructions).
    A test holds the two equal."""
    return {
        "reservation_id": reservation.id,
        "schedule_id": reservation.schedule_id,
        "seat_number": reservation.seat.number,
        "price": reservation.price,
        "status": reservation.effective_status(now=now),
        "expires_at": when_text(reservation.expires_at),
    }


class HoldInput(serializers.Serializer):
    schedule_id = id_field()
    seat_number = StrictIntegerField(min_value=1, max_value=SEATS_PER_SCHEDULE)


class ReservationListApi(APIView):
    """The fan's own reservations (GET), or a new seat hold (POST, needs an active
    queue token for the date's concert)."""

    paginated = True
    error_codes = {
        "post": [
            *queue_gate_codes(),
            "seat_not_found",
            "schedule_not_found",
            "booking_closed",
            "seat_unavailable",
            "seat_already_yours",
            "seat_limit_reached",
        ]
    }

    @extend_schema(responses=paginated_list(ReservationOutput))
    def get(self, request: Request) -> Response:
        reservations = concert_selectors.reservation_list_for(user_id=request.user.pk)
        return paginated(
            request, self, reservations, ReservationOutput, context={"now": timezone.now()}
        )

    @extend_schema(
        request=HoldInput, parameters=[QUEUE_TOKEN_PARAMETER], responses={201: ReservationOutput}
    )
    def post(self, request: Request) -> Response:
        # A plain hold by API token usually comes the fast lane instead, to `hold_lane`.
        data = HoldInput(data=request.data)
        data.is_valid(raise_exception=True)
        body, headers = _held(request, data.validated_data)
        return Response(body, status=status.HTTP_201_CREATED, headers=headers)


def _held(request, data: dict, reads=None, api_key=None) -> tuple[dict, dict[str, str]]:
    """Hold the seat: the new hold's body and headers (the service raises a refusal).
    `api_key`: the lane's key its cache lacked (request.user None), which the hold's
    first statement authenticates."""
    now = timezone.now()
    reservation = concert_services.seat_hold_create(
        user=request.user,
        api_key=api_key,
        schedule_id=data["schedule_id"],
        seat_number=data["seat_number"],
        queue_key=request_header(request, QUEUE_TOKEN_HEADER),
        now=now,
        reads=reads,
    )
    body = reservation_body(reservation, now=now)
    return body, {"Location": f"/api/v1/reservations/{reservation.pk}"}


_RESERVATIONS_ALLOW = fastlane.drf_allow(ReservationListApi)


def hold_reads(trip: RoundTrip, request: HttpRequest) -> tuple[Reply, Reply]:
    """hold_lane's Redis reads (the date's seats, the fan's turn), which config.fastlane
    sends with the API token's in one round trip."""
    return concert_services.seat_hold_reads(
        trip,
        schedule_id=request.lane_input["schedule_id"],
        queue_key=request_header(request, QUEUE_TOKEN_HEADER),
        now=timezone.now(),
    )


def hold_lane(request: HttpRequest) -> HttpResponse:
    """ReservationListApi's POST for a plain hold (an API token, a JSON body HoldInput
    takes as it is), served by config.fastlane without DRF's dispatch or the full
    middleware: the same service call, the same answer (tests compare the two). A key
    the cache lacked is authenticated by the hold's first statement (Lane.auth_on_miss)."""
    try:
        body, headers = _held(
            request, request.lane_input, reads=request.prefetched, api_key=request.api_key
        )
    except DomainError as exc:
        return fastlane.error_response(exc, allow=_RESERVATIONS_ALLOW)
    except AuthenticationFailed:  # a key the hold's statement refused: DRF answers 401
        return fastlane.FullWay()
    return fastlane.json_response(
        body, allow=_RESERVATIONS_ALLOW, status=status.HTTP_201_CREATED, headers=headers
    )


class CancelOutput(ReservationOutput):
    refunded_amount = serializers.IntegerField()


class ReservationDetailApi(APIView):
    """One of the fan's reservations (GET), or cancel it (DELETE): a hold is released,
    a paid booking is cancelled and refunded to the wallet. Others' are 404.
    Needs authentication only: a fan whose turn has ended can still cancel."""

    error_codes = {
        "get": ["reservation_not_found"],
        "delete": ["reservation_not_found", "cancellation_closed", "payment_missing"],
    }

    @extend_schema(responses=ReservationOutput)
    def get(self, request: Request, reservation_id: int) -> Response:
        reservation = concert_selectors.reservation_get_for(
            user_id=request.user.pk, reservation_id=reservation_id
        )
        return Response(ReservationOutput(reservation, context={"now": timezone.now()}).data)

    @extend_schema(responses={200: CancelOutput})
    def delete(self, request: Request, reservation_id: int) -> Response:
        now = timezone.now()
        cancellation = services.booking_cancel(
            user_id=request.user.pk, reservation_id=reservation_id, now=now
        )
        body = ReservationOutput(cancellation.reservation, context={"now": now}).data
        return Response({**body, "refunded_amount": cancellation.refunded_amount})


# --- payments and tickets -----------------------------------------------------


PAY_ERRORS = [
    *queue_gate_codes(),
    "reservation_not_found",
    "already_paid",
    "reservation_not_payable",
    "hold_expired",
    "insufficient_balance",
    "idempotency_key_invalid",
    "idempotency_key_in_use",
    "idempotency_key_reused",
]


class PayInput(serializers.Serializer):
    reservation_id = id_field()


class PaymentListApi(APIView):
    """The fan's payments, newest first (GET: paid, refunded and failed attempts), or
    pay a held seat from the wallet (POST: needs an active queue token; accepts an
    Idempotency-Key)."""

    paginated = True
    error_codes = {"post": PAY_ERRORS}
    response_headers = {"post": ["Idempotent-Replayed"]}

    @extend_schema(responses=paginated_list(PaymentOutput))
    def get(self, request: Request) -> Response:
        payments = selectors.payment_list_for(user_id=request.user.pk)
        return paginated(request, self, payments, PaymentOutput)

    @extend_schema(
        request=PayInput,
        parameters=[QUEUE_TOKEN_PARAMETER, IDEMPOTENCY_KEY_PARAMETER],
        responses={201: PaymentOutput},
    )
    def post(self, request: Request) -> Response:
        # A fan with an API token and a plain body usually comes the fast lane
        # instead, to `pay_lane` (config.fastlane).
        data = PayInput(data=request.data)
        data.is_valid(raise_exception=True)
        answer = _paid(request, data.validated_data["reservation_id"])
        return answer_response(answer, location=_PAYMENT)


_PAYMENT = "/api/v1/payments/{payment_id}"


def _paid(request, reservation_id: int) -> Answer:
    return services.payment_submit(
        user=request.user,
        reservation_id=reservation_id,
        queue_key=request_header(request, QUEUE_TOKEN_HEADER),
        idempotency_key=idempotency_key(request),
        now=timezone.now(),
    )


_PAYMENTS_ALLOW = fastlane.drf_allow(PaymentListApi)


def pay_lane(request: HttpRequest) -> HttpResponse:
    """PaymentListApi's POST for a plain payment (an API token, a JSON body PayInput
    takes as it is), served by config.fastlane without DRF's dispatch or the full
    middleware: the same service call, the same answer (tests compare the two)."""
    return fastlane.answer_response(
        lambda: _paid(request, request.lane_input["reservation_id"]),
        allow=_PAYMENTS_ALLOW,
        location=_PAYMENT,
    )


class CheckoutInput(serializers.Serializer):
    reservation_ids = serializers.ListField(
        child=id_field(), min_length=1, max_length=10, help_text="The held seats to pay for."
    )


class CheckoutListApi(APIView):
    """Pay several held seats of one concert in one payment: all or nothing, one
    wallet debit, one Idempotency-Key. Needs an active queue token; the turn ends
    at checkout once no live hold is left."""

    error_codes = {"post": [*PAY_ERRORS, "checkout_invalid"]}
    response_headers = {"post": ["Idempotent-Replayed"]}

    @extend_schema(
        request=CheckoutInput,
        parameters=[QUEUE_TOKEN_PARAMETER, IDEMPOTENCY_KEY_PARAMETER],
        responses={201: CheckoutOutput},
    )
    def post(self, request: Request) -> Response:
        data = CheckoutInput(data=request.data)
        data.is_valid(raise_exception=True)
        answer = services.checkout_submit(
            user=request.user,
            reservation_ids=data.validated_data["reservation_ids"],
            queue_key=request.headers.get(QUEUE_TOKEN_HEADER),
            idempotency_key=idempotency_key(request),
            now=timezone.now(),
        )
        return answer_response(answer, location="/api/v1/checkouts/{checkout_id}")


class CheckoutDetailApi(APIView):
    error_codes = {"get": ["checkout_not_found"]}

    @extend_schema(responses=CheckoutOutput)
    def get(self, request: Request, checkout_id: int) -> Response:
        payments = selectors.checkout_payments_for(user_id=request.user.pk, checkout_id=checkout_id)
        return Response(services.checkout_body(payments))


class PaymentDetailApi(APIView):
    error_codes = {"get": ["payment_not_found"]}

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
    amount = serializers.IntegerField()
    paid_at = serializers.DateTimeField()


class TicketListApi(APIView):
    """The fan's confirmed bookings, paginated."""

    paginated = True

    @extend_schema(responses=paginated_list(TicketListOutput))
    def get(self, request: Request) -> Response:
        tickets = selectors.ticket_list_for(user_id=request.user.pk)
        return paginated(request, self, tickets, TicketListOutput)
