"""Catalogue and availability API: thin views over selectors. Holds are part of the
reservations resource (payments.api)."""

import hashlib

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from concerts import selectors, services
from config import fastlane
from config.api import QUEUE_TOKEN_PARAMETER, request_header
from config.cache import Reply, RoundTrip
from config.errors import DomainError
from config.memo import KeptFor
from queueing.gate import QueueGate, gate_later, gate_pass, queue_gate_codes

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
        # A fan with an API token (no session) usually comes the fast lane instead,
        # to `dates_lane` (config.fastlane).
        return Response(_dates_body(concert_id))


_STARTS_AT = serializers.DateTimeField()


def _dates_body(concert_id: int) -> dict:
    """DatesOutput's data, built directly (a test holds them equal): the dates are
    read by every admitted fan, and again by each one watching for seats."""
    dates = selectors.schedule_list_bookable(concert_id=concert_id, now=timezone.now())
    return {
        "concert_id": concert_id,
        "dates": [
            {
                "schedule_id": date.id,
                "starts_at": _STARTS_AT.to_representation(date.starts_at),
                "available_seats": date.available_seats,
            }
            for date in dates
        ],
    }


_DATES_ALLOW = fastlane.drf_allow(ConcertDatesApi)


def dates_reads(trip: RoundTrip, request: HttpRequest, concert_id: int) -> tuple[Reply]:
    """dates_lane's Redis read (the fan's turn), which config.fastlane sends with the
    API token's in one round trip."""
    return (gate_later(trip, request),)


def dates_lane(request: HttpRequest, concert_id: int) -> HttpResponse:
    """ConcertDatesApi's GET for a fan signed in by API token, served by
    config.fastlane without DRF's dispatch or the full middleware: the gate, then the
    dates, the same answer (tests compare the two)."""
    (gate_read,) = request.prefetched
    try:
        gate_pass(request, concert_id=concert_id, mirrored=gate_read)
        body = _dates_body(concert_id)
    except DomainError as exc:
        return fastlane.error_response(exc, allow=_DATES_ALLOW)
    return fastlane.json_response(body, allow=_DATES_ALLOW)


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
        # A fan with an API token (no session) usually comes the fast lane instead,
        # to `seats_lane` (config.fastlane).
        code, body, headers, _ = _seats_answer(request, schedule_id, self.availability)
        return Response(body, status=code, headers=headers)


def _seats_answer(
    request, schedule_id: int, availability: selectors.Availability
) -> tuple[int, dict | None, dict[str, str], bytes | None]:
    """The seat map's status, body, headers and the body as JSON: 304 (no body) when
    the client's copy is current."""
    etag, body, rendered = _seats_rendered(schedule_id, availability)
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if etag in (request_header(request, "If-None-Match") or ""):
        return status.HTTP_304_NOT_MODIFIED, None, headers, None
    return status.HTTP_200_OK, body, headers, rendered


# The ETag, body and rendered JSON of each shared seat list this process answered:
# a date's seats built from the cache are one read-only Availability, shared by
# every fan who reads them until the next write on the date, so they are rendered
# once.
_rendered = KeptFor(1024)


def _seats_rendered(
    schedule_id: int, availability: selectors.Availability
) -> tuple[str, dict, bytes]:
    made = _rendered.get(availability)
    if made is not None and availability.schedule.pk == schedule_id:
        return made
    seats = availability.seats
    etag = (
        '"'
        + hashlib.blake2s(
            ",".join(f"{s.number}:{s.price}" for s in seats).encode(), digest_size=12
        ).hexdigest()
        + '"'
    )
    body = seats_body(schedule_id, seats)
    made = (etag, body, fastlane.render(body))
    return _rendered.keep(availability, made) if availability.shared else made


_SEATS_ALLOW = fastlane.drf_allow(ScheduleSeatsApi)


def seats_reads(trip: RoundTrip, request: HttpRequest, schedule_id: int) -> tuple[Reply, Reply]:
    """seats_lane's Redis reads (the date's seats, the fan's turn), which config.fastlane
    sends with the API token's in one round trip."""
    return (
        selectors.schedule_availability_later(trip, schedule_id=schedule_id),
        gate_later(trip, request),
    )


def seats_lane(request: HttpRequest, schedule_id: int) -> HttpResponse:
    """ScheduleSeatsApi's GET for a fan signed in by API token, served by
    config.fastlane without DRF's dispatch or the full middleware: the same calls in
    the same order (the date, then the gate), the same answer (tests compare the two),
    with their Redis reads made already (`seats_reads`)."""
    seats_read, gate_read = request.prefetched
    try:
        availability = selectors.schedule_availability(
            schedule_id=schedule_id, now=timezone.now(), cached=seats_read
        )
        gate_pass(request, concert_id=availability.schedule.concert_id, mirrored=gate_read)
    except DomainError as exc:
        return fastlane.error_response(exc, allow=_SEATS_ALLOW)
    code, body, headers, rendered = _seats_answer(request, schedule_id, availability)
    return fastlane.json_response(
        body, allow=_SEATS_ALLOW, status=code, headers=headers, rendered=rendered
    )


# --- waitlists (a login, no turn: a sold-out date has nothing to gate) -----------


class WaitlistOfferOutput(serializers.Serializer):
    reservation_id = serializers.IntegerField(source="reservation.id")
    seat_number = serializers.IntegerField(source="reservation.seat.number")
    price = serializers.IntegerField(source="reservation.price")
    expires_at = serializers.DateTimeField(source="reservation.expires_at")
    queue_token = serializers.CharField(
        source="offer_token",
        allow_null=True,
        help_text="The turn that comes with the offer: send it as X-Queue-Token to pay "
        "(POST /api/v1/payments), with no new wait in line. It lasts as long as the offer.",
    )


class WaitlistEntryOutput(serializers.Serializer):
    entry_id = serializers.IntegerField(source="id")
    schedule_id = serializers.IntegerField()
    concert_id = serializers.IntegerField(source="schedule.concert_id")
    status = serializers.ChoiceField(
        choices=["waiting", "offered", "left", "lapsed"],
        help_text="offered: a freed seat is held in your name (see offer); it stays "
        "offered once paid. lapsed: the offer ended unpaid.",
    )
    position = serializers.IntegerField(
        allow_null=True, help_text="Your place among the fans waiting for this date."
    )
    joined_at = serializers.DateTimeField(source="created_at")
    offer = serializers.SerializerMethodField()

    @extend_schema_field(WaitlistOfferOutput(allow_null=True))
    def get_offer(self, entry):
        if entry.status != "offered" or entry.reservation is None:
            return None
        if entry.reservation.status != "held" or getattr(entry, "offer_token", None) is None:
            return None
        return WaitlistOfferOutput(entry).data


class WaitlistJoinApi(APIView):
    """Join a sold-out date's waitlist (201; 200 with your existing entry), or leave it
    (DELETE, 204; an open offer is declined and goes to the next fan)."""

    permission_classes = [IsAuthenticated]
    error_codes = {
        "post": ["schedule_not_found", "seats_available", "booking_closed"],
        "delete": ["waitlist_entry_not_found"],
    }

    @extend_schema(request=None, responses={200: WaitlistEntryOutput, 201: WaitlistEntryOutput})
    def post(self, request: Request, schedule_id: int) -> Response:
        now = timezone.now()
        entry, created = services.waitlist_join(user=request.user, schedule_id=schedule_id, now=now)
        mine = selectors.waitlist_for_user(user_id=request.user.pk, now=now)
        entry = next(e for e in mine if e.pk == entry.pk)
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(WaitlistEntryOutput(entry).data, status=code)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, schedule_id: int) -> Response:
        services.waitlist_leave(
            user_id=request.user.pk, schedule_id=schedule_id, now=timezone.now()
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class WaitlistListApi(APIView):
    """Your waitlist entries, newest first, with any open offer."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=WaitlistEntryOutput(many=True))
    def get(self, request: Request) -> Response:
        entries = selectors.waitlist_for_user(user_id=request.user.pk, now=timezone.now())
        return Response(WaitlistEntryOutput(entries, many=True).data)
