"""Cache invalidations that could not reach Redis, kept in PostgreSQL until beat
delivers them.

A cached answer is only as current as its invalidation: when the process that
changed the data cannot reach Redis (a network fault of its own, or its breaker
open after a blip), other processes that can still reach Redis would go on
serving the old answer until it expires. So such an invalidation is kept here,
written by the process that failed to send it, and beat's
`config.deliver_pending_forgets` sends it every 2 s, once Redis answers.

Each owner registers its kind of invalidation (`deliverer`): the API token's entry
(config.auth) and a date's seat map (concerts.seatcache). A row holds the owner's
own key for it (a hash of the token; a date's id), never a secret.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable

from django.db import DatabaseError
from django.utils import timezone

from config.models import PendingForget

logger = logging.getLogger(__name__)

# kind -> delivers the keys to Redis in one round trip; False if Redis did not answer
_deliverers: dict[str, Callable[[list[str]], bool]] = {}


def deliverer(kind: str) -> Callable:
    """Registers the function that delivers `kind`'s invalidations (a decorator)."""

    def register(deliver: Callable[[list[str]], bool]) -> Callable[[list[str]], bool]:
        _deliverers[kind] = deliver
        return deliver

    return register


def keep(kind: str, keys: Iterable[str]) -> None:
    """Keep invalidations for beat to deliver (one INSERT; outside a transaction, as
    after the commit that made them, it commits at once)."""
    now = timezone.now()
    try:
        PendingForget.objects.bulk_create(
            [PendingForget(kind=kind, cache_key=key, created_at=now) for key in keys]
        )
    except DatabaseError:  # after the commit it follows: never fail the request for it
        logger.exception("could not keep a %s invalidation; its cache may lag", kind)


def deliver(*, batch: int = 1000) -> int:
    """Beat's job: deliver the oldest kept invalidations, one round trip per kind, and
    drop them. Returns how many rows went (0 while Redis is down: they wait for the
    next run; a kind no process has registered waits too).

    One delivery of a key covers every row kept for it before this run read the
    table: each such row was written after the commit it invalidates, so that
    commit precedes the delivery. So a backlog from an outage (a bump per hold, for
    a few dates) goes in one run, not one batch of rows per run."""
    newest = PendingForget.objects.order_by("-pk").values_list("pk", flat=True).first()
    if newest is None:
        return 0
    rows = PendingForget.objects.order_by("pk").values_list("kind", "cache_key")[:batch]
    by_kind: dict[str, set[str]] = defaultdict(set)
    for kind, key in rows:
        by_kind[kind].add(key)
    delivered = 0
    for kind, keys in by_kind.items():
        send = _deliverers.get(kind)
        if send is not None and send(sorted(keys)):
            delivered += PendingForget.objects.filter(
                kind=kind, cache_key__in=keys, pk__lte=newest
            ).delete()[0]
    return delivered
