"""Reads for the catalogue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import NamedTuple

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import (
    Case,
    Count,
    DateTimeField,
    Exists,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    When,
)
from django.db.models.functions import Coalesce

from concerts import seatcache
from concerts.exceptions import ConcertNotFound, ReservationNotFound, ScheduleNotFound
from concerts.models import (
    SEATS_PER_SCHEDULE,
    Concert,
    Reservation,
    Schedule,
    Seat,
    WaitlistEntry,
)
from config import rawsql
from config.auth import credentials_read, credentials_sql, credentials_uncached, credentials_width
from config.cache import Reply, RoundTrip
from config.memo import KeptFor
from queueing import selectors as queue_selectors


def concert_list() -> QuerySet[Concert]:
    return Concert.objects.order_by("title", "id")


def concert_list_for_shop(*, now: datetime) -> QuerySet[Concert]:
    """Concerts for the shop window, each with its open dates' price range, next date
    and seats left (None where nothing is open). One query, whatever the size."""
    open_seats = Seat.objects.filter(
        schedule__concert=OuterRef("pk"),
        schedule__booking_opens_at__lte=now,
        schedule__booking_closes_at__gt=now,
        schedule__starts_at__gt=now,
    ).order_by()
    live = Reservation.objects.filter(Reservation.live_q(now=now), seat=OuterRef("pk"))

    def aggregate(expression, output):
        return Subquery(
            open_seats.values("schedule__concert").annotate(v=expression).values("v")[:1],
            output_field=output,
        )

    free = open_seats.exclude(Exists(live))
    return Concert.objects.order_by("title", "id").annotate(
        min_price=aggregate(Min("price"), IntegerField()),
        max_price=aggregate(Max("price"), IntegerField()),
        next_date=aggregate(Min("schedule__starts_at"), DateTimeField()),
        seats_left=Coalesce(
            Subquery(
                free.values("schedule__concert").annotate(n=Count("id")).values("n")[:1],
                output_field=IntegerField(),
            ),
            0,
        ),
    )


def concert_get_with_schedules(*, concert_id: int) -> Concert:
    """The concert, its dates, and its scheduled sale (`sale_starts_at` and
    `line_opens_at`, both None when the line is simply open)."""
    schedules = Schedule.objects.order_by("starts_at", "id")
    try:
        concert = (
            Concert.objects.select_related("waiting_room")
            .prefetch_related(Prefetch("schedules", queryset=schedules))
            .get(pk=concert_id)
        )
    except Concert.DoesNotExist:
        raise ConcertNotFound() from None
    room = concert.waiting_room  # every concert has one (concert_create)
    concert.sale_starts_at, concert.line_opens_at = room.sale_starts_at, room.pre_queue_opens_at
    return concert


# --- availability ---------------------------------------------------------


def schedule_get(*, schedule_id: int) -> Schedule:
    """The date with its concert (one plain SQL read: every hold starts with it)."""
    with rawsql.cursor() as cursor:
        cursor.execute(
            f"SELECT {rawsql.select(Schedule, 'd')}, {rawsql.select(Concert, 'c')}"
            f" FROM {Schedule._meta.db_table} d"
            f" JOIN {Concert._meta.db_table} c ON c.id = d.concert_id WHERE d.id = %s",
            [schedule_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise ScheduleNotFound()
    schedule, concert = rawsql.instances(row, Schedule, Concert)
    schedule.concert = concert
    return schedule


def schedule_get_with_holder(
    *,
    schedule_id: int,
    seat_number: int,
    now: datetime,
    cached: Reply | None = None,
    api_key: str | None = None,
) -> tuple[Schedule, tuple[int, int] | None, AbstractBaseUser | None]:
    """The date with its concert, and (reservation id, fan) of the seat's live
    reservation (confirmed, or held and unexpired) or None: one plain SQL read, as
    every hold starts with both. The holder is read without a lock: a hint that
    spares a fan the seat's lock queue, never the decision. (There is at most one
    live reservation per seat, so the two subqueries read the same row.)

    `cached`: the date's cached seats (a schedule_availability_later reply). When
    they are current and say the seat is taken, the answer comes from them with no
    SQL, and the date is the cached, read-only one, without its concert (the caller
    refuses the seat). They are current: every write on the date bumps their version
    after it commits, and they lapse with the date's earliest hold. When the SQL
    read finds the seat taken and the cache missed, the date's seats are cached, so
    the next holds of a taken seat read no SQL.

    `api_key`: an API token key whose fan the caller does not know yet (a fast lane's
    hold whose key the cache lacked). The same read authenticates it
    (config.auth.credentials_sql), and the third item is that fan; a key it refuses
    raises DRF's AuthenticationFailed before any other answer (and when the cached
    seats answer with no SQL, the key is read by itself). Without one, None."""
    fan = None
    if cached is not None:
        answer, seen_version = seatcache.read_reply(cached, now=now)
        holder = (answer or {}).get("holders", {}).get(str(seat_number))
        if holder is not None:
            if api_key is not None:
                fan, _ = credentials_uncached(api_key)
            return _cached_schedule(schedule_id, answer), (holder[0], holder[1]), fan
    schedule, holder, fan = _schedule_get_with_holder(
        schedule_id=schedule_id, seat_number=seat_number, now=now, api_key=api_key
    )
    if cached is not None and holder is not None and answer is None and seen_version is not None:
        answer = _availability_answer(schedule=schedule, now=now)
        seatcache.store(schedule_id, seen_version=seen_version, answer=answer)
    return schedule, holder, fan


def _schedule_get_with_holder(
    *, schedule_id: int, seat_number: int, now: datetime, api_key: str | None = None
) -> tuple[Schedule, tuple[int, int] | None, AbstractBaseUser | None]:
    # The seat by its number on the date (the date's unique index), then that seat's
    # reservations: two index reads, as the decision under the locks reads them (by
    # seat, seat_hold_checks). Asked by the reservation's date, the plan read all the
    # date's reservations and every seat of that number on every date.
    holder = (
        f"FROM {Seat._meta.db_table} s JOIN {Reservation._meta.db_table} r ON r.seat_id = s.id"
        f" WHERE s.schedule_id = d.id AND s.number = %s"
        f" AND (r.status = %s OR (r.status = %s AND r.expires_at > %s)) LIMIT 1"
    )
    live = [seat_number, Reservation.Status.CONFIRMED, Reservation.Status.HELD, now]
    columns = f"{rawsql.select(Schedule, 'd')}, {rawsql.select(Concert, 'c')}"
    columns += f", (SELECT r.id {holder}), (SELECT r.user_id {holder})"
    dated = f"{Schedule._meta.db_table} d JOIN {Concert._meta.db_table} c ON c.id = d.concert_id"
    if api_key is None:
        sql, params, skip = f"SELECT {columns} FROM {dated} WHERE d.id = %s", [], 0
    else:  # one row either way: the key's (token, user) or NULLs, then the date's or NULLs
        fan_columns, fan_source = credentials_sql("%s")
        sql = f"SELECT {fan_columns}, {columns} FROM {fan_source} LEFT JOIN ({dated}) ON d.id = %s"
        params, skip = [api_key], credentials_width()
    with rawsql.cursor() as cursor:
        cursor.execute(sql, rawsql.params([*live, *live, *params, schedule_id]))
        row = cursor.fetchone()
    fan = None if api_key is None else credentials_read(api_key, row)[0]  # 401 comes first
    if row is None or row[skip] is None:
        raise ScheduleNotFound()
    schedule, concert = rawsql.instances(row[skip:], Schedule, Concert)
    schedule.concert = concert
    return schedule, (None if row[-2] is None else (row[-2], row[-1])), fan


def _fan_live_count(*, user_id: int, schedule_id: int, now: datetime) -> tuple[str, list]:
    """SQL for how many live reservations (confirmed, or held and unexpired) the fan
    has on the date (the per-fan seat limit counts them), and its parameters."""
    return (
        f"SELECT COUNT(*) FROM {Reservation._meta.db_table} m WHERE m.schedule_id = %s"
        " AND m.user_id = %s AND (m.status = %s OR (m.status = %s AND m.expires_at > %s))",
        [schedule_id, user_id, Reservation.Status.CONFIRMED, Reservation.Status.HELD, now],
    )


def _seat_occupied(*, seat_id: int) -> tuple[str, list]:
    """SQL for the seat's reservations that are held (its hold may have lapsed) or
    confirmed, `FROM` on: at most one (the live-seat constraint), and its parameters."""
    return (
        f"FROM {Reservation._meta.db_table} r WHERE r.seat_id = %s AND r.status IN (%s, %s)",
        [seat_id, *Reservation.LIVE_STATUSES],
    )


def seat_hold_checks(
    *, user_id: int, schedule_id: int, seat_id: int, now: datetime
) -> tuple[int, Reservation | None]:
    """What a hold checks under the fan's and the seat's locks, in one statement:
    how many live reservations (confirmed, or held and unexpired) the fan has on the
    date (the per-fan seat limit counts them), and the seat's newest reservation
    that is held or confirmed (its hold may have lapsed), or None. Plain SQL: every
    hold whose seat_hold_free condition failed asks why."""
    count, count_params = _fan_live_count(user_id=user_id, schedule_id=schedule_id, now=now)
    occupied, occupied_params = _seat_occupied(seat_id=seat_id)
    with rawsql.cursor() as cursor:
        cursor.execute(
            f"SELECT ({count}), {rawsql.select(Reservation, 'cur')} FROM (SELECT 1 AS one) o"
            f" LEFT JOIN (SELECT {rawsql.select(Reservation, 'r')} {occupied}"
            f" ORDER BY r.id DESC LIMIT 1) cur ON 1 = 1",
            rawsql.params([*count_params, *occupied_params]),
        )
        mine, *current = cursor.fetchone()
    if current[0] is None:
        return mine, None
    return mine, rawsql.instances(tuple(current), Reservation)[0]


def seat_hold_free(
    *, user_id: int, schedule_id: int, seat_id: int, now: datetime, limit: int
) -> tuple[str, list]:
    """The condition, as SQL and its parameters, under which seat_hold_checks lets a
    hold through with nothing to do first: the fan below `limit` live reservations on
    the date, and nothing held (lapsed or not) or confirmed on the seat. For the
    hold's insert to carry (rawsql.insert's `where`): a hold that fails it asks
    seat_hold_checks why, under the same locks."""
    count, count_params = _fan_live_count(user_id=user_id, schedule_id=schedule_id, now=now)
    occupied, occupied_params = _seat_occupied(seat_id=seat_id)
    return (
        f"({count}) < %s AND NOT EXISTS (SELECT 1 {occupied})",
        [*count_params, limit, *occupied_params],
    )


def schedule_concert_id(*, schedule_id: int) -> int:
    concert_id = (
        Schedule.objects.filter(pk=schedule_id).values_list("concert_id", flat=True).first()
    )
    if concert_id is None:
        raise ScheduleNotFound()
    return concert_id


def _open_q(*, now: datetime) -> Q:
    return Q(booking_opens_at__lte=now, booking_closes_at__gt=now, starts_at__gt=now)


def concert_sold_out(*, concert_id: int, now: datetime) -> bool:
    """The concert has dates open for booking, and every seat on them is sold: none
    free, none held (a hold may lapse or fail to pay, and its seat come back). One
    query. The waiting room tells the fans in line (queueing.selectors)."""
    open_seats = Seat.objects.filter(
        schedule__concert_id=concert_id,
        schedule__booking_opens_at__lte=now,
        schedule__booking_closes_at__gt=now,
        schedule__starts_at__gt=now,
    )
    sold = Reservation.objects.filter(seat=OuterRef("pk"), status=Reservation.Status.CONFIRMED)
    row = open_seats.aggregate(seats=Count("pk"), unsold=Count("pk", filter=~Exists(sold)))
    return row["seats"] > 0 and row["unsold"] == 0


def schedule_ids_sold_out(*, concert_id: int, now: datetime) -> set[int]:
    """The concert's dates open for booking with no seat free right now (every seat
    held or sold): the dates a fan may join the waitlist of. One query."""
    free = Seat.objects.filter(schedule=OuterRef("pk")).exclude(
        Exists(Reservation.objects.filter(Reservation.live_q(now=now), seat=OuterRef("pk")))
    )
    return set(
        Schedule.objects.filter(_open_q(now=now), concert_id=concert_id)
        .exclude(Exists(free))
        .values_list("id", flat=True)
    )


def schedule_list_bookable(*, concert_id: int, now: datetime) -> list[Schedule]:
    """Dates open for booking with at least one available seat, by time; each has
    `available_seats`. One query, whatever the number of dates, seats or holds.

    Every admitted fan reads this, and fans watching for held seats to come back
    read it again and again: on PostgreSQL the query (`_bookable`, the rule's one
    owner) is compiled once per process and run with this call's values, since
    building and compiling it through the ORM cost three quarters of the request."""
    if connection.vendor != "postgresql":
        return list(_bookable(concert_id=concert_id, now=now))
    sql, params = _bookable_sql()
    values = [now if p == _AT else concert_id if p == _CONCERT else p for p in params]
    with rawsql.cursor() as cursor:
        cursor.execute(sql, values)
        rows = cursor.fetchall()
    dates = []
    for row in rows:
        (schedule,) = rawsql.instances(row[:-1], Schedule)
        schedule.available_seats = row[-1]
        dates.append(schedule)
    return dates


def _bookable(*, concert_id: int, now: datetime) -> QuerySet[Schedule]:
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
    return (
        Schedule.objects.filter(_open_q(now=now), concert_id=concert_id)
        .annotate(available_seats=Coalesce(Subquery(seats), 0) - Coalesce(Subquery(taken), 0))
        .filter(available_seats__gt=0)
        .order_by("starts_at", "id")
    )


# The values _bookable_sql compiles the query with, to find where each call's go.
_AT = datetime(1901, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
_CONCERT = -8_765_432_109


@cache
def _bookable_sql() -> tuple[str, tuple]:
    """_bookable's SQL and parameters, compiled once: its columns are Schedule's, in
    field order (rawsql.instances), then `available_seats`."""
    query = _bookable(concert_id=_CONCERT, now=_AT).query
    sql, params = query.sql_with_params()
    if (
        _AT not in params
        or _CONCERT not in params
        or list(query.annotation_select) != ["available_seats"]
    ):  # pragma: no cover - a change to _bookable that this compiling cannot follow
        raise RuntimeError("schedule_list_bookable: _bookable no longer compiles as expected")
    return sql, tuple(params)


@dataclass(frozen=True)
class Availability:
    """A date and its available seats by number. Read-only: one answer built from
    the cache is shared by every request that reads the same cached seats."""

    schedule: Schedule
    seats: tuple[AvailableSeat, ...]
    # Built from the cache and shared by every request that reads the same cached
    # seats (so a reader may keep what it derives from it, keyed by it).
    shared: bool = False


class AvailableSeat(NamedTuple):
    """A free seat as the seat list shows it. A plain tuple, not a Seat: the list is
    read on every seat-map request, and fifty model instances cost more than the
    rest of the answer."""

    number: int
    price: int


def schedule_availability(
    *, schedule_id: int, now: datetime, cached: Reply | None = None
) -> Availability:
    """The date and its available seats, none outside its booking window.

    Answered from Redis while nothing has changed (concerts.seatcache: no SQL),
    else from one PostgreSQL query, whose answer is then kept until the next write
    on the date or the moment its earliest live hold lapses, whichever is first.
    `cached`: the Redis read already made in a RoundTrip (schedule_availability_later).
    """
    if cached is None:
        answer, seen_version = seatcache.read(schedule_id, now=now)
    else:
        answer, seen_version = seatcache.read_reply(cached, now=now)
    if answer is None:
        schedule = schedule_get(schedule_id=schedule_id)
        answer = _availability_answer(schedule=schedule, now=now)
        if seen_version is not None:
            seatcache.store(schedule_id, seen_version=seen_version, answer=answer)
        availability = _availability_of(schedule_id, answer)
    else:
        availability = _built_from_cache(schedule_id, answer)
    if not availability.schedule.is_open_for_booking(now=now):
        return Availability(availability.schedule, ())
    return availability


def _availability_of(schedule_id: int, answer: dict, *, shared: bool = False) -> Availability:
    schedule = _cached_schedule(schedule_id, answer)
    seats = tuple(AvailableSeat(n, p) for n, p in answer["seats"])
    return Availability(schedule, seats, shared)


# What each cached answer this process decoded was built into (seatcache decodes an
# answer once per process for the same bytes, and every fan reads it until the
# next write on the date): built once too.
_built = KeptFor(1024)


def _built_from_cache(schedule_id: int, answer: dict) -> Availability:
    built = _built.get(answer)
    if built is not None and built.schedule.pk == schedule_id:
        return built
    return _built.keep(answer, _availability_of(schedule_id, answer, shared=True))


def schedule_availability_later(trip: RoundTrip, *, schedule_id: int) -> Reply:
    """schedule_availability's Redis read, in a RoundTrip: pass the reply as `cached`."""
    return seatcache.read_later(trip, schedule_id)


_SCHEDULE_COLUMNS = tuple(field.attname for field in Schedule._meta.concrete_fields)


def _cached_schedule(schedule_id: int, answer: dict) -> Schedule:
    """The date as a cached answer has it (read-only: its concert id and its times).
    Built positionally, in the model's column order (Django's fast path: every seat
    map makes one); `created_at`, which the cache does not hold, is None as with
    keywords. A test holds the two equal."""
    values = {
        "id": schedule_id,
        "concert_id": answer["concert_id"],
        "starts_at": seatcache.from_timestamp(answer["starts_at"]),
        "booking_opens_at": seatcache.from_timestamp(answer["booking_opens_at"]),
        "booking_closes_at": seatcache.from_timestamp(answer["booking_closes_at"]),
    }
    return Schedule(*[values.get(name) for name in _SCHEDULE_COLUMNS])


def seat_list_available(*, schedule: Schedule, now: datetime) -> tuple[AvailableSeat, ...]:
    """Available seats of a date, by number; none outside its booking window."""
    return schedule_availability(schedule_id=schedule.pk, now=now).seats


def _availability_answer(*, schedule: Schedule, now: datetime) -> dict:
    """One query: each seat, the live reservation that blocks it (its id and fan),
    and until when. (At most one live reservation per seat: the subqueries agree.)"""
    live = Reservation.objects.filter(Reservation.live_q(now=now), seat=OuterRef("pk"))
    held = live.filter(status=Reservation.Status.HELD).order_by("expires_at")
    rows = (
        Seat.objects.filter(schedule=schedule)
        .annotate(
            holder_id=Subquery(live.values("id")[:1]),
            holder_user_id=Subquery(live.values("user_id")[:1]),
            held_until=Subquery(held.values("expires_at")[:1]),
        )
        .order_by("number")
        .values_list("number", "price", "holder_id", "holder_user_id", "held_until")
    )
    seats, holders, lapses = [], {}, []
    for number, price, holder_id, holder_user_id, held_until in rows:
        if holder_id is None:
            seats.append([number, price])
        else:
            holders[str(number)] = [holder_id, holder_user_id]
            if held_until is not None:
                lapses.append(held_until)
    return {
        "concert_id": schedule.concert_id,
        "starts_at": seatcache.timestamp(schedule.starts_at),
        "booking_opens_at": seatcache.timestamp(schedule.booking_opens_at),
        "booking_closes_at": seatcache.timestamp(schedule.booking_closes_at),
        "seats": seats,
        "holders": holders,
        "until": seatcache.timestamp(min(lapses)) if lapses else None,
    }


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


@dataclass(frozen=True)
class Cart:
    """The fan's live holds, by concert; each concert's seats are paid in one checkout."""

    holds: list[Reservation]
    expires_at: datetime | None  # the first hold to run out: the cart's one countdown

    @property
    def total(self) -> int:
        return sum(hold.price for hold in self.holds)

    def by_concert(self) -> list[tuple[Concert, list[Reservation]]]:
        groups: dict[int, list[Reservation]] = {}
        for hold in self.holds:
            groups.setdefault(hold.schedule.concert_id, []).append(hold)
        return [(seats[0].schedule.concert, seats) for seats in groups.values()]


def cart_for(*, user_id: int, now: datetime) -> Cart:
    """The fan's held seats that are still live, soonest to expire first. One query."""
    holds = list(
        Reservation.objects.filter(
            Reservation.live_q(now=now), user_id=user_id, status=Reservation.Status.HELD
        )
        .select_related("seat", "schedule__concert")
        .order_by("expires_at", "id")
    )
    return Cart(holds=holds, expires_at=holds[0].expires_at if holds else None)


def reservation_get_for(*, user_id: int, reservation_id: int) -> Reservation:
    """The fan's own reservation; anyone else's is reported as not found."""
    reservation = reservation_list_for(user_id=user_id).filter(pk=reservation_id).first()
    if reservation is None:
        raise ReservationNotFound()
    return reservation


# --- waitlists ------------------------------------------------------------------


def waitlist_for_user(*, user_id: int, now: datetime) -> list[WaitlistEntry]:
    """The fan's waitlist entries, newest first, each with `position` (its place among
    those still waiting for the date, or None) and, for an open offer, `offer_token`
    (the fan's queue token for the concert: the turn that comes with the offer)."""
    ahead = WaitlistEntry.objects.filter(
        schedule_id=OuterRef("schedule_id"),
        status=WaitlistEntry.Status.WAITING,
        id__lte=OuterRef("id"),
    )
    entries = list(
        WaitlistEntry.objects.filter(user_id=user_id)
        .select_related("schedule__concert", "reservation__seat")
        .annotate(
            position=Case(
                When(
                    status=WaitlistEntry.Status.WAITING,
                    then=Subquery(ahead.values("schedule_id").annotate(n=Count("id")).values("n")),
                ),
                default=None,
                output_field=IntegerField(),
            )
        )
        .order_by("-id")
    )
    for entry in entries:
        entry.offer_token = None
        hold = entry.reservation
        open_offer = (
            entry.status == WaitlistEntry.Status.OFFERED
            and hold is not None
            and hold.status == Reservation.Status.HELD
            and hold.is_live(now=now)
        )
        if open_offer:
            token = queue_selectors.queue_token_live_for(
                user_id=user_id, concert_id=entry.schedule.concert_id
            )
            entry.offer_token = token.key if token is not None else None
    return entries


# --- the operators' live view ---------------------------------------------------


@dataclass(frozen=True)
class DateSales:
    schedule: Schedule
    held: int
    sold: int
    free: int
    waitlist: int  # fans waiting for a seat to free


def sales_by_date(*, concert_id: int, now: datetime) -> list[DateSales]:
    """Each date of the concert with its seats held, sold and free right now, and its
    waitlist. One query."""
    live_hold = Q(reservations__status=Reservation.Status.HELD, reservations__expires_at__gt=now)
    dates = (
        Schedule.objects.filter(concert_id=concert_id)
        .annotate(
            held=Count("reservations", filter=live_hold, distinct=True),
            sold=Count(
                "reservations",
                filter=Q(reservations__status=Reservation.Status.CONFIRMED),
                distinct=True,
            ),
            waiting=Count(
                "waitlist", filter=Q(waitlist__status=WaitlistEntry.Status.WAITING), distinct=True
            ),
        )
        .order_by("starts_at", "id")
    )
    return [
        DateSales(d, d.held, d.sold, SEATS_PER_SCHEDULE - d.held - d.sold, d.waiting) for d in dates
    ]


def sales_per_minute(*, concert_id: int, minutes: list[datetime]) -> list[int]:
    """Seats confirmed (paid) in each of these minutes (each a minute's start)."""
    if not minutes:
        return []
    stamps = Reservation.objects.filter(
        schedule__concert_id=concert_id,
        confirmed_at__gte=minutes[0],
        confirmed_at__lt=minutes[-1] + timedelta(minutes=1),
    ).values_list("confirmed_at", flat=True)
    index = {m: i for i, m in enumerate(minutes)}
    counts = [0] * len(minutes)
    for stamp in stamps:
        slot = index.get(stamp.replace(second=0, microsecond=0))
        if slot is not None:
            counts[slot] += 1
    return counts
