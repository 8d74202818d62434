"""Writes for the waiting room: issue, admit, leave, end, expire, the gate.

Lock order, everywhere: the waiting-room row, then the concert's line lock (an
advisory lock: shared by line-ups, exclusive for admission), then token rows in id
order, then bucket rows in (concert, number, stripe) order. Following it, no two of
these services can deadlock.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import logging
import math
import secrets
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import IntegrityError, connection, models, transaction
from django.db.models import F
from django.utils import timezone
from kombu.exceptions import OperationalError
from rest_framework.exceptions import AuthenticationFailed

from config import auth, rawsql
from config.audit import operator_action_record
from config.cache import REDIS_DOWN, Reply, RoundTrip, redis_backend, redis_client, redis_failed
from config.celery import app as celery_app
from queueing import mirror, selectors
from queueing.exceptions import (
    CapacityInvalid,
    ConcertNotFound,
    PollTooSoon,
    QueueNotOpen,
    QueueTokenExpired,
    QueueTokenInvalid,
    QueueTokenMissing,
    QueueTokenUnknown,
    QueueTokenWaiting,
    QueueTokenWrongConcert,
    SaleAlreadyStarted,
)
from queueing.models import (
    BUCKET_SIZE,
    BUCKET_STRIPES,
    QueueBucket,
    QueueToken,
    WaitingRoom,
    is_token_key,
    new_token_key,
)

logger = logging.getLogger(__name__)
Status = QueueToken.Status

# A gate pass or poll refreshes last_seen_at at most this often (one write, not one per request).
TOUCH_INTERVAL = timedelta(seconds=15)


# --- waiting rooms ---------------------------------------------------------


def waiting_room_create(*, concert_id: int) -> WaitingRoom:
    """Give a new concert its waiting room (concerts.concert_create calls this, in the
    concert's own transaction). Queueing knows concerts only by id, through this."""
    room, _ = WaitingRoom.objects.get_or_create(pk=concert_id)
    return room


def waiting_room_get(*, concert_id: int) -> WaitingRoom:
    """The concert's waiting room; every concert has one, so none means no such concert."""
    room = WaitingRoom.objects.filter(pk=concert_id).first()
    if room is None:
        raise ConcertNotFound()
    return room


_KEEP = object()


def waiting_room_update(
    *,
    concert_id: int,
    max_active: int | None,
    admission_paused: bool,
    now: datetime,
    sale_starts_at: datetime | None = _KEEP,  # type: ignore[assignment]
    pre_queue_minutes: int = _KEEP,  # type: ignore[assignment]
) -> WaitingRoom:
    """Operators change capacity or pause, and schedule the sale; a resumed or larger
    room admits at once. Omitted sale fields are kept. Once a sale has started its
    schedule is history: changing it is SaleAlreadyStarted (409), and nothing is
    written. A schedule set on a concert whose line already has fans waiting leaves
    them where they are, ahead of the pre-queue."""
    with transaction.atomic():
        room = WaitingRoom.objects.select_for_update(no_key=True).filter(pk=concert_id).first()
        if room is None:
            raise ConcertNotFound()
        changes = {"max_active": max_active, "admission_paused": admission_paused}
        schedule = {}
        if sale_starts_at is not _KEEP and sale_starts_at != room.sale_starts_at:
            schedule["sale_starts_at"] = sale_starts_at
        if pre_queue_minutes is not _KEEP and pre_queue_minutes != room.pre_queue_minutes:
            schedule["pre_queue_minutes"] = pre_queue_minutes
        if schedule and room.sale_started_at is not None:
            raise SaleAlreadyStarted(details={"sale_started_at": room.sale_started_at.isoformat()})
        WaitingRoom.objects.filter(pk=room.pk).update(**changes, **schedule)
        room.refresh_from_db()
        _admit_after_commit(concert_id=concert_id, now=now)
    return room


def _admit_after_commit(*, concert_id: int, now: datetime) -> None:
    """Refill freed slots once the write that freed them commits (_admit_soon).

    Robust: a failure here is logged, never raised into the request whose write
    already committed (its answer, maybe a stored idempotent one, stands); the
    next admission run, by beat or by the next freed slot, picks up the work.
    """
    transaction.on_commit(lambda: _admit_soon(concert_id=concert_id, now=now), robust=True)


# A concert's after-commit admission runs take this advisory lock without waiting:
# (RUN_LOCK << 40) + its id modulo 2**40 (see LINE_LOCK).
RUN_LOCK = 0x52
DUE_TTL = 60  # seconds: a mark that a crashed run left is cleared by the next run


def _admit_soon(*, concert_id: int, now: datetime) -> None:
    """One admission run for the concert after a commit that freed a slot, unless a
    run is going already: then this commit leaves a mark ("due") and returns at
    once, and that run goes round again for it after its own commit.

    On sale day many payments free slots at once. Each used to run its own
    admission, and those runs queued on the room's lock, each counting the active
    turns again: in a full room with a line, a payment cost five times what it costs
    in an empty one. Now one run refills every slot freed meanwhile.

    No freed slot is left behind: the mark is set after this commit and before the
    run's lock is tried, and a run clears the mark before it reads the room and
    looks for it again after its commit (which releases the lock). So a commit that
    finds the lock taken has marked before the running one looks, and that one (or
    the next) reads the room after this commit. Where nobody waits or admission is
    paused there is nothing to do, and no mark or lock is taken. With Redis down, or
    on the embedded SQLite, each commit runs its own admission, as before.

    The request pays for one round at most, and never waits for the room's lock.
    If commits marked the concert while it ran, or another admission (a line-up's,
    beat's, an operator's) holds the room, the room is busy and the next rounds go
    to a Celery worker (queue_admit_due), which waits for the lock instead. In the
    1,000-fan rehearsal one checkout had gone round eight times, 1.3 s after its own
    commit, and checkout rounds had waited 100-650 ms for the room behind line-ups.
    If the task cannot be sent, this request goes round itself, as before.
    """
    room = selectors.waiting_room_with_active(concert_id=concert_id, now=now, count_active=False)
    if room is None or room.admission_paused or not room.anyone_waiting:
        return
    backend = redis_backend()
    client = redis_client(backend)
    if client is None or connection.vendor != "postgresql":
        queue_admit_next(concert_id=concert_id, now=now)
        return
    due = _due_key(backend, concert_id)
    try:
        client.set(due, 1, ex=DUE_TTL)
    except REDIS_DOWN as exc:
        redis_failed(exc)
        queue_admit_next(concert_id=concert_id, now=now)
        return
    done = _admit_round(concert_id=concert_id, now=now, client=client, due=due, wait=False)
    if done is _Busy.RUN:
        return  # a run is going: it looks for the mark after its commit
    if done is not _Busy.ROOM and not _due_again(client, due):
        return
    try:
        # A round that waited longer than the mark lives is worth nothing: beat's runs
        # (QUEUE_ADMISSION_INTERVAL) have done its work by then.
        celery_app.send_task(ADMIT_DUE_TASK, kwargs={"concert_id": concert_id}, expires=DUE_TTL)
    except (OperationalError, *REDIS_DOWN):  # the broker did not take it: go round here
        logger.warning("admission for concert %s not handed to a worker", concert_id, exc_info=True)
        _admit_while_due(concert_id=concert_id, client=client, due=due)


class _Busy(enum.Enum):
    """Why a coalesced round did not run."""

    RUN = "another coalesced run holds the run lock"
    ROOM = "another admission (a line-up's, beat's, an operator's) holds the room lock"


ADMIT_DUE_TASK = "queueing.admit_due"


def queue_admit_due(*, concert_id: int) -> int:
    """The worker's side of _admit_soon (task ADMIT_DUE_TASK): admission rounds for a
    concert while commits keep marking it due. The same run lock: if another run is
    going, it returns at once, and that run looks for the mark after its commit.
    Returns the rounds it ran. Without Redis, one plain admission run."""
    backend = redis_backend()
    client = redis_client(backend)
    if client is None:
        queue_admit_next(concert_id=concert_id, now=timezone.now())
        return 1
    due = _due_key(backend, concert_id)
    return _admit_while_due(concert_id=concert_id, client=client, due=due)


def _due_key(backend, concert_id: int) -> str:
    """The Redis key of the concert's "due" mark."""
    return backend.make_key(f"queue:admit-due:{concert_id}")


def _admit_while_due(*, concert_id: int, client, due: str) -> int:
    """Coalesced rounds, each waiting for the room's lock, until no mark is left or
    another run holds the run lock. Returns the rounds run."""
    rounds = 0
    while (
        _admit_round(concert_id=concert_id, now=timezone.now(), client=client, due=due)
        is not _Busy.RUN
    ):
        rounds += 1
        if not _due_again(client, due):
            break
    return rounds


def _admit_round(
    *, concert_id: int, now: datetime, client, due: str, wait: bool = True
) -> list[int] | _Busy:
    """One coalesced admission round, in a transaction of its own: take the run lock
    without waiting (_Busy.RUN if another run holds it), clear the mark, admit.
    `wait` False: a room another admission has locked is _Busy.ROOM, at once, and
    the mark stays for the round that does wait (a worker's)."""
    with transaction.atomic():
        if not _try_lock_runs(concert_id=concert_id):
            return _Busy.RUN
        room = None
        if not wait:
            room = _lock_room(concert_id=concert_id, wait=False)
            if room is None:
                return _Busy.ROOM
        try:
            client.delete(due)
        except REDIS_DOWN as exc:
            redis_failed(exc)  # the run goes on; the look after it ends the loop
        return _admit_locked(concert_id=concert_id, now=now, count=None, room=room)


def _try_lock_runs(*, concert_id: int) -> bool:
    """Take the concert's after-commit run lock until the transaction ends, or False
    at once if another run holds it."""
    with rawsql.cursor() as cursor:
        key = (RUN_LOCK << 40) + concert_id % (1 << 40)
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s::bigint)", [key])
        return bool(cursor.fetchone()[0])


def _due_again(client, due: str) -> bool:
    """Whether a commit marked the concert while the run was going (after its commit)."""
    try:
        return bool(client.exists(due))
    except REDIS_DOWN as exc:
        redis_failed(exc)
        return False  # beat's run (QUEUE_ADMISSION_INTERVAL) picks up what is left


# --- buckets ---------------------------------------------------------------


def _bucket_add(*, concert_id: int, number: int, stripe: int, delta: int) -> None:
    key = {"concert_id": concert_id, "number": number, "stripe": stripe}
    if QueueBucket.objects.filter(**key).update(waiting=F("waiting") + delta):
        return
    try:
        with transaction.atomic():
            QueueBucket.objects.create(**key, waiting=delta)
    except IntegrityError:
        QueueBucket.objects.filter(**key).update(waiting=F("waiting") + delta)


def _buckets_remove(*, tokens: list[tuple[int, int]]) -> None:
    """Tokens (id, concert_id) left the waiting state: decrement their bucket rows in key order."""
    counts = Counter(
        (concert_id, token_id // BUCKET_SIZE, token_id % BUCKET_STRIPES)
        for token_id, concert_id in tokens
    )
    for (concert_id, number, stripe), n in sorted(counts.items()):
        QueueBucket.objects.filter(concert_id=concert_id, number=number, stripe=stripe).update(
            waiting=F("waiting") - n
        )


def queue_buckets_rebuild(*, concert_id: int | None = None) -> int:
    """Repair the bucket counts from the tokens themselves; returns the rows corrected.

    The counts drift when tokens disappear without passing through these services
    (a deleted fan or concert cascades to its tokens). Each concert's drift is read
    in ONE statement, so the token count and the stored count come from one
    snapshot; a concurrent line-up or admission commits its token change and its
    bucket change together, so it is either in both or in neither, and the
    correction is applied as a delta (F() + n) that commutes with theirs.
    """
    tokens, buckets = QueueToken._meta.db_table, QueueBucket._meta.db_table
    concert_filter = "" if concert_id is None else "AND concert_id = %s"
    params = [] if concert_id is None else [concert_id, concert_id]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT COALESCE(t.concert_id, b.concert_id), COALESCE(t.number, b.number),
                   COALESCE(t.stripe, b.stripe), COALESCE(t.n, 0) - COALESCE(b.waiting, 0)
            FROM (SELECT concert_id, id / {BUCKET_SIZE} AS number,
                         (id %% {BUCKET_STRIPES}) AS stripe, COUNT(*) AS n
                  FROM {tokens} WHERE status = 'waiting' {concert_filter}
                  GROUP BY 1, 2, 3) t
            FULL OUTER JOIN (SELECT concert_id, number, stripe, waiting FROM {buckets}
                             WHERE TRUE {concert_filter}) b
              ON t.concert_id = b.concert_id AND t.number = b.number AND t.stripe = b.stripe
            WHERE COALESCE(t.n, 0) <> COALESCE(b.waiting, 0)
            ORDER BY 1, 2, 3
            """,
            params,
        )
        drift = cursor.fetchall()
    for row_concert_id, number, stripe, delta in drift:
        logger.warning(
            "queue bucket %s/%s/%s drifted by %+d; repaired", row_concert_id, number, stripe, delta
        )
        _bucket_add(concert_id=row_concert_id, number=number, stripe=stripe, delta=delta)
    return len(drift)


def queue_mirror_repair() -> int | None:
    """The beat job for the Redis mirror: rebuild it from PostgreSQL when it is not
    marked ready (a restarted Redis) or its counts disagree with PostgreSQL's.
    Returns the entries repaired, 0 when none were needed, None without Redis."""
    return mirror.ensure_ready()


# --- issuing ---------------------------------------------------------------


def queue_token_issue(
    *, user: AbstractBaseUser, concert_id: int, now: datetime
) -> tuple[QueueToken, bool]:
    """The fan's live token for the concert, creating one at the back of the line.

    Returns (token, created). Asking again returns the same token, so no fan
    gains or loses a place by re-asking; the database allows one live token per
    fan and concert. A lapsed token is ended and replaced by a new one.
    Where capacity is free and nobody waits ahead, the new token is admitted
    right after commit.
    """
    if not 0 < concert_id < 2**63:
        raise ConcertNotFound()  # no such id fits the database's bigint key
    issued = _issue(user_id=user.pk, api_key=None, concert_id=concert_id, now=now)
    assert issued is not None
    return issued


def queue_token_issue_by_api_key(
    *, api_key: str, concert_id: int, now: datetime
) -> tuple[QueueToken, bool] | None:
    """queue_token_issue for the fan an API token key names, authenticated by the
    line-up's own statement (the fast lane's line-up: a fan's first request of a
    sale, whose key the cache does not hold yet, takes one round trip to PostgreSQL
    instead of a cache read and two). None, having written nothing, if the key names
    no active fan: DRF's authentication then answers (401). Inside a transaction,
    with the embedded database, or for an id no concert can have, the fan is
    authenticated first (config.auth.credentials), as DRF does."""
    if (
        not 0 < concert_id < 2**63
        or connection.in_atomic_block
        or connection.vendor != "postgresql"
    ):
        try:
            user, _ = auth.credentials(api_key)
        except AuthenticationFailed:
            return None
        return queue_token_issue(user=user, concert_id=concert_id, now=now)
    return _issue(user_id=None, api_key=api_key, concert_id=concert_id, now=now)


def _issue(
    *, user_id: int | None, api_key: str | None, concert_id: int, now: datetime
) -> tuple[QueueToken, bool] | None:
    """queue_token_issue's work, for the fan `user_id` or the one `api_key` names."""
    # The sale-day case: the line-up's statement commits by itself, and the mirror
    # counts the room's turns in the round trip that mirrors the new token (the
    # statement's own count is O(turns): a big room's line-up paid for it).
    mirror_counts = not connection.in_atomic_block and mirror.enabled()
    # Once more after ending the fan's lapsed token, and once more after starting a
    # sale that was due.
    for _ in range(3):
        try:
            made = _insert_waiting(
                user_id=user_id, api_key=api_key, concert_id=concert_id, now=now,
                count_active=not mirror_counts,
            )  # fmt: skip
            if made.sale == _Sale.NO_FAN:
                return None
            if made.sale == _Sale.PRE_QUEUE:
                return made.token, True  # no place yet: no admission, no mirror
            if made.sale == _Sale.NOT_OPEN:
                raise QueueNotOpen(sale_starts_at=made.sale_starts_at, opens_at=made.opens_at)
            if made.sale == _Sale.DUE:  # the on-sale time has come: start it, then line up
                queue_sale_start(concert_id=concert_id, now=now)
                continue
            token, room = made.token, made.room
            break
        except IntegrityError as exc:
            if _violated(exc) != LIVE_TOKEN_CONSTRAINT:
                raise
        if user_id is None:  # the statement found the fan, and their live token
            try:
                user_id, api_key = auth.credentials(api_key)[0].pk, None
            except AuthenticationFailed:  # the key was deleted meanwhile
                return None
        # The fan already has a live token: the same place in line, unless it lapsed.
        existing = selectors.queue_token_live_for(user_id=user_id, concert_id=concert_id)
        if existing is None:  # ended in between: try again
            continue
        if selectors.effective_status(existing, now=now) != Status.EXPIRED:
            return existing, False
        _end_tokens(ids=[existing.pk], now=now, reason="lapsed")
    else:  # pragma: no cover - a live token reappeared, or a sale restarted, repeatedly
        raise QueueTokenInvalid()
    assert room is not None
    seen = None
    if mirror_counts:
        # Mirror the token, read its place (paced as a poll) and count the room's turns,
        # in one round trip. A room the mirror sees full (or paused) runs no
        # admission here; one with a free slot runs it, which decides from
        # PostgreSQL under the room lock (and the place is read again after it).
        seen, active_now = mirror.put_read_and_count(
            mirror.Row.of(token), now=now, poll_key=_poll_key(token.key), pacing=_pacing(),
            count_active=not room.admission_paused,
        )  # fmt: skip
        if active_now is not None:
            room = room._replace(active_now=active_now)
        elif not room.admission_paused:
            room = None  # Redis did not answer: the admission's own check asks PostgreSQL
        if room is None or not room.admission_paused and room.capacity > room.active_now:
            seen = None
    else:
        mirror.put_after_commit([mirror.Row.of(token)])
    # Admit at once where capacity is free. The answer must say what the database
    # says: in a burst, another fan's admission run may admit this token first.
    admission = _admit(concert_id=concert_id, now=now, count=None, watch=token.pk, room=room)
    if admission.watched_status == Status.ACTIVE:
        token.refresh_from_db(fields=["status", "admitted_at", "active_until"])
        return token, True
    if seen is None:
        # The place in line, after the admission run, from the mirror (one Redis
        # read) where it can say.
        seen = mirror.read(key=token.key, now=now, presence=False)
    if seen is not None and seen.status == Status.WAITING:
        token.position_at_read = seen.position_at_read
        if getattr(seen, "paced_at_read", None) is not None:
            token.paced_at_read = seen.paced_at_read
    return token, True


LIVE_TOKEN_CONSTRAINT = "queue_one_live_token_per_fan"


def _violated(exc: IntegrityError) -> str:
    return getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) or ""


class _RoomState(NamedTuple):
    """What the line-up's own statement saw of the room (the admission pre-check)."""

    admission_paused: bool
    capacity: int
    active_now: int


class _Sale(enum.Enum):
    """What a line-up found the room's sale to be."""

    OPEN = "open"  # no scheduled sale, or it has started: a place at the back
    PRE_QUEUE = "pre_queue"  # its pre-queue window: a token, no place until the start
    NOT_OPEN = "not_open"  # before the window: refused
    DUE = "due"  # the on-sale time has come but the sale has not been started yet
    NO_FAN = "no_fan"  # the API key names no active fan: nothing made


class _Made(NamedTuple):
    """What the line-up statement made (a token, or why none)."""

    sale: _Sale
    token: QueueToken | None = None
    room: _RoomState | None = None
    sale_starts_at: datetime | None = None
    opens_at: datetime | None = None


def _insert_waiting(
    *,
    user_id: int | None = None,
    api_key: str | None = None,
    concert_id: int,
    now: datetime,
    count_active: bool = True,
) -> _Made:
    """A new token and, for a place in line, its bucket count, in ONE statement (so
    one round trip, atomic by itself): the token's id, from the sequence, is its
    place in line. The same statement reads what the admission pre-check needs
    (paused, capacity, the active turns). Raises ConcertNotFound, having written
    nothing, without a room.

    The statement first takes the concert's line lock in shared mode, so line-ups
    never wait for each other; an admission run or a sale's start takes it
    exclusively (_lock_line). An id is drawn and committed while the shared lock is
    held, so when admission holds the lock, every token with a smaller id than any
    it can see has committed: the first `free` it reads are exactly the first in line.

    A scheduled sale: after the lock, `queueing_sale_open` (a VOLATILE function: a
    snapshot of its own) says whether the sale has started, so a start that
    committed while this statement waited for the lock is seen; the rest of the
    statement's snapshot may predate it. In the pre-queue window the token is made
    in the pre-queue (no bucket); before the window, or once the on-sale time has
    come but the sale has not started, nothing is made and _Made says why.

    The fan is `user_id`, or the fan an API token names (`api_key`): then the statement
    authenticates as it writes (config.auth.active_user_sql, DRF's rule), and if the
    key names no active fan it writes nothing and _Made says NO_FAN (a fan's first
    request of a sale is a line-up, and reading the key in a round trip of its own,
    after missing it in the cache, doubled the line-up's round trips). PostgreSQL only."""
    if connection.vendor != "postgresql":
        assert user_id is not None
        return _insert_waiting_portable(user_id=user_id, concert_id=concert_id, now=now)
    if (user_id is None) == (api_key is None):
        raise TypeError("_insert_waiting: a user_id or an api_key, not both")
    tokens, buckets = QueueToken._meta.db_table, QueueBucket._meta.db_table
    rooms = WaitingRoom._meta.db_table
    key = new_token_key()
    # Alone, the statement is its own transaction; inside a caller's, a savepoint keeps
    # a refused insert (the fan already has a live token) from breaking it.
    scope = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
    # The count is in the statement's text or not, never switched by a parameter: a
    # parameter that folds part of a statement away makes every custom plan look
    # cheaper than the generic one, so PostgreSQL planned the statement again on
    # every line-up (0.15 ms of its 0.27; docs/performance.md, round nine).
    fan = _fan_sql(api_key)
    count = f"""CASE WHEN r.admission_paused OR t.status IS DISTINCT FROM 'waiting' THEN 0
                ELSE (SELECT COUNT(*) FROM {tokens} a WHERE a.concert_id = %(concert)s
                        AND a.status = 'active' AND a.active_until > %(now)s) END"""
    with scope, rawsql.cursor() as cursor:
        cursor.execute(
            f"""
            WITH f AS ({fan}
            ), r AS (
                SELECT concert_id, max_active, admission_paused, sale_starts_at,
                       sale_starts_at - make_interval(mins => pre_queue_minutes) AS opens_at
                FROM {rooms} WHERE concert_id = %(concert)s AND EXISTS (SELECT FROM f)
            ), l AS (
                SELECT pg_advisory_xact_lock_shared({LINE_LOCK << 40} + concert_id %% {1 << 40})
                FROM r
            ), o AS (
                SELECT queueing_sale_open(%(concert)s::bigint) AS open FROM l
            ), t AS (
                INSERT INTO {tokens} (key, concert_id, user_id, status, created_at,
                                      last_seen_at, end_reason)
                SELECT %(key)s, %(concert)s, f.user_id,
                       CASE WHEN o.open THEN 'waiting' ELSE 'pre_queue' END,
                       %(now)s, %(now)s, ''
                FROM o, r, f
                WHERE o.open OR (%(now)s >= r.opens_at AND %(now)s < r.sale_starts_at)
                RETURNING id, status
            ), b AS (
                INSERT INTO {buckets} (concert_id, number, stripe, waiting)
                SELECT %(concert)s, id / {BUCKET_SIZE}, id %% {BUCKET_STRIPES}, 1
                FROM t WHERE t.status = 'waiting'
                ON CONFLICT (concert_id, number, stripe)
                DO UPDATE SET waiting = {buckets}.waiting + 1
            )
            SELECT f.user_id, r.concert_id, t.id, t.status, r.sale_starts_at, r.opens_at,
                   r.max_active, r.admission_paused, {count if count_active else "0"}
            FROM (SELECT) one LEFT JOIN f ON TRUE
                 LEFT JOIN (r CROSS JOIN o) ON TRUE LEFT JOIN t ON TRUE
            """,
            {"concert": concert_id, "key": key, "fan": user_id or api_key, "now": now},
        )
        row = cursor.fetchone()
    user_id, room_id, token_id, status, sale_starts_at, opens_at, max_active, paused, active = row
    if user_id is None:
        return _Made(_Sale.NO_FAN)  # the API key names no active fan: nothing written
    if room_id is None:
        raise ConcertNotFound()
    if token_id is None:
        sale = _Sale.NOT_OPEN if now < opens_at else _Sale.DUE
        return _Made(sale, sale_starts_at=sale_starts_at, opens_at=opens_at)
    token = rawsql.loaded(  # the row the statement wrote, as if read back
        QueueToken,
        {
            "id": token_id, "key": key, "concert_id": concert_id, "user_id": user_id,
            "status": status, "created_at": now, "last_seen_at": now, "admitted_at": None,
            "active_until": None, "ended_at": None, "end_reason": "",
        },
    )  # fmt: skip
    if status == Status.PRE_QUEUE:
        return _Made(_Sale.PRE_QUEUE, token=token)
    capacity = WaitingRoom.capacity_of(max_active)
    return _Made(_Sale.OPEN, token=token, room=_RoomState(paused, capacity, active))


def _insert_waiting_portable(*, user_id: int, concert_id: int, now: datetime) -> _Made:
    """_insert_waiting for the embedded SQLite database (`make run` with no servers),
    through the ORM: one write transaction, which SQLite runs alone (BEGIN IMMEDIATE),
    so the line lock has nothing to add. PostgreSQL never takes this path."""
    with transaction.atomic():
        room = WaitingRoom.objects.filter(pk=concert_id).first()
        if room is None:
            raise ConcertNotFound()
        status = Status.WAITING
        if room.sale_starts_at is not None and room.sale_started_at is None:
            opens_at = room.pre_queue_opens_at
            if not opens_at <= now < room.sale_starts_at:
                sale = _Sale.NOT_OPEN if now < opens_at else _Sale.DUE
                return _Made(sale, sale_starts_at=room.sale_starts_at, opens_at=opens_at)
            status = Status.PRE_QUEUE
        token = QueueToken.objects.create(
            concert_id=concert_id, user_id=user_id, status=status,
            created_at=now, last_seen_at=now,
        )  # fmt: skip
        if status == Status.PRE_QUEUE:
            return _Made(_Sale.PRE_QUEUE, token=token)
        _bucket_add(concert_id=concert_id, number=token.bucket, stripe=token.stripe, delta=1)
        paused = room.admission_paused
        active_now = 0 if paused else selectors.active_count(concert_id=concert_id, now=now)
    return _Made(_Sale.OPEN, token=token, room=_RoomState(paused, room.capacity, active_now))


# --- scheduled sales: the pre-queue and its shuffle -------------------------


def pre_queue_order(*, seed: str, user_ids: Sequence[int]) -> list[int]:
    """The pre-queue's order: the fans' ids sorted by HMAC-SHA256(seed, user id).

    With a seed of 256 random bits from the operating system's CSPRNG, every order
    is equally likely (HMAC is a pseudo-random function), and whoever holds the
    recorded seed can recompute the order for an audit. Arrival time plays no part.
    """
    secret = bytes.fromhex(seed)
    return sorted(
        user_ids, key=lambda uid: hmac.new(secret, str(uid).encode(), hashlib.sha256).digest()
    )


def queue_sale_start(*, concert_id: int, now: datetime, seed: str | None = None) -> int | None:
    """Start a scheduled sale, exactly once: the whole pre-queue, in a uniformly random
    order, takes the next places in line, ahead of everyone who lines up after.

    Under the room's row lock (two beats, or a beat and a line-up, meet here and the
    second finds the sale started) and the line lock, exclusive (every pre-queue
    line-up in flight has committed, and no line-up gets a place until this
    commits). Each pre-queue token gets a new id from the sequence, in the shuffled
    order: ids are places in line, and these are larger than every id drawn before
    and smaller than every id drawn after. The seed is recorded for audit.
    Returns the pre-queue's size, or None when there was nothing to start.
    """
    with transaction.atomic():
        room = _lock_room(concert_id=concert_id)
        if room.sale_starts_at is None or room.sale_started_at is not None:
            return None
        if now < room.sale_starts_at:
            return None
        _lock_line(concert_id=concert_id)
        rows = {
            user_id: (token_id, key)
            for token_id, key, user_id in QueueToken.objects.filter(
                concert_id=concert_id, status=Status.PRE_QUEUE
            )
            .order_by("id")
            .select_for_update(no_key=True)
            .values_list("id", "key", "user_id")
        }
        seed = seed or secrets.token_hex(32)
        order = pre_queue_order(seed=seed, user_ids=list(rows))
        old_ids = [rows[user_id][0] for user_id in order]
        if connection.vendor == "postgresql":
            new_ids = _rekey_in_order(concert_id=concert_id, old_ids=old_ids, now=now)
        else:
            new_ids = _rekey_in_order_portable(concert_id=concert_id, old_ids=old_ids, now=now)
        WaitingRoom.objects.filter(pk=concert_id).update(
            sale_started_at=now, shuffle_seed=seed, pre_queue_size=len(order)
        )
        mirror.put_after_commit(
            mirror.Row(
                new_id, rows[user_id][1], concert_id, user_id, Status.WAITING, last_seen_at=now
            )
            for new_id, user_id in zip(new_ids, order, strict=True)
        )
        _admit_after_commit(concert_id=concert_id, now=now)
    logger.info(
        "sale of concert %s started: %s fans shuffled, seed %s", concert_id, len(order), seed
    )
    return len(order)


def _rekey_in_order(*, concert_id: int, old_ids: list[int], now: datetime) -> list[int]:
    """Give these pre-queue tokens new ids from the sequence, in this order, and count
    them waiting in their buckets (PostgreSQL: three statements, whatever their number)."""
    tokens, buckets = QueueToken._meta.db_table, QueueBucket._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [tokens, len(old_ids)],
        )
        new_ids = sorted(row[0] for row in cursor.fetchall())
        # Their idle clock starts now: a fan in the pre-queue need not poll before
        # the sale, but must keep polling once it has started.
        cursor.execute(
            f"""
            UPDATE {tokens} t SET id = m.new_id, status = 'waiting', last_seen_at = %s
            FROM unnest(%s::bigint[], %s::bigint[]) AS m(old_id, new_id)
            WHERE t.id = m.old_id
            """,
            [now, old_ids, new_ids],
        )
        cursor.execute(
            f"""
            INSERT INTO {buckets} (concert_id, number, stripe, waiting)
            SELECT %s, id / {BUCKET_SIZE}, id %% {BUCKET_STRIPES}, COUNT(*)
            FROM unnest(%s::bigint[]) AS id GROUP BY 2, 3 ORDER BY 2, 3
            ON CONFLICT (concert_id, number, stripe)
            DO UPDATE SET waiting = {buckets}.waiting + EXCLUDED.waiting
            """,
            [concert_id, new_ids],
        )
    return new_ids


def _rekey_in_order_portable(*, concert_id: int, old_ids: list[int], now: datetime) -> list[int]:
    """_rekey_in_order for the embedded SQLite database, row by row (a demo's sizes):
    new ids above every id there is, in this order. PostgreSQL never takes this path."""
    top = QueueToken.objects.aggregate(top=models.Max("id"))["top"] or 0
    new_ids = [top + 1 + i for i in range(len(old_ids))]
    for old_id, new_id in zip(old_ids, new_ids, strict=True):
        QueueToken.objects.filter(pk=old_id).update(
            id=new_id, status=Status.WAITING, last_seen_at=now
        )
    counts = Counter((new_id // BUCKET_SIZE, new_id % BUCKET_STRIPES) for new_id in new_ids)
    for (number, stripe), n in sorted(counts.items()):
        _bucket_add(concert_id=concert_id, number=number, stripe=stripe, delta=n)
    return new_ids


def queue_sales_start_due(*, now: datetime) -> int:
    """The beat job: start every scheduled sale whose on-sale time has come."""
    due = WaitingRoom.objects.filter(
        sale_starts_at__lte=now, sale_started_at__isnull=True
    ).values_list("concert_id", flat=True)
    return sum(1 for cid in list(due) if queue_sale_start(concert_id=cid, now=now) is not None)


# --- admission -------------------------------------------------------------


def _lock_room(*, concert_id: int, wait: bool = True) -> WaitingRoom | None:
    """Serialise admission runs of one concert (call inside a transaction). `wait`
    False: None at once if another transaction holds the lock."""
    rooms = WaitingRoom.objects.filter(pk=concert_id)
    if not wait:
        return rooms.select_for_update(no_key=True, skip_locked=True).first()
    return rooms.select_for_update(no_key=True).get()


# A concert's line lock is the advisory lock (LINE_LOCK << 40) + its id modulo 2**40
# (two concerts sharing a lock would only wait for each other, never err).
LINE_LOCK = 0x51


def _lock_line(*, concert_id: int, shared: bool = False) -> None:
    """Exclusive: wait for line-ups of this concert in flight to commit, and hold new
    ones back, until the caller's transaction ends (see _insert_waiting). Shared: what
    a line-up holds while it makes its token."""
    if connection.vendor != "postgresql":
        return  # the embedded SQLite: every write transaction holds the whole database
    with rawsql.cursor() as cursor:
        key = (LINE_LOCK << 40) + concert_id % (1 << 40)
        lock = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        cursor.execute(f"SELECT {lock}(%s::bigint)", [key])


def queue_admit_next(*, concert_id: int, now: datetime, count: int | None = None) -> list[int]:
    """Admit waiting fans of one concert in exact FIFO order.

    With `count` None, admits as many as the room has free capacity (none while
    paused). With `count` set (an operator's "admit next N"), admits up to N
    regardless of capacity. Safe to run concurrently: runs for one concert are
    serialised on the waiting-room row, and capacity is re-read under that lock.
    Returns the ids admitted.
    """
    return _admit(concert_id=concert_id, now=now, count=count).ids


class _Admission(NamedTuple):
    ids: list[int]
    # The status of the token the caller watches, as of this run (None: not read).
    watched_status: str | None = None


def _admit(
    *,
    concert_id: int,
    now: datetime,
    count: int | None,
    watch: int | None = None,
    room: _RoomState | None = None,
) -> _Admission:
    if count is None and room is not None:
        # The line-up's own statement read the room: someone waits (the new fan).
        if room.admission_paused or room.capacity - room.active_now <= 0:
            return _Admission([], None)
    elif count is None:
        # Cheap check without a lock, in one query: a full or paused room has nothing
        # to do. A slot freed after this read triggers its own admission run on commit.
        room = selectors.waiting_room_with_active(concert_id=concert_id, now=now, token_id=watch)
        if (
            room is None
            or room.admission_paused
            or not room.anyone_waiting
            or room.capacity - room.active_now <= 0
        ):
            return _Admission([], getattr(room, "token_status", None))
    ids = _admit_locked(concert_id=concert_id, now=now, count=count)
    if watch is None or watch in ids:
        return _Admission(ids, Status.ACTIVE if watch in ids else None)
    # Another run may have admitted the watched token before this one took the lock.
    status = QueueToken.objects.filter(pk=watch).values_list("status", flat=True).first()
    return _Admission(ids, status)


def _admit_locked(
    *, concert_id: int, now: datetime, count: int | None, room: WaitingRoom | None = None
) -> list[int]:
    """`room`: the room, if the caller's transaction has locked it already."""
    # No savepoint inside a caller's transaction (a coalesced round): an error here
    # ends that transaction too.
    with transaction.atomic(savepoint=False):
        room = room or _lock_room(concert_id=concert_id)
        if count is None:
            if room.admission_paused:
                return []
            free = room.capacity - selectors.active_count(concert_id=concert_id, now=now)
        else:
            free = count
        if free <= 0:
            return []
        _lock_line(concert_id=concert_id)
        cutoff = selectors.idle_cutoff(now=now)
        rows = _waiting_head(concert_id=concert_id, cutoff=cutoff, limit=free)
        if not rows:
            return []
        ids = [r[0] for r in rows]
        # Runs are serialised here, but each brings its caller's clock: a run that
        # waited for the lock may carry an earlier `now` than the run before it. The
        # room keeps the latest stamp, so admitted_at never goes back (admission order
        # is readable from it) and a turn is never shorter than its TTL.
        stamp = max(now, room.last_admitted_at or now)
        until = stamp + timedelta(seconds=settings.QUEUE_ACTIVE_TTL)
        QueueToken.objects.filter(id__in=ids).update(
            status=Status.ACTIVE, admitted_at=stamp, active_until=until
        )
        WaitingRoom.objects.filter(pk=room.pk).update(last_admitted_at=stamp)
        _buckets_remove(tokens=[(token_id, concert_id) for token_id in ids])
        mirror.put_after_commit(
            mirror.Row(id, key, concert_id, user_id, Status.ACTIVE, active_until=until)
            for id, key, user_id in rows
        )
    return ids


def _waiting_head(*, concert_id: int, cutoff: datetime, limit: int) -> list[tuple[int, str, int]]:
    """(id, key, owner) of the first `limit` waiting fans of the concert still present
    (seen after `cutoff`), in line order, locked: read along the waiting-order index
    (selectors.waiting_line), so the cost does not grow with the fans admitted."""
    tokens = QueueToken._meta.db_table
    with rawsql.cursor() as cursor:
        cursor.execute(
            f"SELECT id, key, user_id FROM {tokens} t"
            f" WHERE {selectors.waiting_line('t', concert_id)} AND t.last_seen_at > %s"
            f" ORDER BY t.concert_id, t.id LIMIT %s{rawsql.for_no_key_update()}",
            rawsql.params([cutoff, limit]),
        )
        return cursor.fetchall()


def queue_admit_all(*, now: datetime) -> int:
    """The beat job: one admission run for every unpaused concert with fans waiting."""
    concert_ids = (
        QueueBucket.objects.filter(waiting__gt=0)
        .exclude(concert__waiting_room__admission_paused=True)
        .values_list("concert_id", flat=True)
        .distinct()
    )
    return sum(len(queue_admit_next(concert_id=cid, now=now)) for cid in list(concert_ids))


# --- ending ----------------------------------------------------------------


def _end_tokens(*, ids: list[int], now: datetime, reason: str, status: str = Status.EXPIRED) -> int:
    """End live tokens (in id order, inside the caller's transaction or one of its own;
    no savepoint: a failure here fails the caller's transaction anyway)."""
    with transaction.atomic(savepoint=False):
        rows = list(
            QueueToken.objects.filter(id__in=ids, status__in=QueueToken.LIVE_STATUSES)
            .order_by("id")
            .select_for_update(no_key=True)
            .values_list("id", "concert_id", "status", "key", "user_id")
        )
        _end_locked(rows=rows, now=now, reason=reason, status=status)
    return len(rows)


def _end_locked(
    *,
    rows: list[tuple],
    now: datetime,
    reason: str,
    status: str,
    written: bool = False,
    counted: bool = False,
) -> None:
    """End these live tokens, row-locked by the caller: (id, concert, status, key, user).
    `written`: the caller has already updated the rows, and `counted`: their buckets
    too (only the rest is left)."""
    if not rows:
        return
    ids = [r[0] for r in rows]
    if not written:
        with rawsql.cursor() as cursor:  # plain SQL: a payment ends a turn each time
            cursor.execute(
                f"UPDATE {QueueToken._meta.db_table} SET status = %s, ended_at = %s,"
                f" end_reason = %s WHERE id IN ({', '.join(['%s'] * len(ids))})",
                rawsql.params([status, now, reason, *ids]),
            )
    if not counted:
        _buckets_remove(tokens=[(r[0], r[1]) for r in rows if r[2] == Status.WAITING])
    mirror.put_after_commit(
        mirror.Row(r[0], r[3], r[1], r[4], status, ended_at=now, end_reason=reason) for r in rows
    )
    # Only an ended turn frees a slot: a fan leaving the line changes nobody's
    # capacity, and a sold-out line emptying (15,000 leaves in a minute in the
    # 20,000-fan rehearsal) must not cost an admission check each.
    for concert_id in sorted({r[1] for r in rows if r[2] == Status.ACTIVE}):
        _admit_after_commit(concert_id=concert_id, now=now)


LEFT = "left"  # a leave's end reason


def queue_token_leave(*, token: QueueToken, now: datetime) -> None:
    """The fan leaves the line, or gives up the admitted slot, refilled after commit."""
    _end_tokens(ids=[token.pk], now=now, reason=LEFT, status=Status.LEFT)


# The leave's row lock. Without it the statement would decide from a snapshot taken
# before it waited for the token (an admission making it active, say): a control
# test switches it off and shows the bucket counted down twice.
LEAVE_LOCK = "FOR NO KEY UPDATE"


def queue_leave(*, key: str, user_id: int, now: datetime) -> None:
    """The fan leaves the line, or gives up the admitted turn (refilled after commit),
    by the token's secret: the API's and the page's leave. QueueTokenUnknown if no
    token has this secret, QueueTokenInvalid if it is another fan's; a token that
    has ended already is left as it is.

    On PostgreSQL in ONE statement, with no transaction around it: it locks the
    token, ends it if it is this fan's and live, and counts a waiting one out of
    its bucket, deciding from the token as it stands under the lock. A sold-out line
    empties at hundreds of leaves a second, and reading the token, locking it,
    ending it and counting it out had taken six round trips and most of a leave's
    5 ms of CPU (docs/performance.md, round seventeen). Elsewhere (make run's
    SQLite) the token is read, then ended as queue_token_leave ends it."""
    if not is_token_key(key):
        raise QueueTokenUnknown()
    if connection.vendor != "postgresql":
        token = selectors.queue_token_get(key=key, with_position=False)
        if token is None:
            raise QueueTokenUnknown()
        if token.user_id != user_id:
            raise QueueTokenInvalid()
        queue_token_leave(token=token, now=now)
        return
    _leave(key=key, user_id=user_id, api_key=None, now=now)


def queue_leave_by_api_key(*, api_key: str, key: str, now: datetime) -> bool:
    """queue_leave for the fan an API token key names, authenticated by the leave's
    own statement (the fast lane's leave: a fan told the sale is sold out leaves
    with one round trip to PostgreSQL, and the line-up, which also authenticates in
    its statement, has left the key out of the cache). False, having written
    nothing, if the key names no active fan, or for a queue token of no token's
    shape, or away from PostgreSQL: DRF's full way then answers (401 first, as it
    authenticates before the view runs)."""
    if not is_token_key(key) or connection.vendor != "postgresql":
        return False
    return _leave(key=key, user_id=None, api_key=api_key, now=now)


def _fan_sql(api_key: str | None) -> str:
    """A statement's `fan` (its column `user_id`), from its parameter `fan`: the fan's
    id as given, or (with an API token key) the active fan that key names, read in the
    statement itself (config.auth.active_user_sql; no row if none)."""
    if api_key is None:
        return "SELECT %(fan)s::bigint AS user_id"
    return auth.active_user_sql("%(fan)s")


def _leave(*, key: str, user_id: int | None, api_key: str | None, now: datetime) -> bool:
    """queue_leave's statement for the fan `user_id`, or the fan `api_key` names (the
    statement authenticates as the line-up's does: config.auth.active_user_sql).
    False if `api_key` names no active fan: then nothing is locked or written."""
    tokens, buckets = QueueToken._meta.db_table, QueueBucket._meta.db_table
    fan = _fan_sql(api_key)
    # The token is locked only once the fan is known (`old` reads `fan`): a refused key
    # takes no lock.
    with rawsql.cursor() as cursor:
        cursor.execute(
            f"""
            WITH fan AS ({fan}), old AS (
                SELECT id, concert_id, user_id, status FROM {tokens}
                WHERE key = %(key)s AND EXISTS (SELECT FROM fan)
                {LEAVE_LOCK}
            ), ended AS (
                UPDATE {tokens} t SET status = %(left)s, ended_at = %(now)s,
                                      end_reason = %(reason)s
                FROM old, fan WHERE t.id = old.id AND old.user_id = fan.user_id
                                    AND old.status = ANY(%(live)s)
                RETURNING t.id
            ), counted AS (
                UPDATE {buckets} b SET waiting = b.waiting - 1
                FROM old WHERE old.status = %(waiting)s AND EXISTS (SELECT FROM ended)
                               AND b.concert_id = old.concert_id
                               AND b.number = old.id / {BUCKET_SIZE}
                               AND b.stripe = old.id %% {BUCKET_STRIPES}
            )
            SELECT fan.user_id, old.id, old.concert_id, old.status, old.user_id,
                   EXISTS (SELECT FROM ended)
            FROM (SELECT 1) one LEFT JOIN fan ON true LEFT JOIN old ON true
            """,
            {
                "fan": user_id if api_key is None else api_key, "key": key, "now": now,
                "left": Status.LEFT, "reason": LEFT, "waiting": Status.WAITING,
                "live": list(QueueToken.LIVE_STATUSES),
            },
        )  # fmt: skip
        fan_id, token_id, concert_id, status, owner, ended = cursor.fetchone()
    if fan_id is None:
        return False
    if token_id is None:
        raise QueueTokenUnknown()
    if owner != fan_id:
        raise QueueTokenInvalid()
    if ended:
        _end_locked(
            rows=[(token_id, concert_id, status, key, owner)], now=now, reason=LEFT,
            status=Status.LEFT, written=True, counted=True,
        )  # fmt: skip
    return True


def queue_tokens_end(*, ids: list[int], now: datetime, reason: str) -> int:
    """End these tokens if still live (an operator's action); their slots refill after commit."""
    return _end_tokens(ids=ids, now=now, reason=reason, status=Status.ENDED)


def _lock_turn(
    *, key: str | None, user: AbstractBaseUser, concert_id: int, now: datetime
) -> QueueToken:
    """The fan's live turn by its secret, row-locked (FOR NO KEY UPDATE) for the
    transaction and checked under that lock; raises the gate's errors."""
    if not key:
        raise QueueTokenMissing()
    token, part = None, queue_turn_lock_part(key)
    if part is not None:
        with rawsql.cursor() as cursor:  # the same SQL as the hold's own lock statement
            cursor.execute(
                f"SELECT {part.columns} FROM {part.table} WHERE {part.condition}"
                f"{rawsql.for_no_key_update()}",
                part.params,
            )
            row = cursor.fetchone()
        token = part.token(row, 0) if row else None
    _check_pass(token, user=user, concert_id=concert_id, now=now)
    return token


class TurnLock(NamedTuple):
    """The fan's turn's row, for a caller that locks it in its own lock statement,
    after its own rows (the global lock order: the fan, the seat, then the turn):
    add `columns` to the statement's SELECT, `table` to its FROM, `condition` (with
    `params`) to its WHERE and `alias` to its FOR ... OF. `token(row, at)` is then
    the turn the row holds from column `at`, to pass to queue_turn_extend as
    `locked`. A hold saves a round trip to PostgreSQL this way."""

    columns: str
    table: str
    condition: str
    params: list
    alias: str

    def token(self, row: tuple, at: int) -> QueueToken:
        return rawsql.instances(row[at:], QueueToken)[0]


def queue_turn_lock_part(key: str | None, *, alias: str = "t") -> TurnLock | None:
    """The fan's turn by its secret as part of a caller's lock statement (TurnLock),
    or None for a key of no token's shape (then queue_turn_extend says why)."""
    if not key or not is_token_key(key):
        return None
    table = QueueToken._meta.db_table
    return TurnLock(
        rawsql.select(QueueToken, alias), f"{table} {alias}", f"{alias}.key = %s", [key], alias
    )


def queue_turn_extend(
    *,
    key: str | None,
    user: AbstractBaseUser,
    concert_id: int,
    until: datetime,
    now: datetime,
    locked: QueueToken | None = None,
) -> QueueToken:
    """Check the fan's turn under its row lock and keep it from lapsing before `until`
    (a live seat hold's end). Call inside the caller's transaction. `locked`: the
    turn as the caller's own lock statement locked and read it (queue_turn_lock_part),
    so it is not locked again here.

    The seam for seat holds: concerts tells queueing how long a hold lives, so
    queueing never asks concerts about holds. A turn that has lapsed, even if no
    sweep has marked it yet, is refused here and never revived: its slot may
    already belong to the next fan. The sweep locks the same row (SKIP LOCKED), so
    either the sweep ends the turn first and this refuses, or this extends it
    first and the sweep no longer finds it lapsed.
    """
    if locked is None:
        token = _lock_turn(key=key, user=user, concert_id=concert_id, now=now)
    else:
        token = locked
        _check_pass(token, user=user, concert_id=concert_id, now=now)
    if token.active_until < until:
        with rawsql.cursor() as cursor:  # plain SQL: every hold runs it
            cursor.execute(
                f"UPDATE {QueueToken._meta.db_table} SET active_until = %s WHERE id = %s",
                rawsql.params([until, token.pk]),
            )
        token.active_until = until
        mirror.put_after_commit([mirror.Row.of(token)])
    return token


def queue_turn_grant(
    *, user_id: int, concert_id: int, until: datetime, now: datetime
) -> QueueToken:
    """Give a fan a turn until `until` without a wait in line: for a waitlist offer,
    which is a line of its own (concerts keeps it, per date). The fan's live token
    becomes active (a waiting or pre-queue one leaves the line), an active one lasts
    at least until `until`, and a fan with none gets a new active token. The turn
    counts as an active one. Call inside the caller's transaction, after its seat
    and reservation locks (the global lock order)."""
    for _ in range(2):  # again if a line-up of the same fan committed in between
        token = (
            QueueToken.objects.filter(
                concert_id=concert_id, user_id=user_id, status__in=QueueToken.LIVE_STATUSES
            )
            .select_for_update(no_key=True)
            .first()
        )
        if token is None:
            try:
                with transaction.atomic():
                    token = QueueToken.objects.create(
                        concert_id=concert_id,
                        user_id=user_id,
                        status=Status.ACTIVE,
                        created_at=now,
                        last_seen_at=now,
                        admitted_at=now,
                        active_until=until,
                    )
            except IntegrityError as exc:
                if _violated(exc) != LIVE_TOKEN_CONSTRAINT:
                    raise
                continue
            break
        if token.status == Status.WAITING:
            _buckets_remove(tokens=[(token.pk, concert_id)])
        if token.status != Status.ACTIVE:
            token.admitted_at = now
        token.status = Status.ACTIVE
        token.active_until = max(until, token.active_until or until)
        QueueToken.objects.filter(pk=token.pk).update(
            status=token.status, admitted_at=token.admitted_at, active_until=token.active_until
        )
        break
    else:  # pragma: no cover - the fan's live token kept changing under us
        raise QueueTokenInvalid()
    mirror.put_after_commit([mirror.Row.of(token)])
    return token


def queue_turn_lock(
    *, key: str | None, user: AbstractBaseUser, concert_id: int, now: datetime
) -> QueueToken:
    """Check the fan's turn under its row lock, and keep it (a payment for some of
    the fan's seats, while others are still held). Call inside the caller's transaction."""
    return _lock_turn(key=key, user=user, concert_id=concert_id, now=now)


class TurnEnd(NamedTuple):
    """The fan's turn's end as one data-modifying part of a caller's statement (WITH
    name AS (sql) ...): an UPDATE that ends the fan's own live turn for the concert
    under the row lock it takes (what _lock_turn checks, as SQL), RETURNING the
    token's columns, `width` of them. Then call queue_turn_end with `tried=True` and
    `ended=token(row, at)`, the turn it ended (None: none, and the gate says why)."""

    sql: str
    params: list
    width: int

    def token(self, row: tuple, at: int) -> QueueToken | None:
        """The ended turn from the row's columns from `at` (None if none ended)."""
        values = row[at : at + self.width]
        return None if values[0] is None else rawsql.instances(values, QueueToken)[0]


def queue_turn_end_part(
    *,
    key: str | None,
    user: AbstractBaseUser,
    concert_id: int,
    now: datetime,
    reason: str,
    unless: str = "",
) -> TurnEnd | None:
    """queue_turn_end's usual case as part of a caller's statement (TurnEnd); `unless`:
    an SQL condition (no parameters) under which the turn is not ended. None: a key
    of no token's shape, or no fan (queue_turn_end then says why)."""
    if not (key and is_token_key(key) and user.is_authenticated):
        return None
    table = QueueToken._meta.db_table
    return TurnEnd(
        f"UPDATE {table} SET status = %s, ended_at = %s, end_reason = %s"
        f" WHERE key = %s AND user_id = %s AND concert_id = %s AND status = %s"
        f" AND active_until > %s{f' AND NOT ({unless})' if unless else ''}"
        f" RETURNING {rawsql.select(QueueToken, table)}",
        rawsql.params([Status.ENDED, now, reason, key, user.pk, concert_id, Status.ACTIVE, now]),
        rawsql.width(QueueToken),
    )


def queue_turn_end(
    *,
    key: str | None,
    user: AbstractBaseUser,
    concert_id: int,
    now: datetime,
    reason: str,
    tried: bool = False,
    ended: QueueToken | None = None,
) -> QueueToken:
    """Check the fan's turn under its row lock and end it (a payment ends the turn).
    Call inside the caller's transaction: if it rolls back, the turn goes on; if it
    commits, the freed slot is refilled right after. `tried`: the caller's own
    statement tried to end it (queue_turn_end_part), and `ended` is what it ended
    (None: nothing, and the gate says why)."""
    if not tried:
        part = queue_turn_end_part(
            key=key, user=user, concert_id=concert_id, now=now, reason=reason
        )
        if part is not None:
            # The usual case in one statement: the fan's own live turn for this
            # concert, ended under the row lock the UPDATE takes.
            with rawsql.cursor() as cursor:
                cursor.execute(part.sql, part.params)
                row = cursor.fetchone()
            ended = None if row is None else part.token(row, 0)
    if ended is not None:
        row = (ended.pk, ended.concert_id, Status.ACTIVE, ended.key, ended.user_id)
        _end_locked(rows=[row], now=now, reason=reason, status=Status.ENDED, written=True)
        return ended
    # Refused: under the lock, the gate says why (the same checks, in Python).
    token = _lock_turn(key=key, user=user, concert_id=concert_id, now=now)
    row = (token.pk, token.concert_id, token.status, token.key, token.user_id)
    _end_locked(rows=[row], now=now, reason=reason, status=Status.ENDED)
    return token


def queue_expire_stale(*, now: datetime, batch_size: int = 5000) -> dict[str, int]:
    """The beat job: end active tokens past their deadline and abandoned waiting tokens.

    Batches use SKIP LOCKED, so concurrent runs split the work instead of waiting;
    running it again changes nothing. Freed slots are refilled after each commit.
    """
    result = {"active_expired": 0, "idle_expired": 0}
    # Presence recorded in Redis reaches PostgreSQL first: only PostgreSQL expires a fan.
    mirror.presence_flush()
    cutoff = selectors.idle_cutoff(now=now)
    for key, reason, filters in (
        ("active_expired", "ttl", {"status": Status.ACTIVE, "active_until__lte": now}),
        ("idle_expired", "idle", {"status": Status.WAITING, "last_seen_at__lte": cutoff}),
    ):
        while True:
            with transaction.atomic():
                found = list(
                    QueueToken.objects.filter(**filters)
                    .order_by("id")
                    .select_for_update(skip_locked=True, no_key=True)
                    .values_list("id", "concert_id", "key", "user_id")[:batch_size]
                )
                if not found:
                    break
                rows = [(r[0], r[1]) for r in found]
                QueueToken.objects.filter(id__in=[r[0] for r in rows]).update(
                    status=Status.EXPIRED, ended_at=now, end_reason=reason
                )
                if filters["status"] == Status.WAITING:
                    _buckets_remove(tokens=rows)
                mirror.put_after_commit(
                    mirror.Row(i, k, c, u, Status.EXPIRED, ended_at=now, end_reason=reason)
                    for i, c, k, u in found
                )
                for concert_id in sorted({r[1] for r in rows}):
                    _admit_after_commit(concert_id=concert_id, now=now)
            result[key] += len(rows)
            if len(rows) < batch_size:
                break
    return result


# --- polling and the gate --------------------------------------------------


def queue_token_touch(*, token: QueueToken, now: datetime) -> None:
    """Record that the fan is still here (at most one write per TOUCH_INTERVAL)."""
    if now - token.last_seen_at < TOUCH_INTERVAL:
        return
    table = QueueToken._meta.db_table
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        # Presence is a hint, not money: let this one-statement transaction commit
        # without waiting for the disk (synchronous_commit off, for it alone).
        with rawsql.cursor() as cursor:
            cursor.execute(
                "WITH hint AS (SELECT set_config('synchronous_commit', 'off', true))"
                f" UPDATE {table} SET last_seen_at = %s"
                " WHERE id = %s AND last_seen_at < %s AND EXISTS (SELECT 1 FROM hint)",
                [now, token.pk, now],
            )
    else:
        QueueToken.objects.filter(pk=token.pk, last_seen_at__lt=now).update(last_seen_at=now)
    token.last_seen_at = now


def _check_pass(
    token: QueueToken | None, *, user: AbstractBaseUser, concert_id: int, now: datetime
) -> None:
    """The gate's rule, written once: the fan's own token, for this concert, admitted
    and not lapsed as of `now`."""
    if token is None or not user.is_authenticated or token.user_id != user.pk:
        raise QueueTokenInvalid()
    if token.concert_id != concert_id:
        raise QueueTokenWrongConcert()
    status = selectors.effective_status(token, now=now)
    if status == Status.WAITING:
        raise QueueTokenWaiting(details={"position": selectors.queue_position(token=token)})
    if status == Status.PRE_QUEUE:
        raise QueueTokenWaiting(details={"position": None})
    if status != Status.ACTIVE:
        raise QueueTokenExpired()


def queue_gate_pass(
    *,
    key: str | None,
    user: AbstractBaseUser,
    concert_id: int,
    now: datetime,
    mirrored: Reply | None = None,
) -> QueueToken:
    """Let an admitted fan through to a concert's booking, or raise the reason why not.
    `mirrored`: the mirror's read already made in a RoundTrip (queue_gate_pass_later)."""
    if not key:
        raise QueueTokenMissing()
    if mirrored is None:
        token = mirror.read(key=key, now=now)  # one Redis round trip, presence included
    else:
        token = mirror.read_reply(mirrored, key=key, now=now)
    if token is None:
        token = selectors.queue_token_get(key=key)
    _check_pass(token, user=user, concert_id=concert_id, now=now)
    if not getattr(token, "from_mirror", False):
        queue_token_touch(token=token, now=now)
    return token


def queue_gate_pass_later(trip: RoundTrip, *, key: str | None, now: datetime) -> Reply:
    """queue_gate_pass's Redis read, in a RoundTrip: pass the reply as `mirrored`."""
    return mirror.read_later(trip, key=key, now=now)


# --- poll pacing -------------------------------------------------------------


def _poll_key(key: str) -> str:
    return f"queue:poll:{key}"


def _too_soon(*, not_before_ms: int, now: datetime) -> PollTooSoon:
    return PollTooSoon(
        retry_after=max(1, math.ceil((not_before_ms - now.timestamp() * 1000) / 1000))
    )


def queue_poll_guard(*, key: str, now: datetime) -> None:
    """Refuse a poll that comes before the client was told to come back.

    Reads only the shared cache: an early poll never reaches the database.
    """
    if not is_token_key(key):
        return  # not a token at all: the poll itself answers 404
    not_before = cache.get(_poll_key(key))
    if isinstance(not_before, int) and now.timestamp() * 1000 < not_before:
        raise _too_soon(not_before_ms=not_before, now=now)


def queue_token_poll(*, key: str, now: datetime) -> QueueToken | None:
    """One poll's read: the early-poll guard, the token with its position, and the
    fan's presence. From the mirror in one Redis round trip and no SQL; from
    PostgreSQL when the mirror cannot answer. None: no such token."""
    try:
        token = mirror.read(key=key, now=now, poll_key=_poll_key(key), pacing=_pacing())
    except mirror.Early as early:
        raise _too_soon(not_before_ms=early.not_before_ms, now=now) from None
    if token is not None:
        return token
    queue_poll_guard(key=key, now=now)
    token = selectors.queue_token_get(key=key)
    if token is not None and selectors.effective_status(token, now=now) == Status.WAITING:
        queue_token_touch(token=token, now=now)
    return token


def _pacing() -> tuple[str, ...]:
    """What the mirror's read script needs to pace a poll as poll_after_seconds does."""
    return (
        str(selectors.budget_floor_seconds()),
        str(selectors.FRONT_POLL),
        str(selectors.MAX_BASE_POLL),
        cache.make_key(selectors.rate_cache_key("")),
        str(selectors.RATE_SCALE),
    )


def queue_poll_record(*, key: str, poll_after: int, now: datetime) -> None:
    """Remember when this token may poll next (allowing a little early, for clock jitter).
    Stored as integer milliseconds, so the mirror's read script can compare it."""
    tolerance = min(1.0, poll_after * 0.2)
    not_before = int((now.timestamp() + poll_after - tolerance) * 1000)
    cache.set(_poll_key(key), not_before, poll_after + 5)


# --- operators' controls (the live sale dashboard, the queue panel) ---------------
#
# Each is one service call that does the change and records it, with the operator's
# name, in the audit log (config.audit), in one transaction.


def queue_operator_pause(
    *, concert_id: int, paused: bool, operator: AbstractBaseUser, now: datetime
) -> WaitingRoom:
    """Pause or resume admission (a resumed room admits at once, after commit)."""
    with transaction.atomic():
        room = waiting_room_get(concert_id=concert_id)
        room = waiting_room_update(
            concert_id=concert_id, max_active=room.max_active, admission_paused=paused, now=now
        )
        operator_action_record(
            operator=operator, action="resume" if not paused else "pause",
            concert_id=concert_id, now=now,
        )  # fmt: skip
    return room


def queue_operator_capacity(
    *, concert_id: int, max_active: int | None, operator: AbstractBaseUser, now: datetime
) -> WaitingRoom:
    """Set how many fans may have a turn at once (None: the default); more room admits
    at once, less lets current turns run out."""
    if max_active is not None and not 0 <= max_active <= MAX_CAPACITY:
        raise CapacityInvalid(details={"max_active": max_active, "max": MAX_CAPACITY})
    with transaction.atomic():
        room = waiting_room_get(concert_id=concert_id)
        before = room.max_active
        room = waiting_room_update(
            concert_id=concert_id, max_active=max_active,
            admission_paused=room.admission_paused, now=now,
        )  # fmt: skip
        operator_action_record(
            operator=operator, action="capacity", concert_id=concert_id, now=now,
            details={"from": before, "to": max_active},
        )  # fmt: skip
    return room


MAX_CAPACITY = 100_000


def queue_operator_admit(
    *, concert_id: int, count: int, operator: AbstractBaseUser, now: datetime
) -> list[int]:
    """Admit the next `count` fans in line order now, beyond capacity."""
    if not 1 <= count <= 10_000:
        raise CapacityInvalid("Admit between 1 and 10,000 fans at a time.")
    with transaction.atomic():
        waiting_room_get(concert_id=concert_id)
        ids = queue_admit_next(concert_id=concert_id, now=now, count=count)
        operator_action_record(
            operator=operator, action="admit_next", concert_id=concert_id, now=now,
            details={"asked": count, "admitted": len(ids)},
        )  # fmt: skip
    return ids


def queue_operator_end_all_turns(
    *, concert_id: int, operator: AbstractBaseUser, now: datetime
) -> int:
    """End every active turn of the concert (their holds stay until they lapse or are
    paid; the freed slots refill from the line after commit)."""
    with transaction.atomic():
        waiting_room_get(concert_id=concert_id)
        ids = list(
            QueueToken.objects.filter(concert_id=concert_id, status=Status.ACTIVE).values_list(
                "id", flat=True
            )
        )
        ended = queue_tokens_end(ids=ids, now=now, reason="operator") if ids else 0
        operator_action_record(
            operator=operator, action="end_all_turns", concert_id=concert_id, now=now,
            details={"ended": ended},
        )  # fmt: skip
    return ended


def queue_operator_end_tokens(*, ids: list[int], operator: AbstractBaseUser, now: datetime) -> int:
    """End these tokens if still live (the queue tokens admin action), logged per concert."""
    with transaction.atomic():
        concerts = Counter(
            QueueToken.objects.filter(id__in=ids, status__in=QueueToken.LIVE_STATUSES).values_list(
                "concert_id", flat=True
            )
        )
        ended = queue_tokens_end(ids=ids, now=now, reason="operator")
        for concert_id, n in sorted(concerts.items()):
            operator_action_record(
                operator=operator, action="end_tokens", concert_id=concert_id, now=now,
                details={"ended": n},
            )  # fmt: skip
    return ended


def queue_operator_schedule_sale(
    *,
    concert_id: int,
    sale_starts_at: datetime | None,
    pre_queue_minutes: int,
    operator: AbstractBaseUser,
    now: datetime,
) -> WaitingRoom:
    """Schedule (or unschedule, with None) a concert's sale and its pre-queue window,
    logged. Refused once the sale has started (SaleAlreadyStarted)."""
    with transaction.atomic():
        room = waiting_room_get(concert_id=concert_id)
        room = waiting_room_update(
            concert_id=concert_id, max_active=room.max_active,
            admission_paused=room.admission_paused, sale_starts_at=sale_starts_at,
            pre_queue_minutes=pre_queue_minutes, now=now,
        )  # fmt: skip
        operator_action_record(
            operator=operator, action="schedule_sale", concert_id=concert_id, now=now,
            details={
                "sale_starts_at": None if sale_starts_at is None else sale_starts_at.isoformat(),
                "pre_queue_minutes": pre_queue_minutes,
            },
        )  # fmt: skip
    return room
