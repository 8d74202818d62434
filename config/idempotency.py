"""Idempotency keys: one mechanism for every retry-sensitive write (charges, payments).

The same key from the same fan, in the same scope, with the same request
fingerprint replays the first answer (status and body) for IDEMPOTENCY_TTL.
The same key with another fingerprint gets 422 `idempotency_key_reused`; a key
whose first request is still running gets 409 `idempotency_key_in_use`. Keys
are scoped per fan, so one fan's key never reveals another's answer.

The business write and the stored answer commit in one transaction, so an
answer is stored if and only if the write happened. A refusal rolls the write back
in full; what it keeps on purpose (its `aftermath`) commits with its stored answer.
A request that died before committing leaves an in-flight record that may be taken
over after IN_FLIGHT_TIMEOUT, which is safe because nothing it did was committed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction

from config import rawsql
from config.errors import DomainError
from config.models import IdempotencyRecord

IDEMPOTENCY_TTL = timedelta(hours=24)
IN_FLIGHT_TIMEOUT = timedelta(seconds=60)
HEADER = "Idempotency-Key"
logger = logging.getLogger(__name__)


class IdempotencyKeyInvalid(DomainError):
    code = "idempotency_key_invalid"
    http_status = 400
    message = "An Idempotency-Key must be 1 to 255 printable characters."


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    http_status = 422
    message = "This Idempotency-Key was already used with a different request."


class IdempotencyKeyInUse(DomainError):
    code = "idempotency_key_in_use"
    http_status = 409
    message = "A request with this Idempotency-Key is still being processed; retry shortly."

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": "1"})


def fingerprint(*parts: Any) -> str:
    """A stable hash of what makes two requests "the same" (path, body...)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _claim(*, user_id: int, scope: str, key: str, print_: str, now: datetime):
    """Create the in-flight record, or explain why the request must not run.

    Returns (record, None) when this request should run, (None, (status, body))
    to replay a stored answer; raises the 422/409 errors.
    """
    if not key or len(key) > 255 or not key.isprintable():
        raise IdempotencyKeyInvalid()
    # One statement that commits by itself (a transaction of its own was three round
    # trips, and the ORM's insert more Python than the statement): the key already
    # taken is not an error, so nothing needs a savepoint.
    made = rawsql.insert(
        IdempotencyRecord(
            user_id=user_id,
            scope=scope,
            key=key,
            fingerprint=print_,
            state=IdempotencyRecord.State.IN_FLIGHT,
            started_at=now,
            expires_at=now + IDEMPOTENCY_TTL,
        ),
        unless_taken=True,  # by idempotency_one_per_fan_scope_key
    )
    if made is not None:
        return made, None
    record = IdempotencyRecord.objects.get(user_id=user_id, scope=scope, key=key)
    if record.expires_at <= now or (
        record.state == IdempotencyRecord.State.IN_FLIGHT
        and record.started_at <= now - IN_FLIGHT_TIMEOUT
    ):
        # Expired, or abandoned before anything committed: take it over atomically.
        taken = IdempotencyRecord.objects.filter(
            pk=record.pk, state=record.state, started_at=record.started_at
        ).update(
            fingerprint=print_,
            state=IdempotencyRecord.State.IN_FLIGHT,
            started_at=now,
            expires_at=now + IDEMPOTENCY_TTL,
            response_status=None,
            response_body=None,
        )
        if taken:
            record.refresh_from_db()
            return record, None
        record.refresh_from_db()
    if record.fingerprint != print_:
        raise IdempotencyKeyReused()
    if record.state == IdempotencyRecord.State.IN_FLIGHT:
        raise IdempotencyKeyInUse()
    return None, (record.response_status, record.response_body)


@dataclass(frozen=True)
class Answer:
    """What a retry-safe write answered: an HTTP status and the API body, stored or fresh."""

    status: int
    body: Any
    replayed: bool = False


def run_once(
    *,
    user_id: int,
    scope: str,
    key: str | None,
    print_: str,
    now: datetime,
    execute: Callable[[], tuple[int, Any]],
) -> Answer:
    """Run `execute` at most once per (fan, scope, key) and answer it.

    `execute` performs the write and returns (status, API body). A DomainError it
    raises is stored as its error envelope and replayed like any answer, unless the
    error is not `replayable` (the gate, a busy lock): then nothing is stored and it
    propagates, so a retry with the same key may succeed. A refusal leaves nothing
    of the write behind: with a key, `execute` runs in run_once's transaction, which
    rolls back in full; without one, in its own (services raise refusals from inside
    their atomic blocks). What a refusal keeps on purpose is its `aftermath`, run
    after that rollback (with the stored answer, given a key). Without a key,
    `execute` simply runs and errors propagate.

    Once the write and its answer have committed, the answer stands: a failure in
    after-commit work cannot turn it into an error or erase the stored answer.
    """
    if key is None:
        try:
            with _undoable():
                status, body = execute()
        except DomainError as exc:
            if exc.aftermath is not None:
                with transaction.atomic():
                    exc.aftermath()
            raise
        return Answer(status, body)
    record, replay = _claim(user_id=user_id, scope=scope, key=key, print_=print_, now=now)
    if replay is not None:
        return Answer(replay[0], replay[1], replayed=True)
    committed: list[bool] = []
    status: int = 500
    body: Any = None
    try:
        try:
            # The write and its answer, in one transaction. The write's own atomic
            # block nests in it without a savepoint where it can (payments): a
            # refusal rolls this transaction back in full, and is answered below.
            with transaction.atomic():
                # Registered first, so it runs first after COMMIT, before any other hook.
                transaction.on_commit(lambda: committed.append(True))
                status, body = execute()
                _finish(record, status, body)
        except DomainError as exc:
            if committed or not exc.replayable:
                raise
            # The refused write left nothing behind. Its answer is stored with what
            # the refusal keeps on purpose (its aftermath: a seat given back, a
            # failed attempt on record), in one transaction; with nothing to keep,
            # the answer's one statement commits by itself.
            status, body = exc.http_status, exc.body()
            if exc.aftermath is None:
                _finish(record, status, body)
            else:
                with transaction.atomic():
                    transaction.on_commit(lambda: committed.append(True))
                    exc.aftermath()
                    _finish(record, status, body)
    except BaseException:
        if committed:
            logger.exception("After-commit work failed for %s %s; the answer stands", scope, key)
            return Answer(status, body)
        IdempotencyRecord.objects.filter(pk=record.pk).delete()
        raise
    return Answer(status, body)


def _undoable() -> AbstractContextManager:
    """Around a write run without a key: inside a caller's transaction, a savepoint,
    so a refusal's rollback leaves that transaction usable for its aftermath; else
    nothing, and the write's own transaction (or its one statement) stands alone."""
    return transaction.atomic() if connection.in_atomic_block else nullcontext()


def _finish(record: IdempotencyRecord, status: int, body: Any) -> None:
    """The answer stored with the write, in its transaction (plain SQL: every keyed
    write runs it; the body adapted as the ORM adapts its JSON field)."""
    body_field = IdempotencyRecord._meta.get_field("response_body")
    with rawsql.cursor() as cursor:
        cursor.execute(
            f"UPDATE {IdempotencyRecord._meta.db_table}"
            " SET state = %s, response_status = %s, response_body = %s WHERE id = %s",
            [
                IdempotencyRecord.State.DONE,
                status,
                body_field.get_db_prep_save(body, connection),
                record.pk,
            ],
        )


def purge_expired(*, now: datetime) -> int:
    """Delete records past their TTL (a beat job keeps the table small)."""
    return IdempotencyRecord.objects.filter(expires_at__lte=now).delete()[0]
