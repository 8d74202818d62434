"""Writes for the catalogue. Each service owns its transaction."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils.text import slugify

from concerts.exceptions import InvalidPrice, InvalidSchedule
from concerts.models import SEATS_PER_SCHEDULE, Concert, Schedule, Seat


def concert_create(
    *, title: str, artist: str, venue: str, description: str = "", slug: str | None = None
) -> Concert:
    slug = slug or slugify(f"{title}-{artist}")[:200]
    return Concert.objects.create(
        title=title, artist=artist, venue=venue, description=description, slug=slug
    )


def _check_price(price: int) -> None:
    if isinstance(price, bool) or not isinstance(price, int) or price <= 0:
        raise InvalidPrice(details={"price": price})


def schedule_create(
    *,
    concert: Concert,
    starts_at: datetime,
    booking_opens_at: datetime,
    booking_closes_at: datetime,
    seat_price: int,
) -> Schedule:
    """Create a performance date and its 50 seats, all at `seat_price`, in one transaction."""
    _check_price(seat_price)
    if not booking_opens_at < booking_closes_at <= starts_at:
        raise InvalidSchedule(
            "Booking must open before it closes, and close no later than the show starts."
        )
    with transaction.atomic():
        schedule = Schedule.objects.create(
            concert=concert,
            starts_at=starts_at,
            booking_opens_at=booking_opens_at,
            booking_closes_at=booking_closes_at,
        )
        Seat.objects.bulk_create(
            Seat(schedule=schedule, number=number, price=seat_price)
            for number in range(1, SEATS_PER_SCHEDULE + 1)
        )
    return schedule


def seat_price_update(*, seat: Seat, price: int) -> Seat:
    _check_price(price)
    Seat.objects.filter(pk=seat.pk).update(price=price)
    seat.price = price
    return seat
