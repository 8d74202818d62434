"""API-token authentication with the user cached per token in the shared cache.

DRF's TokenAuthentication reads the token and its user from PostgreSQL on every
request. Here the (user, token) pair is kept in the shared cache (Redis) under a
hash of the key, so a request authenticates with one cache read and no SQL.

Invalidation takes effect at once in every process, because the entry lives in
the one shared cache and is deleted after the commit that changes it: a token
deleted or rotated (logout, a new token), and any save of its user (deactivated,
password changed, renamed). A read of PostgreSQL that began before such a commit
cannot cache its old answer after it: the delete leaves a short "forgotten" mark
that refuses fills (`_fill`). With the cache down, every request reads PostgreSQL.
"""

from __future__ import annotations

import hashlib
import re

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from config import outbox, rawsql
from config.cache import (
    REDIS_DOWN,
    Reply,
    RoundTrip,
    redis_backend,
    redis_client,
    redis_eval,
    redis_failed,
    redis_sent,
    write_later,
)

TTL = 300  # seconds; invalidation is explicit, the TTL only bounds memory


def _cache_key(key: str) -> str:
    return "auth:token:" + hashlib.sha256(key.encode()).hexdigest()


# An Authorization header a fast lane reads itself (config.fastlane): DRF's keyword
# and a key as DRF makes them. Any other shape goes the full way, to DRF.
PLAIN_TOKEN = re.compile(r"Token ([0-9a-f]{40})")


class CachedTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key: str):
        return credentials(key)


def credentials(key: str, cached: Reply | None = None):
    """(user, token) for an API token key, as DRF's authenticate_credentials gives
    them (and with its errors): from the shared cache, else from PostgreSQL, then
    cached. `cached`: the cache read already made in a RoundTrip (credentials_later)."""
    cache_key = _cache_key(key)
    if cached is not None and not cached.down:
        hit = cache.decode(cached.value)
    else:
        hit = cache.get(cache_key)
    if hit is not None:
        return hit
    return credentials_uncached(key)  # raises for a bad key


# A forgotten key refuses to be filled for this long: a read of PostgreSQL that began
# before the token was deleted (or its user changed) may try to cache what it read
# after the forget, and that fill must not bring the old answer back.
GONE_TTL = 10  # seconds, far longer than a read and its fill

# KEYS: the entry, its "forgotten" mark. ARGV: the value, its TTL.
_FILL = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


GONE_SUFFIX = ":gone"


def _gone_key(key: str) -> str:
    return _cache_key(key) + GONE_SUFFIX


def _fill(key: str, value) -> None:
    """Cache (user, token) for the key, unless the key was forgotten in the last
    GONE_TTL seconds (checked and written in one step by Redis). On a fast lane the
    fill waits for the request's next round trip (config.cache.carry_writes): a
    fill that lands late, or not at all, only costs a later request a miss, and a
    forget in between still refuses it."""
    backend = redis_backend()
    client = redis_client(backend)
    if client is None:
        if backend is None:  # the embedded file cache (`make run`, one host)
            cache.set(_cache_key(key), value, TTL)
        return  # Redis is down: nothing is cached, every request reads PostgreSQL
    keys = [backend.make_key(_cache_key(key)), backend.make_key(_gone_key(key))]
    args = [backend.encode(value), TTL]
    if write_later(client, (_FILL, keys, args)):
        return  # in the request's next round trip (a lane's, see config.fastlane)
    try:
        redis_eval(client, _FILL, keys, args)
    except REDIS_DOWN as exc:
        redis_failed(exc)


def credentials_later(trip: RoundTrip, key: str) -> Reply:
    """The cache read of `credentials`, in a RoundTrip (with Redis as the cache)."""
    return trip.command("GET", trip.make_key(_cache_key(key)))


def credentials_cached(cached: Reply):
    """(user, token) from a credentials_later read, or None if the cache did not hold
    the key (or did not answer): for a caller that must not read PostgreSQL yet."""
    return None if cached.down else cache.decode(cached.value)


def _from_database(key: str):
    """DRF's TokenAuthentication.authenticate_credentials, the same answers and errors,
    in one plain SQL read (config.rawsql): a fan's first request of a sale (a
    line-up) misses the cache, and compiling the ORM query cost three times as much
    Python as running it."""
    return _checked(_row(key))


def _row(key: str) -> tuple:
    columns, source = credentials_sql("%s")
    with rawsql.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {source}", [key])
        return cursor.fetchone()


def credentials_sql(key: str) -> tuple[str, str]:
    """For a statement that authenticates the API token key `key` (a placeholder) as it
    reads what else it needs: DRF's (token, user) columns, and the FROM item that gives
    them, exactly one row, NULLs for a key that names no token (LEFT JOIN the
    statement's own tables to it). credentials_read takes the row. It reads
    PostgreSQL, never the cache, so a token deleted or a user deactivated is refused
    at once."""
    user_model = get_user_model()
    return (
        f"{rawsql.select(Token, 't')}, {rawsql.select(user_model, 'u')}",
        f"(SELECT 1 AS x) one LEFT JOIN ({Token._meta.db_table} t"
        f" JOIN {user_model._meta.db_table} u ON u.{user_model._meta.pk.column} = t.user_id)"
        f" ON t.key = {key}",
    )


def credentials_width() -> int:
    """How many columns credentials_sql's columns are: the statement's own follow."""
    return rawsql.width(Token) + rawsql.width(get_user_model())


def credentials_read(key: str, row: tuple):
    """(user, token) from a row that starts with credentials_sql's columns, with DRF's
    errors (AuthenticationFailed), then cached as `credentials` caches what it read."""
    found = _checked(row)
    _fill(key, found)
    return found


def credentials_uncached(key: str):
    """`credentials` for a caller whose cache read missed: PostgreSQL, then cached."""
    return credentials_read(key, _row(key))


def _checked(row: tuple | None):
    """DRF's rule on a credentials_sql row: an unknown key, or an inactive user, is
    refused as DRF refuses them."""
    if row is None or row[0] is None:
        raise exceptions.AuthenticationFailed(_("Invalid token."))
    token, user = rawsql.instances(row, Token, get_user_model())
    token.user = user
    if not user.is_active:
        raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
    return user, token


def active_user_sql(key: str) -> str:
    """A SELECT of the user id (`user_id`) the API token key `key` (a placeholder or
    an expression) names, if its user is active, else no row: DRF's rule, as
    _from_database applies it, for a statement that authenticates as it writes (the
    line-up's and the leave's: queueing.services._insert_waiting, _leave). It reads
    PostgreSQL, never the cache, so a token deleted or a user deactivated is refused
    at once."""
    user_model = get_user_model()
    active = user_model._meta.get_field("is_active").column
    return (
        f"SELECT t.user_id FROM {Token._meta.db_table} t"
        f" JOIN {user_model._meta.db_table} u ON u.{user_model._meta.pk.column} = t.user_id"
        f" WHERE t.key = {key} AND u.{active}"
    )


def forget_token_key(key: str) -> None:
    transaction.on_commit(lambda: _forget(key))


def _forget(key: str) -> None:
    """The entry goes from the shared cache, after the commit that changed it. With
    Redis, this is tried even while this process's breaker is open (one short
    timeout; a revocation is rare), and if Redis does not answer, the forget is kept
    in PostgreSQL (config.outbox) for beat's delivery: another process that can
    still reach Redis must not go on serving the entry for the rest of its TTL."""
    backend = redis_backend()
    if backend is None:  # the embedded file cache (`make run`, one host)
        cache.set(_gone_key(key), 1, GONE_TTL)
        cache.delete(_cache_key(key))
        return
    if not _forget_in_redis(backend, [_cache_key(key)]):
        outbox.keep("auth", [_cache_key(key)])


def _forget_in_redis(backend, cache_keys: list[str]) -> bool:
    """For each entry, in one round trip: its "forgotten" mark first (from now on no
    fill lands), then the entry itself. False if Redis did not answer."""
    calls: list[tuple] = []
    for cache_key in cache_keys:
        gone = backend.make_key(cache_key + GONE_SUFFIX)
        calls += [(None, "SET", gone, backend.encode(1), "EX", GONE_TTL),
                  (None, "DEL", backend.make_key(cache_key))]  # fmt: skip
    return redis_sent(redis_client(backend, even_if_down=True), calls)


@outbox.deliverer("auth")
def _deliver_forgets(cache_keys: list[str]) -> bool:
    """Beat's delivery of forgets kept in PostgreSQL (see _forget, config.outbox)."""
    backend = redis_backend()
    return backend is not None and _forget_in_redis(backend, cache_keys)


def _token_gone(sender, instance: Token, created: bool = False, **kwargs) -> None:
    if not created:
        forget_token_key(instance.key)


def _user_saved(sender, instance, created: bool, update_fields=None, **kwargs) -> None:
    if created or (update_fields is not None and set(update_fields) == {"last_login"}):
        return
    for key in Token.objects.filter(user_id=instance.pk).values_list("key", flat=True):
        forget_token_key(key)


def connect_signals() -> None:
    post_delete.connect(_token_gone, sender=Token, dispatch_uid="auth-cache-token-deleted")
    post_save.connect(_token_gone, sender=Token, dispatch_uid="auth-cache-token-saved")
    post_save.connect(_user_saved, sender=get_user_model(), dispatch_uid="auth-cache-user-saved")
