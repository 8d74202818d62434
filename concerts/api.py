"""Catalogue, availability and hold API: thin views over selectors and services."""

import hashlib

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from concerts import selectors, services
from concerts.models import SEATS_PER_SCHEDULE
from config.api import Pagination
from queueing.api import QUEUE_TOKEN_HEADER
from queueing.gate import QueueGate


class ConcertListOutput(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    artist = serializers.CharField()
    venue = serializers.CharField()
    description = serializers.CharField()


class ScheduleSummaryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    starts_at = serializers.DateTimeField()
    booking_opens_at = serializers.DateTimeField()
    booking_closes_at = serializers.DateTimeField()


class ConcertDetailOutput(ConcertListOutput):
    schedules = ScheduleSummaryOutput(many=True, source="schedules.all")


class ConcertListApi(ListAPIView):
    """Public list of concerts, paginated."""

    permission_classes = [AllowAny]
    serializer_class = ConcertListOutput

    def get_queryset(self):
        return selectors.concert_list()


class ConcertDetailApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses=ConcertDetailOutput)
    def get(self, request: Request, concert_id: int) -> Response:
        concert = selectors.concert_get_with_schedules(concert_id=concert_id)
        return Response(ConcertDetailOutput(concert).data)


# --- availability and holds (behind the waiting-room gate) ------------------


class GatedApi(APIView):
    """Authenticated, and an active queue token for the concert concerned."""

    permission_classes = [IsAuthenticated, QueueGate]


class DateOutput(serializers.Serializer):
    schedule_id = serializers.IntegerField(source="id")
    starts_at = serializers.DateTimeField()
    available_seats = serializers.IntegerField()


class DatesOutput(serializers.Serializer):
    concert_id = serializers.IntegerField()
    dates = DateOutput(many=True)


class ConcertDatesApi(GatedApi):
    """Bookable dates of a concert with their available seat counts."""

    def queue_concert_id(self, request: Request) -> int:
        return int(self.kwargs["concert_id"])

    @extend_schema(parameters=[QUEUE_TOKEN_HEADER], responses=DatesOutput)
    def get(self, request: Request, concert_id: int) -> Response:
        dates = selectors.schedule_list_bookable(concert_id=concert_id, now=timezone.now())
        return Response(DatesOutput({"concert_id": concert_id, "dates": dates}).data)


class SeatOutput(serializers.Serializer):
    number = serializers.IntegerField()
    price = serializers.IntegerField()


class SeatsOutput(serializers.Serializer):
    schedule_id = serializers.IntegerField()
    seats = SeatOutput(many=True)


class ScheduleSeatsApi(GatedApi):
    """Available seats of a date, by number. Sends an ETag; If-None-Match gets 304."""

    def queue_concert_id(self, request: Request) -> int:
        self.schedule = selectors.schedule_get(schedule_id=self.kwargs["schedule_id"])
        return self.schedule.concert_id

    @extend_schema(parameters=[QUEUE_TOKEN_HEADER], responses={200: SeatsOutput, 304: None})
    def get(self, request: Request, schedule_id: int) -> Response:
        seats = selectors.seat_list_available(schedule=self.schedule, now=timezone.now())
        etag = (
            '"'
            + hashlib.blake2s(
                ",".join(f"{s.number}:{s.price}" for s in seats).encode(), digest_size=12
            ).hexdigest()
            + '"'
        )
        if etag in request.headers.get("If-None-Match", ""):
            response = Response(status=status.HTTP_304_NOT_MODIFIED)
        else:
            response = Response(SeatsOutput({"schedule_id": schedule_id, "seats": seats}).data)
        response["ETag"] = etag
        response["Cache-Control"] = "private, no-cache"
        return response


class ReservationOutput(serializers.Serializer):
    reservation_id = serializers.IntegerField(source="id")
    schedule_id = serializers.IntegerField()
    seat_number = serializers.IntegerField(source="seat.number")
    price = serializers.IntegerField()
    status = serializers.SerializerMethodField()
    expires_at = serializers.DateTimeField(allow_null=True)

    def get_status(self, reservation) -> str:
        return reservation.effective_status(now=self.context["now"])


class HoldInput(serializers.Serializer):
    schedule_id = serializers.IntegerField(min_value=1)
    seat_number = serializers.IntegerField(min_value=1, max_value=SEATS_PER_SCHEDULE)


class ReservationListApi(APIView):
    """The fan's own reservations (GET), or a new seat hold (POST, gated)."""

    def get_permissions(self):
        if self.request.method == "POST":
            return [IsAuthenticated(), QueueGate()]
        return [IsAuthenticated()]

    def queue_concert_id(self, request: Request) -> int:
        self.hold_input = HoldInput(data=request.data)
        self.hold_input.is_valid(raise_exception=True)
        return selectors.schedule_concert_id(
            schedule_id=self.hold_input.validated_data["schedule_id"]
        )

    @extend_schema(responses=ReservationOutput(many=True))
    def get(self, request: Request) -> Response:
        paginator = Pagination()
        page = paginator.paginate_queryset(
            selectors.reservation_list_for(user_id=request.user.pk), request, view=self
        )
        data = ReservationOutput(page, many=True, context={"now": timezone.now()}).data
        return paginator.get_paginated_response(data)

    @extend_schema(
        request=HoldInput, parameters=[QUEUE_TOKEN_HEADER], responses={201: ReservationOutput}
    )
    def post(self, request: Request) -> Response:
        now = timezone.now()
        reservation = services.seat_hold_create(
            user=request.user,
            schedule_id=self.hold_input.validated_data["schedule_id"],
            seat_number=self.hold_input.validated_data["seat_number"],
            now=now,
        )
        body = ReservationOutput(reservation, context={"now": now}).data
        return Response(body, status=status.HTTP_201_CREATED)
