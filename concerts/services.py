"""Writes for the catalogue. Each service owns its transaction."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from concerts import selectors
from concerts.exceptions import (
    BookingClosed,
    InvalidPrice,
    InvalidSchedule,
    ReservationConfirmed,
    SeatLimitReached,
    SeatNotFound,
    SeatUnavailable,
)
from concerts.models import SEATS_PER_SCHEDULE, Concert, Reservation, Schedule, Seat
from queueing import services as queue_services


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


# --- holds ------------------------------------------------------------------
#
# Lock order, in every service that touches reservations: the fan's user row,
# then seat rows (by id), then reservation rows. Payments follow the same order.
# Row locks are FOR NO KEY UPDATE: they serialise writers but, unlike FOR UPDATE,
# do not block the KEY SHARE locks that foreign-key checks take (a wallet or a
# reservation being inserted for the same fan), which would close a deadlock cycle.


def _lock_fan(*, user_id: int) -> None:
    """Serialise one fan's holds, so the per-fan limit holds under concurrency."""
    get_user_model().objects.select_for_update(no_key=True).filter(pk=user_id).exists()


def _lock_seat(*, schedule_id: int, seat_number: int) -> Seat:
    """Lock the seat row; every change to who holds a seat happens under this lock."""
    seat = Seat.objects.select_for_update(no_key=True).filter(
        schedule_id=schedule_id, number=seat_number
    )
    found = seat.first()
    if found is None:
        raise SeatNotFound()
    return found


def seat_hold_create(
    *, user: AbstractBaseUser, schedule_id: int, seat_number: int, now: datetime
) -> Reservation:
    """Hold a seat for the fan for the concert's hold TTL.

    Locks, then re-checks: exactly one of any number of concurrent fans gets
    the seat, and the partial unique constraint backs the lock. A hold whose
    time is up counts as free and is marked expired in the same transaction.
    The fan's active queue token is kept alive until the hold ends.
    """
    schedule = selectors.schedule_get(schedule_id=schedule_id)
    if not 1 <= seat_number <= SEATS_PER_SCHEDULE:
        raise SeatNotFound()
    if not schedule.is_open_for_booking(now=now):
        raise BookingClosed()
    concert = schedule.concert
    live = selectors.live_reservation_q(now=now)
    # A seat visibly taken is refused without queueing for its lock; a free-looking
    # seat is re-checked under the lock below, which alone decides who gets it.
    if Reservation.objects.filter(live, schedule=schedule, seat__number=seat_number).exists():
        raise SeatUnavailable(details={"seat_number": seat_number})
    try:
        with transaction.atomic():
            _lock_fan(user_id=user.pk)
            mine = Reservation.objects.filter(live, schedule=schedule, user_id=user.pk).count()
            if mine >= concert.seat_limit:
                raise SeatLimitReached(details={"limit": concert.seat_limit})
            seat = _lock_seat(schedule_id=schedule.pk, seat_number=seat_number)
            current = (
                Reservation.objects.filter(seat=seat, status__in=Reservation.LIVE_STATUSES)
                .order_by("-id")
                .first()
            )
            if current is not None:
                if current.effective_status(now=now) != Reservation.Status.EXPIRED:
                    raise SeatUnavailable(details={"seat_number": seat_number})
                Reservation.objects.filter(pk=current.pk, status=Reservation.Status.HELD).update(
                    status=Reservation.Status.EXPIRED, ended_at=now
                )
            reservation = Reservation.objects.create(
                user_id=user.pk,
                schedule=schedule,
                seat=seat,
                status=Reservation.Status.HELD,
                price=seat.price,
                created_at=now,
                expires_at=now + timedelta(seconds=concert.hold_ttl),
            )
            queue_services.queue_token_keep_alive(
                user_id=user.pk, concert_id=concert.pk, until=reservation.expires_at
            )
    except IntegrityError:
        # The constraint caught what the lock should have: report it as taken.
        raise SeatUnavailable(details={"seat_number": seat_number}) from None
    reservation.schedule = schedule
    return reservation


def reservation_cancel(*, user_id: int, reservation_id: int, now: datetime) -> Reservation:
    """Cancel the fan's held reservation, freeing the seat at once. Idempotent:
    cancelling a cancelled or expired reservation returns it unchanged."""
    reservation = selectors.reservation_get_for(user_id=user_id, reservation_id=reservation_id)
    with transaction.atomic():
        _lock_fan(user_id=user_id)
        _lock_seat(schedule_id=reservation.schedule_id, seat_number=reservation.seat.number)
        reservation.refresh_from_db(fields=["status", "expires_at", "ended_at"])
        if reservation.status == Reservation.Status.CONFIRMED:
            raise ReservationConfirmed()
        if reservation.status == Reservation.Status.HELD:
            expired = reservation.effective_status(now=now) == Reservation.Status.EXPIRED
            reservation.status = (
                Reservation.Status.EXPIRED if expired else Reservation.Status.CANCELLED
            )
            reservation.ended_at = now
            reservation.save(update_fields=["status", "ended_at"])
    return reservation


def seat_holds_release_expired(*, now: datetime, batch_size: int = 5000) -> int:
    """The beat job: mark holds whose time is up as expired.

    Availability never waits for this (expiry is lazy); it only tidies up.
    Batches use SKIP LOCKED, so concurrent runs split the work; running it
    again changes nothing.
    """
    released = 0
    while True:
        with transaction.atomic():
            ids = list(
                Reservation.objects.filter(status=Reservation.Status.HELD, expires_at__lte=now)
                .order_by("id")
                .select_for_update(skip_locked=True)
                .values_list("id", flat=True)[:batch_size]
            )
            if ids:
                Reservation.objects.filter(id__in=ids, status=Reservation.Status.HELD).update(
                    status=Reservation.Status.EXPIRED, ended_at=now
                )
        released += len(ids)
        if len(ids) < batch_size:
            return released


def reservation_release_by_operator(*, reservation_id: int, now: datetime) -> bool:
    """An operator frees a held seat (admin action). Returns whether a hold was released."""
    reservation = Reservation.objects.select_related("seat").get(pk=reservation_id)
    with transaction.atomic():
        _lock_seat(schedule_id=reservation.schedule_id, seat_number=reservation.seat.number)
        return bool(
            Reservation.objects.filter(pk=reservation_id, status=Reservation.Status.HELD).update(
                status=Reservation.Status.CANCELLED, ended_at=now
            )
        )


# --- for payments (call inside the payment's transaction) -------------------


def reservation_lock(*, user_id: int, reservation_id: int) -> Reservation:
    """Lock the fan, the seat and the reservation row, in the global lock order, and
    return the reservation as it now stands. The caller owns the transaction."""
    reservation = selectors.reservation_get_for(user_id=user_id, reservation_id=reservation_id)
    _lock_fan(user_id=user_id)
    _lock_seat(schedule_id=reservation.schedule_id, seat_number=reservation.seat.number)
    locked = (
        Reservation.objects.select_for_update(of=("self",), no_key=True)
        .select_related("seat", "schedule__concert")
        .get(pk=reservation_id)
    )
    return locked


def reservation_expire(*, reservation: Reservation, now: datetime) -> None:
    """Mark a lapsed hold expired (under reservation_lock)."""
    Reservation.objects.filter(pk=reservation.pk, status=Reservation.Status.HELD).update(
        status=Reservation.Status.EXPIRED, ended_at=now
    )
    reservation.status = Reservation.Status.EXPIRED


def reservation_confirm(*, reservation: Reservation, now: datetime) -> None:
    """The held seat becomes the fan's (under reservation_lock, hold not expired)."""
    updated = Reservation.objects.filter(
        pk=reservation.pk, status=Reservation.Status.HELD, expires_at__gt=now
    ).update(status=Reservation.Status.CONFIRMED, confirmed_at=now, expires_at=None)
    if updated != 1:
        raise SeatUnavailable("The hold ended before it could be confirmed.")
    reservation.status = Reservation.Status.CONFIRMED
    reservation.confirmed_at = now
    reservation.expires_at = None


def reservation_release(*, reservation: Reservation, now: datetime) -> None:
    """Free the seat of a held or confirmed reservation at once (under reservation_lock)."""
    Reservation.objects.filter(pk=reservation.pk, status__in=Reservation.LIVE_STATUSES).update(
        status=Reservation.Status.CANCELLED, ended_at=now
    )
    reservation.status = Reservation.Status.CANCELLED
    reservation.ended_at = now
