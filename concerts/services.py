"""Writes for the catalogue. Each service owns its transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Case, Q, Value, When
from django.utils.text import slugify

from concerts import seatcache, selectors
from concerts.exceptions import (
    BookingClosed,
    InvalidPrice,
    InvalidSchedule,
    ReservationNotFound,
    SeatAlreadyYours,
    SeatLimitReached,
    SeatNotFound,
    SeatsStillAvailable,
    SeatUnavailable,
    WaitlistEntryNotFound,
)
from concerts.models import (
    SEATS_PER_SCHEDULE,
    Concert,
    Reservation,
    Schedule,
    Seat,
    WaitlistEntry,
)
from config import rawsql
from config.auth import credentials_uncached
from config.cache import Reply, RoundTrip
from queueing import services as queue_services


def concert_create(
    *,
    title: str,
    artist: str,
    venue: str,
    description: str = "",
    slug: str | None = None,
    hold_ttl_seconds: int | None = None,
    max_seats_per_fan: int | None = None,
) -> Concert:
    """Create a concert and its waiting room, together."""
    concert = Concert(
        title=title,
        artist=artist,
        venue=venue,
        description=description,
        slug=slug or slugify(f"{title}-{artist}")[:200],
        hold_ttl_seconds=hold_ttl_seconds,
        max_seats_per_fan=max_seats_per_fan,
    )
    with transaction.atomic():
        concert.save()
        queue_services.waiting_room_create(concert_id=concert.pk)
    return concert


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
# then seat rows (by id), then reservation rows, then the fan's queue token, then
# the wallet. Payments follow the same order. Row locks are FOR NO KEY UPDATE:
# they serialise writers but, unlike FOR UPDATE, do not block the KEY SHARE locks
# that foreign-key checks take (a wallet or a reservation being inserted for the
# same fan), which would close a deadlock cycle.

End = Reservation.EndReason
LIVE_SEAT_CONSTRAINT = "reservation_one_live_per_seat"


# The lock statements are plain SQL: on the sale-day paths, compiling them through
# the ORM cost more than running them (config.rawsql).


def _lock_fan_and_seat(
    *,
    user_id: int,
    schedule_id: int,
    seat_number: int,
    turn: queue_services.TurnLock | None = None,
) -> tuple[Seat, models.Model | None]:
    """Lock the fan's row, then the seat's row, then the fan's turn (`turn`, from
    queue_services.queue_turn_lock_part), in one statement (PostgreSQL takes a row's
    locks in the order FOR ... OF names them: the global lock order), and return the
    seat and the turn as it stands under its lock. The fan's lock serialises one
    fan's holds, so the per-fan limit holds under concurrency; every change to who
    holds a seat happens under the seat's. What the locks guard (the fan's count,
    the seat's holder) is read in a later statement: this one's snapshot predates
    its wait. No turn: the seat is locked without it, and queue_turn_extend locks
    the turn by itself (and says why it refuses one the statement did not find)."""
    parts = ("s", "", "", [])
    if turn is not None:
        parts = (f"s, {turn.alias}", f", {turn.columns}", f", {turn.table}", turn.params)
    of, columns, tables, params = parts
    with rawsql.cursor() as cursor:
        cursor.execute(
            f"SELECT {rawsql.select(Seat, 's')}{columns} FROM {get_user_model()._meta.db_table} u,"
            f" {Seat._meta.db_table} s{tables} WHERE u.id = %s AND s.schedule_id = %s"
            f" AND s.number = %s{f' AND {turn.condition}' if turn else ''}"
            f"{rawsql.for_no_key_update(of=f'u, {of}')}",
            [user_id, schedule_id, seat_number, *params],
        )
        row = cursor.fetchone()
    if row is None and turn is not None:  # no such seat, or no such turn: which?
        return _lock_fan_and_seat(user_id=user_id, schedule_id=schedule_id, seat_number=seat_number)
    if row is None:
        raise SeatNotFound()
    seat = rawsql.instances(row, Seat)[0]
    return seat, (turn.token(row, rawsql.width(Seat)) if turn is not None else None)


def _violated_constraint(exc: IntegrityError) -> str:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None) or str(exc)


def _hold_insert(*, user_id: int, seat: Seat, concert: Concert, now: datetime) -> Reservation:
    """A new hold of the seat for the fan, at its price, for the concert's hold time.
    The partial unique index refuses it (IntegrityError) if the seat is held."""
    return rawsql.insert(_new_hold(user_id=user_id, seat=seat, concert=concert, now=now))


def _hold_insert_if_free(
    *, user_id: int, seat: Seat, concert: Concert, now: datetime
) -> Reservation | None:
    """The hold's checks and its insert in one statement, for the common case: the
    hold is written only if the fan is below the concert's limit and nothing is held
    (lapsed or not) or confirmed on the seat (selectors.seat_hold_free). None: it was
    not, and the caller asks seat_hold_checks why. Call under the fan's and the
    seat's locks: the statement comes after the lock statement, so it reads what the
    locks keep still in a snapshot taken after any wait for them."""
    condition = selectors.seat_hold_free(
        user_id=user_id,
        schedule_id=seat.schedule_id,
        seat_id=seat.pk,
        now=now,
        limit=concert.seat_limit,
    )
    hold = _new_hold(user_id=user_id, seat=seat, concert=concert, now=now)
    return rawsql.insert(hold, where=condition)  # plain SQL: every hold inserts one


def _new_hold(*, user_id: int, seat: Seat, concert: Concert, now: datetime) -> Reservation:
    return Reservation(
        user_id=user_id,
        schedule_id=seat.schedule_id,
        seat=seat,
        status=Reservation.Status.HELD,
        price=seat.price,
        created_at=now,
        expires_at=now + timedelta(seconds=concert.hold_ttl),
    )


def seat_hold_create(
    *,
    user: AbstractBaseUser | None,
    schedule_id: int,
    seat_number: int,
    queue_key: str | None,
    now: datetime,
    reads: tuple[Reply, Reply] | None = None,
    api_key: str | None = None,
) -> Reservation:
    """Hold a seat for the admitted fan for the concert's hold TTL.

    The fan's turn is checked twice: once at the door, so a fan without a turn is
    refused before any lock, and again under the token's row lock, where the turn
    is extended to the hold's end (queue_turn_extend), so a turn that lapsed in
    between is never revived. Locks, then re-checks the seat: exactly one of any
    number of concurrent fans gets it, and the partial unique constraint backs the
    lock. A hold whose time is up counts as free and is ended as expired in the
    same transaction.

    `user` None: the fan is the one the API token key `api_key` names (a fast lane's
    hold whose key its cache lacked), authenticated in the hold's first statement,
    the date's read (selectors.schedule_get_with_holder), one round trip fewer. A key
    it refuses raises DRF's AuthenticationFailed before any other answer and before
    anything is written.
    """
    if not 1 <= seat_number <= SEATS_PER_SCHEDULE:
        if user is None:
            credentials_uncached(api_key)  # a 401 comes before the 404
        raise SeatNotFound()
    # A seat visibly taken is refused without queueing for its lock: from the date's
    # cached seats when they are current (no SQL), else as read with the date. A
    # free-looking seat is re-checked under the lock below, which alone decides who
    # gets it. The fan's turn is read in the same Redis round trip as the seats.
    if reads is None:
        trip = RoundTrip()
        reads = seat_hold_reads(trip, schedule_id=schedule_id, queue_key=queue_key, now=now)
        trip.run()
    seats_read, turn_read = reads
    schedule, taken, fan = selectors.schedule_get_with_holder(
        schedule_id=schedule_id, seat_number=seat_number, now=now, cached=seats_read,
        api_key=api_key if user is None else None,
    )  # fmt: skip
    if user is None:
        user = fan
    queue_services.queue_gate_pass(
        key=queue_key, user=user, concert_id=schedule.concert_id, now=now, mirrored=turn_read
    )
    if not schedule.is_open_for_booking(now=now):
        raise BookingClosed()
    if taken is not None:
        _refuse_taken(seat_number=seat_number, holder=taken, user_id=user.pk)
    concert = schedule.concert
    try:
        with transaction.atomic():
            seat, turn = _lock_fan_and_seat(
                user_id=user.pk,
                schedule_id=schedule.pk,
                seat_number=seat_number,
                turn=queue_services.queue_turn_lock_part(queue_key),
            )
            reservation = _hold_insert_if_free(user_id=user.pk, seat=seat, concert=concert, now=now)
            if reservation is None:  # the fan at the limit, or the seat held or sold
                reservation = _hold_after_checks(
                    user_id=user.pk, seat=seat, schedule=schedule, now=now
                )
            if reservation is not None:
                queue_services.queue_turn_extend(
                    key=queue_key,
                    user=user,
                    concert_id=concert.pk,
                    until=reservation.expires_at,
                    now=now,
                    locked=turn,
                )
                seatcache.bump_after_commit([schedule.pk])
    except IntegrityError as exc:
        if LIVE_SEAT_CONSTRAINT not in _violated_constraint(exc):
            raise  # not a lost race for the seat: a real fault, not the fan's problem
        # The constraint caught what the lock should have: the seat is taken.
        raise SeatUnavailable(details={"seat_number": seat_number}) from None
    if reservation is None:
        raise SeatUnavailable(details={"seat_number": seat_number})
    reservation.schedule = schedule
    return reservation


def _hold_after_checks(
    *, user_id: int, seat: Seat, schedule: Schedule, now: datetime
) -> Reservation | None:
    """A hold whose one-statement insert found the fan at the limit or the seat
    taken, under the same locks: refused with the reason, or the seat's lapsed hold
    ended as expired and the seat held for the fan. None: ending it offered the seat
    to its waitlist (the offer commits; the fan is refused after the commit)."""
    concert = schedule.concert
    mine, current = selectors.seat_hold_checks(
        user_id=user_id, schedule_id=schedule.pk, seat_id=seat.pk, now=now
    )
    if mine >= concert.seat_limit:
        raise SeatLimitReached(details={"limit": concert.seat_limit})
    if current is not None:
        if current.is_live(now=now):
            _refuse_taken(
                seat_number=seat.number, holder=(current.pk, current.user_id), user_id=user_id
            )
        reservation_end(ids=[current.pk], now=now, reason=End.EXPIRED)
        # Ending the lapsed hold may have offered the seat to its waitlist: the
        # offer stands (it commits), and this fan is refused after the commit.
        offered = Reservation.objects.filter(
            seat=seat, status=Reservation.Status.HELD, expires_at__gt=now
        ).exists()
        if offered:
            seatcache.bump_after_commit([schedule.pk])
            return None
    return _hold_insert(user_id=user_id, seat=seat, concert=concert, now=now)


def seat_hold_reads(
    trip: RoundTrip, *, schedule_id: int, queue_key: str | None, now: datetime
) -> tuple[Reply, Reply]:
    """seat_hold_create's Redis reads (the date's cached seats, the fan's turn), in a
    RoundTrip: pass the replies as `reads` (config.fastlane sends them with the API
    token's)."""
    return (
        selectors.schedule_availability_later(trip, schedule_id=schedule_id),
        queue_services.queue_gate_pass_later(trip, key=queue_key, now=now),
    )


def _refuse_taken(*, seat_number: int, holder: tuple[int, int], user_id: int) -> None:
    reservation_id, holder_id = holder
    if holder_id == user_id:
        raise SeatAlreadyYours(
            details={"seat_number": seat_number, "reservation_id": reservation_id}
        )
    raise SeatUnavailable(details={"seat_number": seat_number})


def reservation_end(*, ids: Sequence[int], now: datetime, reason: str) -> int:
    """End these reservations' holds for `reason`: the one writer of how a hold ends.

    Call on rows the caller has locked (reservation_lock, or the sweep's SKIP
    LOCKED batch). One UPDATE, whose WHERE makes it idempotent, so a hold is never
    ended twice. The rule, by reason:
    - PAID is not here: a payment confirms its holds with reservations_confirm,
      which also says whether the fan holds other seats;
    - EXPIRED: a held row whose time is up becomes expired;
    - CANCELLED, RELEASED, PAYMENT_FAILED: a held row becomes cancelled with that
      reason, or expired if its time was already up;
    - REFUNDED: a confirmed booking becomes cancelled.
    Returns the number of reservations changed.
    """
    held = Reservation.Status.HELD
    rows, lapsed = Reservation.objects.filter(id__in=ids), Q(expires_at__lte=now)
    if reason != End.EXPIRED:  # these free a seat that was taken
        seatcache.bump_after_commit(rows.values_list("schedule_id", flat=True).distinct())
    if reason == End.EXPIRED and connection.vendor == "postgresql":
        # The sweep's batches of thousands: one array parameter, not thousands of
        # placeholders (which psycopg parsed anew for every batch).
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Reservation._meta.db_table} SET status = %s, ended_at = %s,"
                f" end_reason = %s WHERE id = ANY(%s::bigint[]) AND status = %s"
                f" AND expires_at <= %s",
                [Reservation.Status.EXPIRED, now, End.EXPIRED, list(ids), held, now],
            )
            ended = cursor.rowcount
    elif reason == End.EXPIRED:
        ended = rows.filter(lapsed, status=held).update(
            status=Reservation.Status.EXPIRED, ended_at=now, end_reason=End.EXPIRED
        )
    elif reason == End.REFUNDED:
        ended = rows.filter(status=Reservation.Status.CONFIRMED).update(
            status=Reservation.Status.CANCELLED, ended_at=now, end_reason=End.REFUNDED
        )
    elif reason in (End.CANCELLED, End.RELEASED, End.PAYMENT_FAILED):
        ended = rows.filter(status=held).update(
            status=Case(
                When(lapsed, then=Value(Reservation.Status.EXPIRED)),
                default=Value(Reservation.Status.CANCELLED),
            ),
            end_reason=Case(When(lapsed, then=Value(End.EXPIRED)), default=Value(reason)),
            ended_at=now,
        )
    else:  # PAID included: see reservations_confirm
        raise ValueError(f"unknown hold end reason {reason!r}")
    if ended:
        _waitlist_after_seats_freed(ids=ids, now=now)
    return ended


def seat_holds_release_expired(*, now: datetime, batch_size: int = 5000) -> int:
    """The beat job: end holds whose time is up, as expired.

    Availability never waits for this (expiry is lazy); it only tidies up.
    Batches use SKIP LOCKED, so concurrent runs split the work; running it
    again changes nothing. Each batch starts after the last one's ids (the
    primary key's order): started from the first id each time, the twentieth
    batch of 100,000 read past the 95,000 rows the batches before it had ended. A
    row skipped because another transaction held it is left to the next run.
    """
    released, after = 0, 0
    while True:
        with transaction.atomic():
            ids = list(
                Reservation.objects.filter(
                    status=Reservation.Status.HELD, expires_at__lte=now, id__gt=after
                )
                .order_by("id")
                .select_for_update(skip_locked=True, no_key=True)
                .values_list("id", flat=True)[:batch_size]
            )
            if ids:
                released += reservation_end(ids=ids, now=now, reason=End.EXPIRED)
        if len(ids) < batch_size:
            return released
        after = ids[-1]


def reservation_lock(*, user_id: int, reservation_id: int) -> Reservation:
    """Lock the fan, the seat and the reservation row, in the global lock order, and
    return the reservation as it now stands. The caller owns the transaction.
    Anyone else's reservation is ReservationNotFound."""
    return reservations_lock(user_id=user_id, reservation_ids=[reservation_id])[0]


def reservations_lock(*, user_id: int, reservation_ids: Sequence[int]) -> list[Reservation]:
    """reservation_lock for each of the fan's reservations, in id order, in one
    statement, returned in that order with their seat and date (see below).

    PostgreSQL takes a statement's row locks row by row, after the sort, and within
    a row in the order the FOR ... OF clause names them: so the fan, then the first
    reservation's seat and row, then the next one's, which is the global lock order
    of the one-statement-per-lock code this replaced (three statements for one seat).
    A row that changed while the statement waited for its lock is read again at its
    latest version (PostgreSQL's recheck), so what is returned is what stands under
    the locks. Only columns that never change (the fan, seat and date of a
    reservation) join the rows, so the recheck never drops one.

    What other rows say (the fan's other holds, say) is not asked here: the
    statement's snapshot predates its wait for the fan's lock. Ask it in a later
    statement (reservations_confirm).

    The date comes without its concert (its `concert_id` is on the date): no caller
    reads more of the concert, and its row (the description's text, say) was a
    join, ten columns and an instance more on every payment."""
    ids = sorted(set(reservation_ids))
    with rawsql.cursor() as cursor:
        cursor.execute(
            f"SELECT {rawsql.select(Reservation, 'r')}, {rawsql.select(Seat, 's')},"
            f" {rawsql.select(Schedule, 'd')}"
            f" FROM {get_user_model()._meta.db_table} u"
            f" JOIN {Reservation._meta.db_table} r ON r.user_id = u.id"
            f" JOIN {Seat._meta.db_table} s ON s.id = r.seat_id"
            f" JOIN {Schedule._meta.db_table} d ON d.id = r.schedule_id"
            f" WHERE u.id = %s AND r.id IN ({', '.join(['%s'] * len(ids))})"
            f" ORDER BY r.id{rawsql.for_no_key_update(of='u, s, r')}",
            [user_id, *ids],
        )
        rows = cursor.fetchall()
    if len(rows) != len(ids):
        raise ReservationNotFound()
    locked = []
    for row in rows:
        reservation, seat, schedule = rawsql.instances(row, Reservation, Seat, Schedule)
        reservation.seat, reservation.schedule = seat, schedule
        locked.append(reservation)
    return locked


class Confirmation(NamedTuple):
    """reservations_confirm's answer. `turn_tried`: its statement tried to end the
    fan's turn (turn_end), and `turn_ended` is the turn it ended (None: none).
    `answers`: each of `then`'s parts' answer, in order (None: not run)."""

    confirmed: int
    still_held: bool
    turn_tried: bool = False
    turn_ended: models.Model | None = None
    answers: tuple = ()


def reservations_confirm(
    *,
    user_id: int,
    concert_id: int,
    ids: Sequence[int],
    now: datetime,
    turn_end: queue_services.TurnEnd | None = None,
    then: Sequence[rawsql.Part] = (),
) -> Confirmation:
    """A payment's end of these holds, which the caller has locked
    (reservations_lock): each one still live becomes confirmed; a lapsed one is left
    for the caller to refuse (nothing is confirmed after its time is up), so a seat
    is never confirmed twice. Returns how many were confirmed, and whether the fan
    still holds, unexpired, another seat of the concert (a payment ends the turn
    only when none is left).

    One statement on PostgreSQL. It runs after the fan's lock was taken, and every
    hold of the fan takes that lock first, so no hold of the fan can commit between
    this answer and the payment's commit. `turn_end` (queue_services.
    queue_turn_end_part, made with `unless=OTHERS_HELD`) ends the fan's turn in the
    same statement when no other seat is held: the turn's row lock comes after the
    reservations', the global lock order. `then`: the payment's own writes in the
    same statement (rawsql.Part), which read the confirmed holds from PAID."""
    held, marks = Reservation.Status.HELD, ", ".join(["%s"] * len(ids))
    confirm = (
        f"UPDATE {Reservation._meta.db_table} SET status = %s, confirmed_at = %s,"
        f" expires_at = NULL WHERE id IN ({marks}) AND status = %s AND expires_at > %s"
    )
    confirm_params = [Reservation.Status.CONFIRMED, now, *ids, held, now]
    others = (
        f"EXISTS (SELECT 1 FROM {Reservation._meta.db_table} o"
        f" JOIN {Schedule._meta.db_table} od ON od.id = o.schedule_id"
        f" WHERE o.user_id = %s AND od.concert_id = %s AND o.status = %s"
        f" AND o.expires_at > %s AND o.id NOT IN ({marks}))"
    )
    others_params = [user_id, concert_id, held, now, *ids]
    with rawsql.cursor() as cursor:
        if connection.vendor != "postgresql":  # make run's SQLite: no UPDATE in a WITH
            cursor.execute(confirm, rawsql.params(confirm_params))
            confirmed = cursor.rowcount
            cursor.execute(f"SELECT {others}", rawsql.params(others_params))
            held_too = bool(cursor.fetchone()[0])
            return Confirmation(confirmed, held_too, answers=(None,) * len(then))
        ctes = [
            f"{PAID} AS ({confirm} RETURNING id, user_id, price)",
            f"others AS (SELECT {others} AS held)",
        ]
        params = [*confirm_params, *others_params]
        if turn_end is not None:
            ctes.append(f"ended AS ({turn_end.sql})")
            params += turn_end.params
        for part in then:
            ctes.append(part.ctes)
            params += part.params
        answers = "".join(f", {part.answer}" for part in then)
        ended = ", ended.* FROM (SELECT 1) one LEFT JOIN ended ON true" if turn_end else ""
        cursor.execute(
            f"WITH {', '.join(ctes)} SELECT (SELECT count(*) FROM {PAID}),"
            f" (SELECT held FROM others){answers}{ended}",
            params,
        )
        row = cursor.fetchone()
    after = 2 + len(then)
    return Confirmation(
        row[0],
        row[1],
        turn_tried=turn_end is not None,
        turn_ended=turn_end.token(row, after) if turn_end is not None else None,
        answers=tuple(row[2:after]),
    )


# What reservations_confirm's statement names its confirmed holds, for a part in
# `then` to read: one row per hold it confirmed, with its id, user_id and price.
PAID = "paid"
# A condition for a part in `then`: the statement's turn_end ended the fan's turn
# (it reads the ended turn, so that turn's row lock comes first).
TURN_ENDED = "EXISTS (SELECT 1 FROM ended)"
# The condition a payment's turn end is made with (queue_turn_end_part's `unless`):
# the fan still holds another seat, as reservations_confirm's statement found.
OTHERS_HELD = "SELECT held FROM others"


def reservation_end_locked(*, reservation: Reservation, now: datetime, reason: str) -> Reservation:
    """reservation_end for one reservation the caller holds under reservation_lock,
    returned as it now stands."""
    reservation_end(ids=[reservation.pk], now=now, reason=reason)
    reservation.refresh_from_db(
        fields=["status", "expires_at", "confirmed_at", "ended_at", "end_reason"]
    )
    return reservation


def reservation_release_by_operator(*, reservation_id: int, now: datetime) -> bool:
    """An operator frees a held seat (admin action). Returns whether a hold was released."""
    user_id = (
        Reservation.objects.filter(pk=reservation_id).values_list("user_id", flat=True).first()
    )
    if user_id is None:
        raise ReservationNotFound()
    with transaction.atomic():
        reservation = reservation_lock(user_id=user_id, reservation_id=reservation_id)
        if reservation.status != Reservation.Status.HELD:
            return False
        reservation = reservation_end_locked(reservation=reservation, now=now, reason=End.RELEASED)
        return reservation.end_reason == End.RELEASED


# --- waitlists ----------------------------------------------------------------
#
# A sold-out date's waitlist is a FIFO line of its own. A seat that frees (cancel,
# refund, expiry, release, a refused payment) goes to the first fan waiting, in the
# same transaction that frees it: it is never free in between, so nobody outside
# the waitlist takes it first, and the one-live-hold-per-seat constraint means it
# is never offered twice nor sold while offered. The offer is a hold in the fan's
# name for the concert's hold time, with a turn to pay (queue_turn_grant): the fan
# does not wait in the line again. An offer that lapses or is declined frees the
# seat again, and so goes to the next fan.

WStatus = WaitlistEntry.Status


def waitlist_join(
    *, user: AbstractBaseUser, schedule_id: int, now: datetime
) -> tuple[WaitlistEntry, bool]:
    """Put the fan on a sold-out date's waitlist (once: joining again returns the
    same entry). Refused while the date has a free seat (SeatsStillAvailable) or is
    not open for booking. Needs no turn in the line: a sold-out date has nothing to
    gate, and the waitlist keeps its own order."""
    schedule = selectors.schedule_get(schedule_id=schedule_id)
    if not schedule.is_open_for_booking(now=now):
        raise BookingClosed()
    if selectors.schedule_availability(schedule_id=schedule_id, now=now).seats:
        raise SeatsStillAvailable()
    try:
        with transaction.atomic():
            entry = WaitlistEntry.objects.create(user_id=user.pk, schedule=schedule, created_at=now)
    except IntegrityError as exc:
        if WAITLIST_CONSTRAINT not in _violated_constraint(exc):
            raise
        existing = WaitlistEntry.objects.filter(
            user_id=user.pk, schedule_id=schedule_id, status__in=WaitlistEntry.LIVE_STATUSES
        ).first()
        if existing is None:  # it ended in between: join afresh
            return waitlist_join(user=user, schedule_id=schedule_id, now=now)
        return existing, False
    return entry, True


WAITLIST_CONSTRAINT = "waitlist_one_live_entry_per_fan"


def waitlist_leave(*, user_id: int, schedule_id: int, now: datetime) -> WaitlistEntry:
    """The fan leaves the date's waitlist. An open offer is declined, freeing its seat
    for the next fan (a booked one is kept: cancel the booking for that)."""
    entry = WaitlistEntry.objects.filter(
        user_id=user_id, schedule_id=schedule_id, status__in=WaitlistEntry.LIVE_STATUSES
    ).first()
    if entry is None:
        raise WaitlistEntryNotFound()
    if entry.status == WStatus.OFFERED:
        with transaction.atomic():
            reservation = reservation_lock(user_id=user_id, reservation_id=entry.reservation_id)
            WaitlistEntry.objects.filter(pk=entry.pk, status=WStatus.OFFERED).update(
                status=WStatus.LEFT, ended_at=now
            )
            if reservation.status == Reservation.Status.HELD:
                # Declined: the seat frees, and goes to the next fan.
                reservation_end(ids=[reservation.pk], now=now, reason=End.CANCELLED)
    else:
        WaitlistEntry.objects.filter(pk=entry.pk, status=WStatus.WAITING).update(
            status=WStatus.LEFT, ended_at=now
        )
    entry.refresh_from_db()
    return entry


def _waitlist_after_seats_freed(*, ids: Sequence[int], now: datetime) -> None:
    """Within reservation_end's transaction: offers that just ended lapse, and each
    seat just freed on a date with fans waiting goes to the first of them. Two
    statements when nobody waits (plain SQL with one array parameter on PostgreSQL:
    the expiry sweep passes thousands of ids)."""
    if connection.vendor == "postgresql":
        freed = _waitlist_freed_sql(ids=ids, now=now)
    else:
        freed = _waitlist_freed_orm(ids=ids, now=now)
    for schedule_id, seat_id in freed:
        _waitlist_offer(schedule_id=schedule_id, seat_id=seat_id, now=now)


def _waitlist_freed_sql(*, ids: Sequence[int], now: datetime) -> list[tuple[int, int]]:
    entries, reservations = WaitlistEntry._meta.db_table, Reservation._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {entries} w SET status = %s, ended_at = %s FROM {reservations} r"
            f" WHERE r.id = w.reservation_id AND w.reservation_id = ANY(%s::bigint[])"
            f" AND w.status = %s AND r.status <> %s",
            [WStatus.LAPSED, now, list(ids), WStatus.OFFERED, Reservation.Status.CONFIRMED],
        )
        cursor.execute(
            f"SELECT DISTINCT r.schedule_id, r.seat_id FROM {reservations} r"
            f" WHERE r.id = ANY(%s::bigint[]) AND r.ended_at = %s AND r.status NOT IN (%s, %s)"
            f" AND EXISTS (SELECT 1 FROM {entries} w WHERE w.schedule_id = r.schedule_id"
            f" AND w.status = %s) ORDER BY r.seat_id",
            [list(ids), now, *Reservation.LIVE_STATUSES, WStatus.WAITING],
        )
        return cursor.fetchall()


def _waitlist_freed_orm(*, ids: Sequence[int], now: datetime) -> list[tuple[int, int]]:
    """The same, through the ORM (make run's embedded SQLite)."""
    WaitlistEntry.objects.filter(reservation_id__in=ids, status=WStatus.OFFERED).exclude(
        reservation__status=Reservation.Status.CONFIRMED
    ).update(status=WStatus.LAPSED, ended_at=now)
    return list(
        Reservation.objects.filter(id__in=ids, ended_at=now)
        .exclude(status__in=Reservation.LIVE_STATUSES)
        .filter(schedule__waitlist__status=WStatus.WAITING)
        .values_list("schedule_id", "seat_id")
        .distinct()
        .order_by("seat_id")
    )


def _waitlist_offer(*, schedule_id: int, seat_id: int, now: datetime) -> WaitlistEntry | None:
    """Offer the freed seat to the first fan waiting for its date, or to nobody.

    The entry is locked SKIP LOCKED, so two seats freed at once go to two different
    fans; the hold is inserted under the one-live-hold-per-seat constraint, so a seat
    someone else holds meanwhile is simply not offered. No seat lock is taken here:
    the caller may be the expiry sweep, which holds reservation locks, and the hold
    path locks a seat before reservations."""
    seat = Seat.objects.select_related("schedule__concert").get(pk=seat_id)
    concert = seat.schedule.concert
    for _ in range(WAITLIST_SKIP_LIMIT):
        entry = _waitlist_first_waiting(schedule_id=schedule_id)
        if entry is None:
            return None
        mine = Reservation.objects.filter(
            Reservation.live_q(now=now), schedule_id=schedule_id, user_id=entry.user_id
        ).count()
        if mine >= concert.seat_limit:  # at the limit already: this fan is done waiting
            WaitlistEntry.objects.filter(pk=entry.pk).update(status=WStatus.LAPSED, ended_at=now)
            continue
        try:
            with transaction.atomic():
                hold = _hold_insert(user_id=entry.user_id, seat=seat, concert=concert, now=now)
        except IntegrityError as exc:
            if LIVE_SEAT_CONSTRAINT not in _violated_constraint(exc):
                raise
            return None  # someone holds the seat after all: nothing to offer
        WaitlistEntry.objects.filter(pk=entry.pk).update(
            status=WStatus.OFFERED, offered_at=now, reservation=hold
        )
        queue_services.queue_turn_grant(
            user_id=entry.user_id, concert_id=concert.pk, until=hold.expires_at, now=now
        )
        seatcache.bump_after_commit([schedule_id])
        entry.status, entry.offered_at, entry.reservation = WStatus.OFFERED, now, hold
        return entry
    return None


WAITLIST_SKIP_LIMIT = 50  # fans passed over (at their seat limit) per freed seat


def _waitlist_first_waiting(*, schedule_id: int) -> WaitlistEntry | None:
    """The first fan still waiting for the date, row-locked; one that another offer in
    flight has locked is skipped, so two freed seats never go to the same fan."""
    return (
        WaitlistEntry.objects.filter(schedule_id=schedule_id, status=WStatus.WAITING)
        .order_by("id")
        .select_for_update(skip_locked=True, no_key=True)
        .first()
    )
