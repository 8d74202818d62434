"""Django's Redis cache backend, pooled, and failing soft when Redis is down.

Pooled: the stock client builds a new redis.Redis object (and its table of ~170
response callbacks) for every cache call; on the polling hot path that cost more
than the network round trip. Redis clients are thread-safe, so one per pool is enough.

Failing soft: Redis only ever *answers* here (poll pacing, shared estimates,
throttles); PostgreSQL decides. So when Redis does not answer, a read is a miss and
a write is skipped, and the caller falls back to the database: slower, never a 500
and never a hang (short socket timeouts in settings). After a failure this process
stops asking Redis for REDIS_RETRY_AFTER seconds, so an outage costs one timeout
per process per interval, not one per request; then it tries again by itself.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from hiredis import pack_command
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
REDIS_RETRY_AFTER = 2.0  # seconds


class PooledRedisCacheClient(RedisCacheClient):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}
        self._down_until = 0.0

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            pool = self._get_connection_pool(write)
            client = self._clients[index] = self._client(connection_pool=pool)
        return client

    @property
    def is_down(self) -> bool:
        return time.monotonic() < self._down_until

    def mark_down(self, exc: Exception) -> None:
        """Stop asking Redis for REDIS_RETRY_AFTER seconds (also used by queueing.mirror)."""
        self._down_until = time.monotonic() + REDIS_RETRY_AFTER
        logger.warning(
            "Redis did not answer (%s); using the database for %ss", exc, REDIS_RETRY_AFTER
        )

    def _soft(self, name: str, fallback: Any, *args: Any) -> Any:
        if self.is_down:
            return fallback
        try:
            return getattr(super(), name)(*args)
        except REDIS_DOWN as exc:
            self.mark_down(exc)
            return fallback

    def add(self, key, value, timeout):
        return self._soft("add", False, key, value, timeout)

    def get(self, key, default):
        return self._soft("get", default, key, default)

    def set(self, key, value, timeout):
        return self._soft("set", None, key, value, timeout)

    def touch(self, key, timeout):
        return self._soft("touch", False, key, timeout)

    def delete(self, key):
        return self._soft("delete", False, key)

    def get_many(self, keys):
        return self._soft("get_many", {}, keys)

    def has_key(self, key):
        return self._soft("has_key", False, key)

    def incr(self, key, delta):
        missing = object()
        result = self._soft("incr", missing, key, delta)
        if result is missing:
            raise ValueError(f"Key '{key}' not found (the cache is unavailable).")
        return result

    def set_many(self, data, timeout):
        return self._soft("set_many", [], data, timeout)

    def delete_many(self, keys):
        return self._soft("delete_many", None, keys)


class PooledRedisCache(RedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = PooledRedisCacheClient

    def decode(self, raw: bytes | None) -> Any:
        """A value read raw from Redis (a RoundTrip's GET of `make_key(key)`), as get()
        would give it (None: a miss)."""
        return None if raw is None else self._cache._serializer.loads(raw)

    def encode(self, value: Any) -> bytes | int:
        """`value` as set() would store it, for a script that writes it itself."""
        return self._cache._serializer.dumps(value)


def redis_backend() -> PooledRedisCache | None:
    """The shared cache when it is Redis (None on the embedded file cache)."""
    from django.core.cache import caches

    backend = caches["default"]
    return backend if isinstance(backend, PooledRedisCache) else None


def redis_client(backend: PooledRedisCache | None = None, *, even_if_down: bool = False):
    """The shared cache's Redis client, for what Django's cache API lacks (Lua scripts,
    hashes, sorted sets): None without Redis, or while this process knows it is down.
    Callers catch REDIS_DOWN and report it with redis_failed, which opens the breaker.
    A caller that has `redis_backend()` at hand passes it (one lookup fewer).

    `even_if_down`: the client even while the breaker is open, for a rare write that
    must not be skipped (an invalidation): it risks one short timeout."""
    backend = backend or redis_backend()
    if backend is None or (backend._cache.is_down and not even_if_down):
        return None
    return backend._cache.get_client(write=True)


def redis_failed(exc: Exception) -> None:
    backend = redis_backend()
    if backend is not None:
        backend._cache.mark_down(exc)


# --- Lua scripts ------------------------------------------------------------------

_scripts: dict[str, Any] = {}


def redis_script(client, text: str):
    """The redis-py Script for this Lua text, made once per process (register_script
    hashes the whole text on every call). Call it with `client=` the client to use."""
    script = _scripts.get(text)
    if script is None:
        script = _scripts[text] = client.register_script(text)
    return script


def redis_eval(client, text: str, keys: Sequence, args: Sequence) -> Any:
    """One Lua script's reply, by EVALSHA in one round trip (loaded first if Redis
    lacks it), sent as `_round_trip` sends (lighter than redis-py's Script call, which
    goes through the client's whole command path)."""
    return _pipelined(client, [(text, keys, args)])[0]


def redis_sent(client, calls: Sequence[tuple]) -> bool:
    """Writes (as redis_pipelined takes them) in one round trip: False if there is no
    client (no Redis, or the breaker is open) or Redis did not answer (the breaker
    then opens); an error reply is raised."""
    if client is None:
        return False
    try:
        _pipelined(client, calls)
    except REDIS_DOWN as exc:
        redis_failed(exc)
        return False
    return True


def redis_scripts_pipelined(client, calls: Sequence[tuple[str, Sequence, Sequence]]) -> list:
    """Run Lua scripts, each (text, keys, args), in order in one pipelined round trip.

    By EVALSHA alone: redis-py's own pipeline asks SCRIPT EXISTS before every
    execute, a second round trip. A script Redis lacks (after a restart or a SCRIPT
    FLUSH) is loaded then, and only the calls that failed for it are run again, in
    order, in a second round trip. Other errors are raised as from pipe.execute()."""
    return _pipelined(client, [(text, keys, args) for text, keys, args in calls])


def redis_pipelined(client, calls: Sequence[tuple]) -> list:
    """Lua scripts and plain commands in order in one pipelined round trip: each call
    is (text, keys, args) for a script, or (None, command...) for a command."""
    return _pipelined(client, calls)


# --- writes that wait for the request's next round trip ---------------------------


class _Carried(threading.local):
    client: Any = None  # the client whose next round trip carries `calls`
    calls: list[tuple] | None = None  # None: not within carry_writes()


_carried = _Carried()


@contextlib.contextmanager
def carry_writes(client) -> Iterator[None]:
    """Within it, a cache write that can wait (write_later) goes in this thread's next
    round trip on `client`, ahead of that trip's own commands, instead of in a round
    trip of its own; on the way out, writes still waiting are sent together. For a
    request's cache fills: a fan's first request (a line-up) fills the API token's
    entry, and the line-up's own round trip to the mirror carries it."""
    if client is None or _carried.calls is not None:
        yield
        return
    _carried.client, _carried.calls = client, []
    try:
        yield
    finally:
        calls, _carried.client, _carried.calls = _carried.calls, None, None
        if calls:  # no round trip came to carry them
            try:
                _pipelined(client, calls)
            except REDIS_DOWN as exc:
                redis_failed(exc)
            except ResponseError:  # a fill refused by Redis: never the request's failure
                logger.exception("a cache write carried by the request failed")


def write_later(client, call: tuple) -> bool:
    """Queue `call` (as redis_pipelined takes it) for the next round trip on `client`
    in this carry_writes(); False when there is none (the caller writes now). Its
    reply is not read: only a write whose failure changes nothing but a cache's
    warmth may wait (a fill, never an invalidation)."""
    if _carried.calls is None or client is not _carried.client:
        return False
    _carried.calls.append(call)
    return True


def _pipelined(client, calls: Sequence[tuple]) -> list:
    """Each call is (text, keys, args) for a Lua script, or (None, command...) for a
    plain command; see redis_scripts_pipelined. Writes waiting for this client's next
    round trip (write_later) go first, and their replies are dropped."""
    carried: list[tuple] = []
    if _carried.calls and client is _carried.client:
        carried, _carried.calls = _carried.calls, []
        calls = [*carried, *calls]

    def command(call: tuple) -> tuple:
        if call[0] is None:
            return call[1:]
        text, keys, args = call
        return ("EVALSHA", redis_script(client, text).sha, len(keys), *keys, *args)

    results = _round_trip(client, [command(call) for call in calls])
    missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
    if missing:
        for text in {calls[i][0] for i in missing}:
            redis_script(client, text).sha = client.script_load(text)
        again = _round_trip(client, [command(calls[i]) for i in missing])
        for i, result in zip(missing, again, strict=True):
            results[i] = result
    results = results[len(carried) :]
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


def _packed(conn, commands: list[tuple]) -> list[bytes]:
    """The commands in Redis's protocol, byte for byte as `conn.pack_commands` packs
    them, by hiredis's packer (C, one call per command). redis-py's own packer
    encodes each argument in Python (a poll's Lua call has about sixteen): packing
    here took 4 % of a poll's instructions and 13 % of a first line-up's
    (bench.instructions, docs/performance.md round ten). What hiredis does not
    take as redis-py would goes redis-py's way, with redis-py's errors: a command
    name of two words ("CONFIG GET", which redis-py splits), and any argument
    hiredis refuses (a bool, None, a list: TypeError; redis-py raises DataError)."""
    try:
        if not all(_one_word(command[0]) for command in commands):
            raise TypeError("a command name of several words")
        return [b"".join([pack_command(command) for command in commands])]
    except TypeError:
        return conn.pack_commands(commands)


def _one_word(name: str | bytes) -> bool:
    return (b" " if isinstance(name, bytes) else " ") not in name


def _round_trip(client, commands: list[tuple]) -> list:
    """The commands sent together on one of the client's pooled connections, and
    their replies, as redis-py's pipeline (transaction=False) gives them with
    raise_on_error=False: an error reply is its exception, in its place. Without
    the pipeline's own machinery, which cost a third more Python than the round
    trip itself. A connection that failed mid-trip is dropped, never reused
    half-read; a pooled connection that Redis closed (a restart) is tried once
    more on a new one."""
    pool = client.connection_pool
    for attempt in (1, 2):
        conn = pool.get_connection()
        try:
            conn.send_packed_command(_packed(conn, commands))
            results = []
            for command in commands:
                try:
                    results.append(Redis.parse_response(client, conn, command[0]))
                except ResponseError as exc:
                    results.append(exc)
            return results
        except REDIS_DOWN as exc:
            conn.disconnect()
            # A closed connection is tried again; a timeout is not (Redis is slow or
            # unreachable: the caller falls back at once and the breaker opens).
            if attempt == 2 or not isinstance(exc, RedisConnectionError):
                raise
        except BaseException:  # anything else mid-trip: the replies may be half-read
            conn.disconnect()
            raise
        finally:
            pool.release(conn)
    raise AssertionError("unreachable")  # pragma: no cover


# --- one round trip for reads that several owners need ------------------------------


class Reply:
    """One read's reply in a RoundTrip: `value` once the trip has run, or `down`
    (Redis did not answer, or there is no Redis): the reader then does what its own
    read does when Redis is down."""

    __slots__ = ("value", "down")

    def __init__(self) -> None:
        self.value: Any = None
        self.down = True


class RoundTrip:
    """The reads one request needs from several owners, sent in one pipelined round
    trip. Each owner adds its own read (its key layout and its decoding stay with
    it) and keeps the Reply; `run()` sends them all; a failure leaves every reply
    `down` and opens the breaker, as a failed read of its own would."""

    def __init__(self) -> None:
        self.backend = redis_backend()
        self.client = redis_client(self.backend)
        self._calls: list[tuple] = []
        self._replies: list[Reply] = []

    def make_key(self, key: str) -> str:
        """The shared cache's full key for `key`, as its get() and set() use it."""
        return key if self.backend is None else self.backend.make_key(key)

    def command(self, *command: Any) -> Reply:
        return self._add((None, *command))

    def script(self, text: str, keys: Sequence, args: Sequence) -> Reply:
        return self._add((text, keys, args))

    def _add(self, call: tuple) -> Reply:
        reply = Reply()
        if self.client is not None:
            self._calls.append(call)
            self._replies.append(reply)
        return reply

    def run(self) -> None:
        if not self._calls:
            return
        try:
            results = _pipelined(self.client, self._calls)
        except REDIS_DOWN as exc:
            redis_failed(exc)
            return
        for reply, value in zip(self._replies, results, strict=True):
            reply.value, reply.down = value, False
