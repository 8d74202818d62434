"""Writes for the waiting room: issue, admit, leave, end, expire, the gate.

Lock order, everywhere: the waiting-room row, then token rows in id order, then
bucket rows in (concert, number, stripe) order. Following it, no two of these services
can deadlock.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.db.models.functions import Greatest

from queueing import selectors
from queueing.exceptions import (
    ConcertNotFound,
    QueueTokenExpired,
    QueueTokenInvalid,
    QueueTokenMissing,
    QueueTokenWaiting,
    QueueTokenWrongConcert,
)
from queueing.models import BUCKET_SIZE, BUCKET_STRIPES, QueueBucket, QueueToken, WaitingRoom

logger = logging.getLogger(__name__)
Status = QueueToken.Status

# A gate pass or poll refreshes last_seen_at at most this often (one write, not one per request).
TOUCH_INTERVAL = timedelta(seconds=15)


# --- waiting rooms ---------------------------------------------------------


def waiting_room_get_or_create(*, concert_id: int) -> WaitingRoom:
    room = WaitingRoom.objects.filter(pk=concert_id).first()
    if room is not None:
        return room
    concert_model = WaitingRoom._meta.get_field("concert").related_model
    if not concert_model.objects.filter(pk=concert_id).exists():
        raise ConcertNotFound()
    room, _ = WaitingRoom.objects.get_or_create(pk=concert_id)
    return room


def waiting_room_update(
    *, concert_id: int, max_active: int | None, admission_paused: bool, now: datetime
) -> WaitingRoom:
    """Operators change capacity or pause; a resumed or larger room admits at once."""
    room = waiting_room_get_or_create(concert_id=concert_id)
    WaitingRoom.objects.filter(pk=room.pk).update(
        max_active=max_active, admission_paused=admission_paused
    )
    room.refresh_from_db()
    transaction.on_commit(lambda: queue_admit_next(concert_id=concert_id, now=now))
    return room


# --- buckets ---------------------------------------------------------------


def _bucket_add(*, concert_id: int, token_id: int, delta: int) -> None:
    key = {
        "concert_id": concert_id,
        "number": token_id // BUCKET_SIZE,
        "stripe": token_id % BUCKET_STRIPES,
    }
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
    existing = selectors.queue_token_live_for(user_id=user.pk, concert_id=concert_id)
    if existing is not None:
        if selectors.effective_status(existing, now=now) != Status.EXPIRED:
            return existing, False
        _end_tokens(ids=[existing.pk], now=now, reason="lapsed")
    waiting_room_get_or_create(concert_id=concert_id)
    try:
        with transaction.atomic():
            token = QueueToken.objects.create(
                concert_id=concert_id,
                user=user,
                status=Status.WAITING,
                created_at=now,
                last_seen_at=now,
            )
            _bucket_add(concert_id=concert_id, token_id=token.pk, delta=1)
    except IntegrityError:
        existing = selectors.queue_token_live_for(user_id=user.pk, concert_id=concert_id)
        if existing is None:  # pragma: no cover - the winner ended it in between
            raise
        return existing, False
    if queue_admit_next(concert_id=concert_id, now=now):
        token.refresh_from_db()
    return token, True


# --- admission -------------------------------------------------------------


def _lock_room(*, concert_id: int) -> WaitingRoom:
    """Serialise admission runs of one concert (call inside a transaction)."""
    return WaitingRoom.objects.select_for_update(no_key=True).get(pk=concert_id)


def queue_admit_next(*, concert_id: int, now: datetime, count: int | None = None) -> list[int]:
    """Admit waiting fans of one concert in exact FIFO order.

    With `count` None, admits as many as the room has free capacity (none while
    paused). With `count` set (an operator's "admit next N"), admits up to N
    regardless of capacity. Safe to run concurrently: runs for one concert are
    serialised on the waiting-room row, and capacity is re-read under that lock.
    Returns the ids admitted.
    """
    if count is None:
        # Cheap check without a lock, in one query: a full or paused room has nothing
        # to do. A slot freed after this read triggers its own admission run on commit.
        room = selectors.waiting_room_with_active(concert_id=concert_id, now=now)
        if room is None or room.admission_paused or room.capacity - room.active_now <= 0:
            return []
    with transaction.atomic():
        room = _lock_room(concert_id=concert_id)
        if count is None:
            if room.admission_paused:
                return []
            free = room.capacity - selectors.active_count(concert_id=concert_id, now=now)
        else:
            free = count
        if free <= 0:
            return []
        cutoff = selectors.idle_cutoff(now=now)
        ids = list(
            QueueToken.objects.filter(
                concert_id=concert_id, status=Status.WAITING, last_seen_at__gt=cutoff
            )
            .order_by("id")
            .select_for_update(no_key=True)
            .values_list("id", flat=True)[:free]
        )
        if not ids:
            return []
        QueueToken.objects.filter(id__in=ids).update(
            status=Status.ACTIVE,
            admitted_at=now,
            active_until=now + timedelta(seconds=settings.QUEUE_ACTIVE_TTL),
        )
        _buckets_remove(tokens=[(token_id, concert_id) for token_id in ids])
    return ids


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
    """End live tokens (in id order, inside the caller's transaction or one of its own)."""
    with transaction.atomic():
        rows = list(
            QueueToken.objects.filter(id__in=ids, status__in=QueueToken.LIVE_STATUSES)
            .order_by("id")
            .select_for_update(no_key=True)
            .values_list("id", "concert_id", "status")
        )
        if not rows:
            return 0
        QueueToken.objects.filter(id__in=[r[0] for r in rows]).update(
            status=status, ended_at=now, end_reason=reason
        )
        _buckets_remove(tokens=[(r[0], r[1]) for r in rows if r[2] == Status.WAITING])
        for concert_id in sorted({r[1] for r in rows}):
            transaction.on_commit(lambda cid=concert_id: queue_admit_next(concert_id=cid, now=now))
    return len(rows)


def queue_token_leave(*, token: QueueToken, now: datetime) -> None:
    """The fan leaves the line, or gives up the admitted slot, refilled after commit."""
    _end_tokens(ids=[token.pk], now=now, reason="left", status=Status.LEFT)


def queue_token_end(*, user_id: int, concert_id: int, now: datetime, reason: str) -> int:
    """End the fan's live token for a concert (for example after paying). Call inside
    the caller's transaction: the freed slot is refilled right after it commits."""
    ids = list(
        QueueToken.objects.filter(
            user_id=user_id, concert_id=concert_id, status__in=QueueToken.LIVE_STATUSES
        ).values_list("id", flat=True)
    )
    return _end_tokens(ids=ids, now=now, reason=reason) if ids else 0


def queue_token_keep_alive(*, user_id: int, concert_id: int, until: datetime) -> int:
    """Keep the fan's active token from expiring before `until` (a live seat hold's end).

    The seam for seat holds: concerts tells queueing how long a hold lives, so
    queueing never asks concerts about holds.
    """
    return QueueToken.objects.filter(
        user_id=user_id, concert_id=concert_id, status=Status.ACTIVE
    ).update(active_until=Greatest(F("active_until"), until))


def queue_expire_stale(*, now: datetime, batch_size: int = 5000) -> dict[str, int]:
    """The beat job: end active tokens past their deadline and abandoned waiting tokens.

    Batches use SKIP LOCKED, so concurrent runs split the work instead of waiting;
    running it again changes nothing. Freed slots are refilled after each commit.
    """
    result = {"active_expired": 0, "idle_expired": 0}
    cutoff = selectors.idle_cutoff(now=now)
    for key, reason, filters in (
        ("active_expired", "ttl", {"status": Status.ACTIVE, "active_until__lte": now}),
        ("idle_expired", "idle", {"status": Status.WAITING, "last_seen_at__lte": cutoff}),
    ):
        while True:
            with transaction.atomic():
                rows = list(
                    QueueToken.objects.filter(**filters)
                    .order_by("id")
                    .select_for_update(skip_locked=True)
                    .values_list("id", "concert_id")[:batch_size]
                )
                if not rows:
                    break
                QueueToken.objects.filter(id__in=[r[0] for r in rows]).update(
                    status=Status.EXPIRED, ended_at=now, end_reason=reason
                )
                if filters["status"] == Status.WAITING:
                    _buckets_remove(tokens=rows)
                for concert_id in sorted({r[1] for r in rows}):
                    transaction.on_commit(
                        lambda cid=concert_id: queue_admit_next(concert_id=cid, now=now)
                    )
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
        with connection.cursor() as cursor:
            cursor.execute(
                "WITH hint AS (SELECT set_config('synchronous_commit', 'off', true))"
                f" UPDATE {table} SET last_seen_at = %s"
                " WHERE id = %s AND last_seen_at < %s AND EXISTS (SELECT 1 FROM hint)",
                [now, token.pk, now],
            )
    else:
        QueueToken.objects.filter(pk=token.pk, last_seen_at__lt=now).update(last_seen_at=now)
    token.last_seen_at = now


def queue_gate_pass(
    *, key: str | None, user: AbstractBaseUser, concert_id: int, now: datetime
) -> QueueToken:
    """Let an admitted fan through to a concert's booking, or raise the reason why not."""
    if not key:
        raise QueueTokenMissing()
    token = selectors.queue_token_get(key=key)
    if token is None or not user.is_authenticated or token.user_id != user.pk:
        raise QueueTokenInvalid()
    if token.concert_id != concert_id:
        raise QueueTokenWrongConcert()
    status = selectors.effective_status(token, now=now)
    if status == Status.WAITING:
        raise QueueTokenWaiting(details={"position": selectors.queue_position(token=token)})
    if status != Status.ACTIVE:
        raise QueueTokenExpired()
    queue_token_touch(token=token, now=now)
    return token


# --- poll pacing -------------------------------------------------------------


def _poll_key(key: str) -> str:
    return f"queue:poll:{key}"


def queue_poll_guard(*, key: str, now: datetime) -> None:
    """Refuse a poll that comes before the client was told to come back.

    Reads only the shared cache: an early poll never reaches the database.
    """
    from queueing.exceptions import PollTooSoon

    not_before = cache.get(_poll_key(key))
    if not_before is not None and now.timestamp() < not_before:
        raise PollTooSoon(retry_after=max(1, math.ceil(not_before - now.timestamp())))


def queue_poll_record(*, key: str, poll_after: int, now: datetime) -> None:
    """Remember when this token may poll next (allowing a little early, for clock jitter)."""
    tolerance = min(1.0, poll_after * 0.2)
    cache.set(_poll_key(key), now.timestamp() + poll_after - tolerance, poll_after + 5)
