"""A date's seat availability, answered from Redis and always current.

PostgreSQL decides who holds a seat; this only remembers the last answer. Per
date, one Redis hash holds a version counter `v` and the last computed answer
`data` with the version it was computed under (`dv`). The answer is used only
while `dv == v` and until `until`, the moment the earliest live hold on the date
lapses (an expired hold is free the moment it expires, with no write at all).

- Writers bump `v` after commit (`bump_after_commit`): a new hold, a hold ended
  in a way that frees its seat, a refund, and any change to the date or its seats.
- A reader that misses reads PostgreSQL and stores its answer with compare-and-set
  on the version it saw *before* that read: if a writer bumped in between, the
  answer is dropped, so an answer older than a bump is never served.
- With Redis down (or no Redis), every read is a PostgreSQL read. A bump this
  process cannot send is kept in PostgreSQL and delivered by beat within about
  2 s (config.outbox), since other processes may still reach Redis; a stored
  answer lives at most MAX_AGE seconds in any case.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime

from django.core.cache import caches
from django.db import transaction

from config import outbox
from config.cache import (
    REDIS_DOWN,
    Reply,
    RoundTrip,
    redis_backend,
    redis_client,
    redis_eval,
    redis_failed,
    redis_sent,
)

MAX_AGE = 30  # seconds

# KEYS: the date's hash. ARGV: the version seen before the read, the answer, max age.
_STORE = """
if (redis.call('HGET', KEYS[1], 'v') or '0') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'dv', ARGV[1], 'data', ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""


def _key(schedule_id: int) -> str:
    return caches["default"].make_key(f"seats:{schedule_id}")


def read(schedule_id: int, *, now: datetime) -> tuple[dict | None, str | None]:
    """(answer, None) on a hit; (None, version seen) on a miss; (None, None) with no Redis."""
    client = redis_client()
    if client is None:
        return None, None
    try:
        found = client.hmget(_key(schedule_id), *_FIELDS)
    except REDIS_DOWN as exc:
        redis_failed(exc)
        return None, None
    return _answer(found, now=now)


def read_later(trip: RoundTrip, schedule_id: int) -> Reply:
    """`read`'s Redis read, in a RoundTrip; `read_reply` gives what `read` gives."""
    return trip.command("HMGET", _key(schedule_id), *_FIELDS)


def read_reply(reply: Reply, *, now: datetime) -> tuple[dict | None, str | None]:
    return (None, None) if reply.down else _answer(reply.value, now=now)


_FIELDS = ("v", "dv", "data")


def _answer(found, *, now: datetime) -> tuple[dict | None, str | None]:
    version, data_version, data = found
    version = (version or b"0").decode()
    if data is not None and data_version is not None and data_version.decode() == version:
        answer = _decoded(data)
        if answer["until"] is None or now.timestamp() < answer["until"]:
            return answer, None
    return None, version


# The answers this process decoded, by their exact bytes: a date's answer is read
# by every fan until the next write on it, and decoding it was a tenth of a warm
# seat map. The bytes are the whole answer (its version is checked above), so the
# same bytes are the same answer. Callers treat an answer as read-only.
_DECODED_MAX = 1024
_decoded_answers: dict[bytes, dict] = {}


def _decoded(data: bytes) -> dict:
    answer = _decoded_answers.get(data)
    if answer is None:
        if len(_decoded_answers) >= _DECODED_MAX:
            _decoded_answers.clear()
        answer = _decoded_answers[data] = json.loads(data)
    return answer


def store(schedule_id: int, *, seen_version: str, answer: dict) -> None:
    client = redis_client()
    if client is None:
        return
    try:
        redis_eval(client, _STORE, [_key(schedule_id)], [seen_version, json.dumps(answer), MAX_AGE])
    except REDIS_DOWN as exc:
        redis_failed(exc)


def bump(schedule_ids: Iterable[int]) -> None:
    """Every cached answer for these dates is out of date. If this process cannot
    reach Redis (its breaker is open, or the bump fails), the bump is kept in
    PostgreSQL for beat to deliver (config.outbox): other processes may still reach
    Redis and serve the old answer, for up to MAX_AGE without it. With the breaker
    open it is kept at once, with no wait: a bump comes with every hold."""
    ids = sorted(set(schedule_ids))
    if not ids or redis_backend() is None:
        return
    if not _bump_in_redis(ids):
        outbox.keep("seats", [str(schedule_id) for schedule_id in ids])


def _bump_in_redis(schedule_ids: list[int]) -> bool:
    """One round trip; False if Redis did not answer (or the breaker is open)."""
    calls: list[tuple] = []
    for schedule_id in schedule_ids:
        calls += [(None, "HINCRBY", _key(schedule_id), "v", 1),
                  (None, "EXPIRE", _key(schedule_id), MAX_AGE * 10)]  # fmt: skip
    return redis_sent(redis_client(), calls)


@outbox.deliverer("seats")
def _deliver_bumps(keys: list[str]) -> bool:
    """Beat's delivery of bumps kept in PostgreSQL (see bump, config.outbox)."""
    return _bump_in_redis(sorted({int(key) for key in keys}))


def bump_after_commit(schedule_ids: Iterable[int]) -> None:
    """Every cached answer for these dates is out of date once the caller commits."""
    ids = list(schedule_ids)
    if ids:
        transaction.on_commit(lambda: bump(ids))


def timestamp(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def from_timestamp(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)
