"""Catalogue and availability API: thin views over selectors. Holds are part of the
reservations resource (payments.api)."""

import hashlib

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from concerts import selectors
from config.api import QUEUE_TOKEN_PARAMETER
from queueing.gate import QueueGate, queue_gate_codes

GATE_CODES = queue_gate_codes()


class ConcertListOutput(serializers.Serializer):
    concert_id = serializers.IntegerField(source="id")
    title = serializers.CharField()
    artist = serializers.CharField()
    venue = serializers.CharField()
    description = serializers.CharField()


class ScheduleSummaryOutput(serializers.Serializer):
    schedule_id = serializers.IntegerField(source="id")
    starts_at = serializers.DateTimeField()
    booking_opens_at = serializers.DateTimeField()
    booking_closes_at = serializers.DateTimeField()


class ConcertDetailOutput(ConcertListOutput):
    schedules = ScheduleSummaryOutput(many=True, source="schedules.all")
    sale_starts_at = serializers.DateTimeField(
        allow_null=True,
        help_text="A scheduled sale's on-sale time: fans who line up before it (from "
        "line_opens_at) are shuffled into a random order at this time, ahead of everyone "
        "after. Null: the line is open, first come, first served.",
    )
    line_opens_at = serializers.DateTimeField(
        allow_null=True, help_text="When lining up opens (the pre-queue window's start)."
    )


class ConcertListApi(ListAPIView):
    """Public list of concerts, paginated."""

    permission_classes = [AllowAny]
    serializer_class = ConcertListOutput
    paginated = True

    def get_queryset(self):
        return selectors.concert_list()


class ConcertDetailApi(APIView):
    permission_classes = [AllowAny]
    error_codes = {"get": ["concert_not_found"]}

    @extend_schema(responses=ConcertDetailOutput)
    def get(self, request: Request, concert_id: int) -> Response:
        concert = selectors.concert_get_with_schedules(concert_id=concert_id)
        return Response(ConcertDetailOutput(concert).data)


# --- availability and holds (behind the waiting-room gate) ------------------


class GatedApi(APIView):
    """Authenticated, and an active queue token for the concert concerned."""

    permission_classes = [IsAuthenticated, QueueGate]
    error_codes = {"get": GATE_CODES}


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

    @extend_schema(parameters=[QUEUE_TOKEN_PARAMETER], responses=DatesOutput)
    def get(self, request: Request, concert_id: int) -> Response:
        dates = selectors.schedule_list_bookable(concert_id=concert_id, now=timezone.now())
        return Response(DatesOutput({"concert_id": concert_id, "dates": dates}).data)


class SeatOutput(serializers.Serializer):
    number = serializers.IntegerField()
    price = serializers.IntegerField()


class SeatsOutput(serializers.Serializer):
    schedule_id = serializers.IntegerField()
    seats = SeatOutput(many=True)


def seats_body(schedule_id: int, seats) -> dict:
    """SeatsOutput's data, built directly on this hot path (a test holds them equal)."""
    return {
        "schedule_id": schedule_id,
        "seats": [{"number": seat.number, "price": seat.price} for seat in seats],
    }


class ScheduleSeatsApi(GatedApi):
    """Available seats of a date, by number. Sends an ETag; If-None-Match gets 304."""

    error_codes = {"get": [*GATE_CODES, "schedule_not_found"]}

    def queue_concert_id(self, request: Request) -> int:
        self.availability = selectors.schedule_availability(
            schedule_id=self.kwargs["schedule_id"], now=timezone.now()
        )
        return self.availability.schedule.concert_id

    @extend_schema(parameters=[QUEUE_TOKEN_PARAMETER], responses={200: SeatsOutput, 304: None})
    def get(self, request: Request, schedule_id: int) -> Response:
        seats = self.availability.seats
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
            response = Response(seats_body(schedule_id, seats))
        response["ETag"] = etag
        response["Cache-Control"] = "private, no-cache"
        return response
