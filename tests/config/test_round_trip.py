"""config.cache.RoundTrip: reads several owners need, in one pipelined round trip
(issue 13: the seat map's API token, seats and turn), and what happens when Redis
lacks a script, is down, or is not there at all."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import override_settings

from config.cache import RoundTrip, redis_client, redis_script
from tests.config.test_fastlane import round_trips
from tests.config.test_redis_down import DOWN

INCR_BY_TWO = "return redis.call('INCRBY', KEYS[1], 2)"


@pytest.fixture
def keys():
    names = [cache.make_key(f"test:trip:{n}") for n in ("a", "b")]
    yield names
    redis_client().delete(*names)


def test_commands_and_scripts_go_in_one_round_trip(keys, monkeypatch):
    first, second = keys
    redis_client().set(first, b"x")
    # The script is known to Redis (on a fresh Redis, the first trip also loads it:
    # the next test).
    redis_client().script_load(INCR_BY_TWO)
    sent = round_trips(monkeypatch)
    trip = RoundTrip()
    got = trip.command("GET", first)
    added = trip.script(INCR_BY_TWO, [second], [])
    assert got.down and added.down  # nothing is known before the trip runs
    trip.run()
    assert len(sent) == 1
    assert (got.value, got.down, added.value, added.down) == (b"x", False, 2, False)


def test_a_script_redis_lacks_is_loaded_and_the_commands_are_not_run_again(keys):
    first, second = keys
    client = redis_client()
    redis_script(client, INCR_BY_TWO).sha = "0" * 40  # as if Redis had restarted
    trip = RoundTrip()
    counted = trip.command("INCR", first)
    added = trip.script(INCR_BY_TWO, [second], [])
    trip.run()
    assert (counted.value, added.value) == (1, 2)
    assert client.get(first) == b"1"  # the command ran once
    assert redis_script(client, INCR_BY_TWO).sha != "0" * 40


def test_with_redis_down_every_reply_is_down_and_the_breaker_opens():
    with override_settings(CACHES=DOWN):
        trip = RoundTrip()
        replies = [trip.command("GET", "a"), trip.script(INCR_BY_TWO, ["b"], [])]
        trip.run()  # no error: the readers fall back as their own reads would
        assert all(reply.down for reply in replies)
        assert redis_client() is None  # the breaker: no more tries for a while


def test_without_redis_the_trip_sends_nothing():
    local = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with override_settings(CACHES=local):
        trip = RoundTrip()
        reply = trip.command("GET", "a")
        trip.run()
        assert reply.down and trip.client is None


def test_replies_are_shaped_as_redis_py_shapes_them_and_an_error_stays_in_its_place(keys):
    """The round trip sends the commands itself (no redis-py pipeline), so each reply
    goes through redis-py's own response callback, and an error reply is returned in
    its place while the commands after it still run (callers raise it: the next
    test's neighbours)."""
    from config.cache import _round_trip

    first, second = keys
    written, wrong, counted = _round_trip(
        redis_client(), [("SET", first, b"1"), ("HGET", first, "f"), ("INCR", second)]
    )
    assert written is True  # SET's callback, as client.set() returns it
    assert isinstance(wrong, Exception) and "WRONGTYPE" in str(wrong)
    assert counted == 1  # ran after the error


def test_a_pooled_connection_redis_closed_is_replaced_not_reported_down(keys):
    """After a Redis restart (or a killed client), the pool still holds the dead
    connection: the round trip tries once more on a new one, so no request falls
    back to PostgreSQL and no breaker opens for it. The control: a second failure
    is reported, as Redis being really down."""
    from config.cache import _round_trip

    first, _ = keys
    client = redis_client()
    [own_id] = _round_trip(client, [("CLIENT", "ID")])
    killer = redis_client().connection_pool.make_connection()
    killer.send_command("CLIENT", "KILL", "ID", own_id)
    assert killer.read_response() == 1
    killer.disconnect()
    assert _round_trip(client, [("SET", first, b"v"), ("GET", first)]) == [True, b"v"]
    [new_id] = _round_trip(client, [("CLIENT", "ID")])
    assert new_id != own_id


def test_a_trip_that_fails_twice_raises_and_leaves_no_half_used_connection(monkeypatch):
    from redis.connection import AbstractConnection
    from redis.exceptions import ConnectionError as RedisConnectionError

    from config.cache import _round_trip

    client = redis_client()
    tries: list = []

    def fail(self, command, check_health=True):
        tries.append(self)
        raise RedisConnectionError("gone")

    with monkeypatch.context() as patch:
        patch.setattr(AbstractConnection, "send_packed_command", fail)
        with pytest.raises(RedisConnectionError):
            _round_trip(client, [("GET", "x")])
    assert len(tries) == 2  # once more on a fresh connection, then reported
    assert all(conn._sock is None for conn in tries)  # each dropped, not reused half-read


def test_writes_carried_go_ahead_of_the_next_round_trip_and_their_replies_are_dropped(
    keys, monkeypatch
):
    from config.cache import carry_writes, redis_pipelined, write_later

    first, second = keys
    client = redis_client()
    sent = round_trips(monkeypatch)
    with carry_writes(client):
        assert write_later(client, (None, "SET", first, b"carried"))
        assert client.get(first) is None or sent  # nothing sent yet
        sent.clear()
        assert redis_pipelined(client, [(None, "INCR", second)]) == [1]  # its own reply only
        assert len(sent) == 1
    assert len(sent) == 1  # nothing left to send on the way out
    assert client.get(first) == b"carried"


def test_writes_no_round_trip_carried_are_sent_on_the_way_out(keys):
    from config.cache import carry_writes, write_later

    first, _ = keys
    client = redis_client()
    with carry_writes(client):
        write_later(client, (None, "SET", first, b"late"))
    assert client.get(first) == b"late"
    assert not write_later(client, (None, "SET", first, b"x"))  # outside: write it now


def test_a_failed_carried_write_is_dropped_and_never_fails_the_carrier(keys):
    from config.cache import carry_writes, redis_pipelined, write_later

    first, second = keys
    client = redis_client()
    client.set(first, b"a string")
    with carry_writes(client):
        write_later(client, (None, "HSET", first, "f", "v"))  # WRONGTYPE
        assert redis_pipelined(client, [(None, "INCR", second)]) == [1]


# --- the packer ----------------------------------------------------------------------

PACKED_ALIKE = [
    [("GET", "auth:token:abc")],
    [("SET", b"k", b"\x00\xff\r\n", "EX", 300), ("GET", b"k")],
    [("EVALSHA", "f" * 40, 2, "a", "b", 1.5, -3, 0, "é", "", b"")],
    [("ZADD", "z", 0.1, "m"), ("ZCOUNT", "z", "-inf", "+inf"), ("X", 1e20, float("inf"))],
    [("SET", "big", b"v" * 20_000)],  # past redis-py's buffer cutoff (6,000 bytes)
    [("X", 12345678901234567890, -(2**70))],
    [("SET", "k", memoryview(b"v"))],  # redis-py sends it as its own buffer; same bytes
]


@pytest.mark.parametrize("commands", PACKED_ALIKE)
def test_commands_are_packed_byte_for_byte_as_redis_py_packs_them(commands):
    """config.cache packs a round trip's commands with hiredis's packer (C), not
    redis-py's (Python, argument by argument). The control is redis-py's own."""
    from config.cache import _packed

    conn = redis_client().connection_pool.get_connection()
    try:
        ours, theirs = _packed(conn, commands), conn.pack_commands(commands)
    finally:
        redis_client().connection_pool.release(conn)
    assert b"".join(ours) == b"".join(theirs)
    assert len(ours) == 1  # hiredis packed it: one buffer, however long


@pytest.mark.parametrize(
    "commands",
    [
        [("GET", "k"), ("CONFIG GET", "maxmemory")],  # redis-py splits the name in two
        [(b"CONFIG GET", b"maxmemory")],
    ],
)
def test_what_hiredis_would_pack_otherwise_goes_redis_py_s_way(commands):
    from config.cache import _packed

    conn = redis_client().connection_pool.get_connection()
    try:
        assert _packed(conn, commands) == conn.pack_commands(commands)
    finally:
        redis_client().connection_pool.release(conn)


@pytest.mark.parametrize("bad", [True, None, [1]])
def test_an_argument_redis_cannot_take_is_refused_with_redis_py_s_error(bad, keys):
    """hiredis refuses it with a TypeError; redis-py's DataError is what callers knew."""
    from redis.exceptions import DataError

    trip = RoundTrip()
    trip.command("SET", keys[0], bad)
    with pytest.raises(DataError):
        trip.run()
    assert redis_client().get(keys[0]) is None  # nothing was sent
