"""Reads for the waiting room: position, ETA, poll pacing, operator stats."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.expressions import RawSQL

from config import rawsql
from queueing import mirror
from queueing.models import BUCKET_SIZE, QueueBucket, QueueToken, WaitingRoom, is_token_key

Status = QueueToken.Status

# The admission rate is measured over this window (seconds).
RATE_WINDOW = 300
# Near the front of the line fans poll every FRONT_POLL seconds.
FRONT_POLL = 2
MAX_BASE_POLL = 60


def idle_cutoff(*, now: datetime) -> datetime:
    """Waiting tokens last seen at or before this are abandoned.

    The timeout is never shorter than three poll intervals, so a fan who polls
    exactly as told can never be dropped, however far back the budget pushes them.
    """
    timeout = max(settings.QUEUE_WAITING_IDLE_TIMEOUT, 3 * budget_floor_seconds())
    return now - timedelta(seconds=timeout)


def effective_status(token: QueueToken, *, now: datetime) -> str:
    """The status as of `now`: lapsed tokens are expired the moment they lapse."""
    if token.status == Status.ACTIVE and token.active_until <= now:
        return Status.EXPIRED
    if token.status == Status.WAITING and token.last_seen_at <= idle_cutoff(now=now):
        return Status.EXPIRED
    return token.status


def _position_sql(token_table: str) -> str:
    """SQL for 1 + the waiting tokens ahead of the token row `token_table`.

    One expression, so one snapshot: the sum of whole buckets before the token's
    bucket, plus a count inside its bucket (at most BUCKET_SIZE index entries).
    """
    tokens, buckets = QueueToken._meta.db_table, QueueBucket._meta.db_table
    t = f'"{token_table}"'
    return (
        f"1 + (SELECT COALESCE(SUM(b.waiting), 0) FROM {buckets} b"
        f"     WHERE b.concert_id = {t}.concert_id AND b.number < {t}.id / {BUCKET_SIZE})"
        f"  + (SELECT COUNT(*) FROM {tokens} w"
        f"     WHERE w.concert_id = {t}.concert_id AND w.status = 'waiting'"
        f"       AND w.id >= ({t}.id / {BUCKET_SIZE}) * {BUCKET_SIZE} AND w.id < {t}.id)"
    )


def queue_position(*, token: QueueToken) -> int | None:
    """1 + the waiting tokens of the same concert issued before this one (None unless waiting).

    Uses the position read together with the token row when there is one.
    """
    if token.status != Status.WAITING:
        return None
    position = getattr(token, "position_at_read", None)
    if position is None:
        position = (
            QueueToken.objects.filter(pk=token.pk)
            .annotate(p=RawSQL(_position_sql(QueueToken._meta.db_table), []))
            .values_list("p", flat=True)
            .first()
        )
    return int(position)


# Pacing estimates (total waiting, admission rates) are shared through the cache
# and also kept for a second in each process, so a poll does not pay a cache
# round trip for each of them.
_local: dict[str, tuple[float, float]] = {}
LOCAL_TTL = 1.0


def _shared_estimate(key: str, compute, ttl: int = 5):
    hit = _local.get(key)
    clock = time.monotonic()
    if hit is not None and hit[1] > clock:
        return hit[0]
    value = cache.get(key)
    if value is None:
        value = compute()
        cache.set(key, value, ttl)
    _local[key] = (value, clock + LOCAL_TTL)
    return value


def clear_local_estimates() -> None:
    _local.clear()


def total_waiting() -> int:
    """Waiting tokens across all concerts (bucket sums; shared for 5 s)."""
    return _shared_estimate(
        "queue:total_waiting",
        lambda: QueueBucket.objects.aggregate(n=Sum("waiting"))["n"] or 0,
    )


def budget_floor_seconds() -> int:
    """The shortest poll interval that keeps every waiting fan within the poll budget."""
    budget = max(1, settings.QUEUE_POLL_BUDGET_PER_SECOND)
    return math.ceil(total_waiting() / budget)


# Whether a concert is sold out is the seats' business (concerts); the waiting room
# only repeats it to the fans in line, so that they need not wait for nothing.
# concerts plugs its selector in at start-up (concerts.apps.ConcertsConfig.ready):
# the call is turned around and the import ladder keeps pointing one way.
_sold_out_source: Callable[..., bool] | None = None
SOLD_OUT_TTL = 5  # seconds a shared answer lives (plus LOCAL_TTL in each process)


def sold_out_source_set(source: Callable[..., bool] | None) -> None:
    global _sold_out_source
    _sold_out_source = source


def concert_sold_out(*, concert_id: int, now: datetime) -> bool:
    """True when every seat of the concert's open dates is sold (a live hold may still
    come back, so a held seat is not sold). Advisory: shared for SOLD_OUT_TTL seconds,
    so a poll pays no SQL for it, and a seat given back shows within a few seconds."""
    source = _sold_out_source
    if source is None:
        return False
    return bool(
        _shared_estimate(
            f"queue:sold_out:{concert_id}",
            lambda: int(source(concert_id=concert_id, now=now)),
            ttl=SOLD_OUT_TTL,
        )
    )


def room_capacity(*, concert_id: int) -> int:
    room = WaitingRoom.objects.filter(pk=concert_id).first()
    return room.capacity if room else settings.QUEUE_MAX_ACTIVE


def room_is_paused(*, concert_id: int) -> bool:
    return WaitingRoom.objects.filter(pk=concert_id, admission_paused=True).exists()


RATE_SCALE = 1000  # the shared rate is kept in thousandths of an admission a second


def rate_cache_key(concert_id: int | str) -> str:
    return f"queue:rate:{concert_id}"


def admission_rate(*, concert_id: int, now: datetime) -> float:
    """Admissions per second for a concert over the last RATE_WINDOW seconds.

    With no admissions in the window it falls back to capacity / QUEUE_ACTIVE_TTL:
    every slot turns over at least once per active TTL. Cached for 5 s per concert,
    shared as a whole number of thousandths (so the mirror's read script can use
    the same value to pace a poll: see mirror._POLL_AFTER).
    """

    def compute() -> int:
        since = now - timedelta(seconds=RATE_WINDOW)
        admitted = QueueToken.objects.filter(concert_id=concert_id, admitted_at__gt=since).count()
        if admitted:
            rate = admitted / RATE_WINDOW
        else:
            capacity = room_capacity(concert_id=concert_id) or settings.QUEUE_MAX_ACTIVE
            rate = max(1, capacity) / max(1, settings.QUEUE_ACTIVE_TTL)
        return max(1, round(rate * RATE_SCALE))

    return _shared_estimate(rate_cache_key(concert_id), compute) / RATE_SCALE


def poll_after_seconds(*, position: int | None, eta: int | None) -> int:
    """How long the client waits before its next poll (see docs/waiting-room.md)."""
    floor = budget_floor_seconds()
    if position is None:
        return max(5, floor)
    base = FRONT_POLL if position <= 10 else math.ceil(FRONT_POLL * math.sqrt(position / 10))
    base = min(base, MAX_BASE_POLL)
    if eta is not None:
        base = min(base, max(FRONT_POLL, eta))
    return max(base, floor)


# In the pre-queue, far from the start, a fan polls this often (the page counts down
# by itself); near it, each fan comes back at the start plus a slot of their own
# within a spread of at least PRE_QUEUE_SPREAD seconds, so the start is no herd.
PRE_QUEUE_FAR_POLL = 60
PRE_QUEUE_SPREAD = 10


def pre_queue_poll_after(
    *, key: str, sale_starts_at: datetime, now: datetime, pre_queue_size: int
) -> int:
    """When a fan in the pre-queue should poll next (see docs/waiting-room.md).

    The whole pre-queue's first polls after the start are spread evenly over
    max(PRE_QUEUE_SPREAD, size / poll budget) seconds, each fan at a slot derived
    from their token, the same on every poll, so the spread holds however often
    they ask."""
    budget = max(1, settings.QUEUE_POLL_BUDGET_PER_SECOND)
    spread = max(PRE_QUEUE_SPREAD, math.ceil(pre_queue_size / budget))
    until = math.ceil((sale_starts_at - now).total_seconds())
    if until > PRE_QUEUE_FAR_POLL + spread:
        return PRE_QUEUE_FAR_POLL
    slot = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % spread
    return max(1, until) + slot


def pre_queue_state(*, concert_id: int) -> tuple[datetime | None, int]:
    """The room's on-sale time and how many fans are in its pre-queue (one query)."""
    room = (
        WaitingRoom.objects.filter(pk=concert_id)
        .annotate(
            waiting_for_start=Count(
                "concert__queue_tokens", filter=Q(concert__queue_tokens__status=Status.PRE_QUEUE)
            )
        )
        .values_list("sale_starts_at", "waiting_for_start")
        .first()
    )
    return (None, 0) if room is None else room


@dataclass(frozen=True)
class TokenView:
    token: QueueToken
    status: str
    position: int | None
    estimated_wait_seconds: int | None
    poll_after_seconds: int
    expires_at: datetime | None
    end_reason: str | None
    paused: bool = False  # the room's admission is paused: places hold, nobody moves
    sold_out: bool = False  # every seat of the open dates is sold (advisory, see above)
    sale_starts_at: datetime | None = None  # set while the token is in the pre-queue
    poll_recorded: bool = False  # the poll deadline is already set (by the mirror's read)


def _end_reason(token: QueueToken, status: str) -> str | None:
    """Why a turn ended; a lapse nobody has written down yet reads as it will be."""
    if status in QueueToken.LIVE_STATUSES:
        return None
    if token.end_reason:
        return token.end_reason
    return "ttl" if token.status == Status.ACTIVE else "idle"


def queue_token_view(*, token: QueueToken, now: datetime) -> TokenView:
    status = effective_status(token, now=now)
    if status == Status.PRE_QUEUE:
        starts_at, size = pre_queue_state(concert_id=token.concert_id)
        return TokenView(
            token=token,
            status=status,
            position=None,
            estimated_wait_seconds=None,
            poll_after_seconds=pre_queue_poll_after(
                key=token.key, sale_starts_at=starts_at or now, now=now, pre_queue_size=size
            ),
            expires_at=None,
            end_reason=None,
            sale_starts_at=starts_at,
        )
    position = queue_position(token=token) if status == Status.WAITING else None
    # The mirror's read script may have paced the poll already, from the same place
    # and rate (mirror._POLL_AFTER); its answer stands if it saw what we see.
    paced = getattr(token, "paced_at_read", None)
    if paced is not None and paced.position != (position or -1):
        paced = None
    if status == Status.WAITING:
        if paced and paced.rate:
            rate = paced.rate / RATE_SCALE
        else:
            rate = admission_rate(concert_id=token.concert_id, now=now)
        eta = math.ceil(position / rate)
    elif status == Status.ACTIVE:
        eta = 0
    else:
        eta = None
    if status == Status.ACTIVE:
        expires_at = token.active_until
    elif status == Status.WAITING:
        expires_at = None
    else:
        expires_at = token.ended_at or token.active_until
    return TokenView(
        token=token,
        status=status,
        position=position,
        estimated_wait_seconds=eta,
        poll_after_seconds=paced.poll_after
        if paced
        else poll_after_seconds(position=position, eta=eta),
        expires_at=expires_at,
        end_reason=_end_reason(token, status),
        sold_out=status in QueueToken.LIVE_STATUSES
        and concert_sold_out(concert_id=token.concert_id, now=now),
        poll_recorded=paced is not None,
    )


def queue_token_get(*, key: str, with_position: bool = True) -> QueueToken | None:
    """The token with this secret, its position read in the same query (unless not
    wanted: leaving the line needs no position, and a sold-out line empties at
    hundreds of leaves a second)."""
    if not is_token_key(key):
        return None
    tokens = QueueToken.objects.filter(key=key)
    if with_position:
        tokens = tokens.annotate(
            position_at_read=RawSQL(_position_sql(QueueToken._meta.db_table), [])
        )
    return tokens.first()


def queue_token_live_for(*, user_id: int, concert_id: int) -> QueueToken | None:
    return (
        QueueToken.objects.filter(
            user_id=user_id, concert_id=concert_id, status__in=QueueToken.LIVE_STATUSES
        )
        .order_by("-id")
        .first()
    )


# A redundant condition (always true for the concert's tokens) that makes the line's
# waiting-order index (concert, id) WHERE waiting the planner's choice. By FIFO every
# fan admitted or gone is earlier in line than every fan still waiting, and
# PostgreSQL's statistics cannot know that: without the hint it reads the line from
# the concert's first token by primary key, or sequentially, and filters out every
# fan already admitted (a cost that grows with the sale: 2.6 to 4.7 ms per admission
# check after 20,000 admitted, against 0.01 to 0.13 ms on the index;
# docs/performance.md, round six).
WAITING_ORDER_HINT = "({t}.concert_id, {t}.id) > ({concert}, 0)"


def waiting_line(t: str, concert_id: int) -> str:
    """SQL for "the concert's waiting tokens" (alias `t`), read along the waiting-order
    index, with the concert's id and the status written into the text, not passed
    as parameters. A prepared statement is planned for its parameters only for its
    first five calls; then PostgreSQL may cache one plan for any concert, and that
    plan cannot use the hint (nor the index's WHERE waiting with the status a
    parameter): the admission check switched to it after five calls and read the
    line from its start. With the concert in the text, each concert's statement is
    planned once per connection, knowing the concert (docs/performance.md, round
    nine; tests/queueing/test_admission_plans.py)."""
    concert = int(concert_id)
    hint = WAITING_ORDER_HINT.format(t=t, concert=concert)
    return f"{hint} AND {t}.concert_id = {concert} AND {t}.status = 'waiting'"


def waiting_room_with_active(
    *, concert_id: int, now: datetime, token_id: int | None = None, count_active: bool = True
) -> WaitingRoom | None:
    """The room with `anyone_waiting`; `active_now`, its count of admitted fans whose
    turn has not lapsed (counted only when anyone waits: with nobody to admit, the
    count is not needed and not paid for; nor with `count_active` False, 0 then);
    and, given `token_id`, that token's
    `token_status`, all in one query. Plain SQL: it runs after every line-up and
    every freed slot, and compiling it through the ORM cost more than running it."""
    tokens = QueueToken._meta.db_table
    # What is asked is in the text, never switched by a parameter (a parameter that
    # folds a part away keeps PostgreSQL planning on every call; waiting_line).
    active_now, params = "0", []
    if count_active:
        active_now = f"""CASE WHEN w.anyone_waiting THEN
                     (SELECT COUNT(*) FROM {tokens} a WHERE a.concert_id = r.concert_id
                        AND a.status = 'active' AND a.active_until > %s)
                   ELSE 0 END"""
        params.append(now)
    token_status = "NULL"
    if token_id is not None:
        token_status = f"(SELECT s.status FROM {tokens} s WHERE s.id = %s)"
        params.append(token_id)
    with rawsql.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT {rawsql.select(WaitingRoom, "r")}, w.anyone_waiting,
                   {active_now} AS active_now, {token_status} AS token_status
            FROM {WaitingRoom._meta.db_table} r
            CROSS JOIN (SELECT EXISTS (SELECT 1 FROM {tokens} q
                        WHERE {waiting_line("q", concert_id)}) AS anyone_waiting) w
            WHERE r.concert_id = %s
            """,
            rawsql.params([*params, concert_id]),
        )
        row = cursor.fetchone()
    if row is None:
        return None
    (room,) = rawsql.instances(row, WaitingRoom)
    room.anyone_waiting, room.active_now, room.token_status = row[-3:]
    room.anyone_waiting = bool(room.anyone_waiting)
    return room


def active_count(*, concert_id: int, now: datetime) -> int:
    return QueueToken.objects.filter(
        concert_id=concert_id, status=Status.ACTIVE, active_until__gt=now
    ).count()


def waiting_room_list_with_stats(*, now: datetime) -> QuerySet[WaitingRoom]:
    """Every waiting room with `waiting`, `active` and `admitted_last_minute`
    counts (one query for the whole operator panel)."""
    tokens = "concert__queue_tokens"
    minute_ago = now - timedelta(minutes=1)
    return WaitingRoom.objects.select_related("concert").annotate(
        waiting=Count(tokens, filter=Q(**{f"{tokens}__status": Status.WAITING})),
        active=Count(
            tokens,
            filter=Q(**{f"{tokens}__status": Status.ACTIVE, f"{tokens}__active_until__gt": now}),
        ),
        admitted_last_minute=Count(tokens, filter=Q(**{f"{tokens}__admitted_at__gt": minute_ago})),
    )


# --- the operators' live view ---------------------------------------------------

DASHBOARD_MINUTES = 30


@dataclass(frozen=True)
class RoomLive:
    """A waiting room right now, and per minute over the last DASHBOARD_MINUTES."""

    waiting: int
    pre_queue: int
    active: int
    capacity: int
    paused: bool
    admission_rate: float  # fans a second, measured (see admission_rate)
    eta_seconds: int | None  # for the whole line to be admitted at that rate
    sale_starts_at: datetime | None
    sale_started_at: datetime | None
    minutes: list[datetime]  # the start of each minute
    waiting_series: list[int]  # at each minute's end
    active_series: list[int]
    admissions_series: list[int]  # during each minute
    early_polls_series: list[int]  # refused during each minute


def room_live(*, concert_id: int, now: datetime) -> RoomLive:
    """The operators' dashboard's view of the line: three queries and one Redis read."""
    room = WaitingRoom.objects.get(pk=concert_id)
    counts = QueueToken.objects.filter(concert_id=concert_id).aggregate(
        waiting=Count("id", filter=Q(status=Status.WAITING)),
        pre_queue=Count("id", filter=Q(status=Status.PRE_QUEUE)),
        active=Count("id", filter=Q(status=Status.ACTIVE, active_until__gt=now)),
    )
    if connection.vendor != "postgresql":
        rows = _room_series_portable(concert_id=concert_id, now=now)
    else:
        rows = _room_series(concert_id=concert_id, now=now)
    minutes = [row[0] for row in rows]
    rate = admission_rate(concert_id=concert_id, now=now)
    early = mirror.early_polls(
        concert_id=concert_id, minutes=[int(m.timestamp()) // 60 for m in minutes]
    )
    waiting = counts["waiting"]
    return RoomLive(
        waiting=waiting,
        pre_queue=counts["pre_queue"],
        active=counts["active"],
        capacity=room.capacity,
        paused=room.admission_paused,
        admission_rate=rate,
        eta_seconds=math.ceil(waiting / rate) if rate > 0 else None,
        sale_starts_at=room.sale_starts_at,
        sale_started_at=room.sale_started_at,
        minutes=minutes,
        waiting_series=[row[1] for row in rows],
        active_series=[row[2] for row in rows],
        admissions_series=[row[3] for row in rows],
        early_polls_series=early,
    )


def _room_series(*, concert_id: int, now: datetime) -> list[tuple]:
    """(minute, in line at its end, active at its end, admitted during it) for the last
    DASHBOARD_MINUTES minutes, in one PostgreSQL query."""
    tokens = QueueToken._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH m AS (
                SELECT generate_series(
                    date_trunc('minute', %(now)s) - interval '{DASHBOARD_MINUTES - 1} minutes',
                    date_trunc('minute', %(now)s), interval '1 minute') AS t
            )
            SELECT m.t,
              (SELECT COUNT(*) FROM {tokens} q WHERE q.concert_id = %(c)s
                 AND q.created_at < m.t + interval '1 minute'
                 AND (q.admitted_at IS NULL OR q.admitted_at >= m.t + interval '1 minute')
                 AND (q.ended_at IS NULL OR q.ended_at >= m.t + interval '1 minute')),
              (SELECT COUNT(*) FROM {tokens} q WHERE q.concert_id = %(c)s
                 AND q.admitted_at < m.t + interval '1 minute'
                 AND q.active_until >= m.t + interval '1 minute'
                 AND (q.ended_at IS NULL OR q.ended_at >= m.t + interval '1 minute')),
              (SELECT COUNT(*) FROM {tokens} q WHERE q.concert_id = %(c)s
                 AND q.admitted_at >= m.t AND q.admitted_at < m.t + interval '1 minute')
            FROM m ORDER BY m.t
            """,
            {"now": now, "c": concert_id},
        )
        return cursor.fetchall()


def _room_series_portable(*, concert_id: int, now: datetime) -> list[tuple]:
    """_room_series for the embedded SQLite database, counted in Python from the
    tokens of the window (a demo's sizes). PostgreSQL never takes this path."""
    last = now.replace(second=0, microsecond=0)
    minutes = [
        last - timedelta(minutes=DASHBOARD_MINUTES - 1 - i) for i in range(DASHBOARD_MINUTES)
    ]
    tokens = list(
        QueueToken.objects.filter(concert_id=concert_id, created_at__lt=now)
        .exclude(ended_at__lt=minutes[0])
        .values_list("created_at", "admitted_at", "ended_at", "active_until")
    )

    def after(moment, end):
        return moment is None or moment >= end

    rows = []
    for start in minutes:
        end = start + timedelta(minutes=1)
        rows.append(
            (
                start,
                sum(1 for c, a, e, _ in tokens if c < end and after(a, end) and after(e, end)),
                sum(
                    1
                    for _, a, e, u in tokens
                    if a is not None and a < end and u is not None and u >= end and after(e, end)
                ),
                sum(1 for _, a, _, _ in tokens if a is not None and start <= a < end),
            )
        )
    return rows
