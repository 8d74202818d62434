"""Reads for the catalogue."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from concerts.exceptions import ConcertNotFound, ReservationNotFound, ScheduleNotFound
from concerts.models import Concert, Reservation, Schedule, Seat


def concert_list() -> QuerySet[Concert]:
    return Concert.objects.order_by("title", "id")


def concert_get_with_schedules(*, concert_id: int) -> Concert:
    schedules = Schedule.objects.order_by("starts_at", "id")
    try:
        return Concert.objects.prefetch_related(Prefetch("schedules", queryset=schedules)).get(
            pk=concert_id
        )
    except Concert.DoesNotExist:
        raise ConcertNotFound() from None


# --- availability ---------------------------------------------------------


def schedule_get(*, schedule_id: int) -> Schedule:
    try:
        return Schedule.objects.select_related("concert").get(pk=schedule_id)
    except Schedule.DoesNotExist:
        raise ScheduleNotFound() from None


def schedule_concert_id(*, schedule_id: int) -> int:
    concert_id = (
        Schedule.objects.filter(pk=schedule_id).values_list("concert_id", flat=True).first()
    )
    if concert_id is None:
        raise ScheduleNotFound()
    return concert_id


def _open_q(*, now: datetime) -> Q:
    return Q(booking_opens_at__lte=now, booking_closes_at__gt=now, starts_at__gt=now)


def schedule_list_bookable(*, concert_id: int, now: datetime) -> list[Schedule]:
    """Dates open for booking with at least one available seat, by time; each has
    `available_seats`. One query, whatever the number of dates, seats or holds."""
    taken = (
        Reservation.objects.filter(Reservation.live_q(now=now), schedule=OuterRef("pk"))
        .order_by()
        .values("schedule")
        .annotate(n=Count("id"))
        .values("n")
    )
    seats = (
        Seat.objects.filter(schedule=OuterRef("pk"))
        .order_by()
        .values("schedule")
        .annotate(n=Count("id"))
        .values("n")
    )
    return list(
        Schedule.objects.filter(_open_q(now=now), concert_id=concert_id)
        .annotate(available_seats=Coalesce(Subquery(seats), 0) - Coalesce(Subquery(taken), 0))
        .filter(available_seats__gt=0)
        .order_by("starts_at", "id")
    )


def seat_list_available(*, schedule: Schedule, now: datetime) -> list[Seat]:
    """Available seats of a date, by number; none outside its booking window. One query."""
    if not schedule.is_open_for_booking(now=now):
        return []
    live = Reservation.objects.filter(Reservation.live_q(now=now), seat=OuterRef("pk"))
    return list(
        Seat.objects.filter(schedule=schedule)
        .exclude(Exists(live))
        .order_by("number")
        .only("id", "number", "price")
    )


def seat_map(*, schedule: Schedule, now: datetime, user_id: int | None) -> list[dict]:
    """All 50 seats with their state for the page: available, held, sold or mine. One query."""
    live = Reservation.objects.filter(Reservation.live_q(now=now), seat=OuterRef("pk"))
    rows = (
        Seat.objects.filter(schedule=schedule)
        .annotate(
            live_status=Subquery(live.values("status")[:1]),
            live_user=Subquery(live.values("user_id")[:1]),
        )
        .order_by("number")
        .values("number", "price", "live_status", "live_user")
    )
    is_open = schedule.is_open_for_booking(now=now)
    result = []
    for row in rows:
        if row["live_status"] is None:
            state = "available" if is_open else "closed"
        elif user_id is not None and row["live_user"] == user_id:
            state = "mine"
        else:
            state = "sold" if row["live_status"] == Reservation.Status.CONFIRMED else "held"
        result.append({"number": row["number"], "price": row["price"], "state": state})
    return result


def reservation_list_for(*, user_id: int) -> QuerySet[Reservation]:
    return (
        Reservation.objects.filter(user_id=user_id)
        .select_related("seat", "schedule__concert")
        .order_by("-id")
    )


def reservation_get_for(*, user_id: int, reservation_id: int) -> Reservation:
    """The fan's own reservation; anyone else's is reported as not found."""
    reservation = reservation_list_for(user_id=user_id).filter(pk=reservation_id).first()
    if reservation is None:
        raise ReservationNotFound()
    return reservation
