"""The fast lane (config/fastlane.py, issue 13): a plain poll skips DRF's dispatch and
most of the middleware, and answers exactly what the full way answers.

Each comparison runs one WSGI request the full way (Django's WSGIHandler, DRF's
view) and the same request through the lane, from the same state, and compares the
status, every header and the body."""

from __future__ import annotations

import io
import json

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signals
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token

from concerts.models import Reservation
from config import fastlane
from queueing import api as queueing_api
from queueing import mirror, services
from queueing.models import QueueToken, WaitingRoom
from tests.conftest import clear_own_cache_keys
from tests.factories import ConcertFactory, UserFactory
from tests.queueing.conftest import counted

pytestmark = pytest.mark.django_db(transaction=True)


class Fallback:
    """Stands for the full way behind the lane, and counts what reached it."""

    def __init__(self) -> None:
        self.app = WSGIHandler()
        self.calls = 0

    def __call__(self, environ, start_response):
        self.calls += 1
        return self.app(environ, start_response)


def run(app, environ: dict) -> tuple[str, dict, bytes]:
    out = {}

    def start_response(status, headers, exc_info=None):
        out["status"], out["headers"] = status, headers

    environ = dict(environ)
    if isinstance(environ.get("wsgi.input"), io.BytesIO):  # a body: each run reads it anew
        environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].getvalue())
    body = app(environ, start_response)
    content = b"".join(body)
    body.close()  # as a WSGI server does: Django sends request_finished
    return out["status"], dict(out["headers"]), content


@pytest.fixture
def ways():
    fallback = Fallback()
    return fallback, fastlane.FastLane(fallback, fastlane.lanes())


@pytest.fixture
def line():
    """Four fans waiting (capacity 0), issued through the service, so mirrored."""
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=0)
    now = timezone.now()
    return concert, [
        services.queue_token_issue(user=UserFactory(), concert_id=concert.id, now=now)[0]
        for _ in range(4)
    ]


def poll_env(key: str, **extra) -> dict:
    return (
        RequestFactory(HTTP_HOST="testserver")
        .get("/api/v1/queue", HTTP_X_QUEUE_TOKEN=key, **extra)
        .environ
    )


def too_soon(key: str) -> None:
    """Set the token's next poll 30.5 s away: both ways answer 429 with Retry-After 31,
    unless half a second passes between them."""
    cache.set(services._poll_key(key), int(timezone.now().timestamp() * 1000) + 30_500, 60)


def forget_poll(key: str) -> None:
    """Undo a poll's pacing, so the same poll can be asked again the other way."""
    cache.delete(services._poll_key(key))


def same_answer(ways, environ: dict, *, key: str | None = None) -> tuple[str, dict, bytes]:
    """Ask the full way, then (the poll's pacing undone) the lane: the answers match."""
    fallback, lane = ways
    full = run(fallback.app, environ)
    if key:
        forget_poll(key)
    calls = fallback.calls
    fast = run(lane, environ)
    assert fallback.calls == calls, "the lane passed it on"
    assert fast == full
    return fast


def test_every_middleware_is_either_on_the_lane_or_skipped_for_a_reason():
    lane, skipped = list(fastlane.LANE_MIDDLEWARE), set(fastlane.SKIPPED)
    assert not set(lane) & skipped
    assert set(lane) | skipped == set(settings.MIDDLEWARE)
    assert lane == [m for m in settings.MIDDLEWARE if m in lane]  # in the same order


def test_the_service_takes_the_lane_by_default():
    from config import wsgi

    assert settings.FAST_LANE
    assert isinstance(wsgi.application, fastlane.FastLane)


def test_a_waiting_and_an_active_poll_answer_the_same_either_way(ways, line):
    concert, tokens = line
    status, headers, body = same_answer(ways, poll_env(tokens[2].key), key=tokens[2].key)
    assert status == "200 OK" and b'"position":3' in body
    assert headers["X-Frame-Options"] == "DENY" and headers["Allow"] == "GET, DELETE, HEAD, OPTIONS"
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=1)
    services.queue_admit_next(concert_id=concert.id, now=timezone.now())
    status, _, body = same_answer(ways, poll_env(tokens[0].key), key=tokens[0].key)
    assert status == "200 OK" and b'"status":"active"' in body


def test_an_ended_turn_answers_the_same_either_way(ways, line):
    _, tokens = line
    services.queue_token_leave(token=tokens[1], now=timezone.now())
    status, _, body = same_answer(ways, poll_env(tokens[1].key), key=tokens[1].key)
    assert status == "200 OK" and b'"status":"left"' in body


def test_an_early_poll_answers_the_same_429_either_way_with_no_sql(ways, line):
    _, tokens = line
    key = tokens[3].key
    too_soon(key)
    with CaptureQueriesContext(connection) as queries:
        status, headers, body = same_answer(ways, poll_env(key))
    assert status.startswith("429") and headers["Retry-After"] == "31"
    assert b'"poll_too_soon"' in body
    assert len(queries) == 0


def test_unknown_and_malformed_tokens_answer_the_same_404_either_way(ways, line):
    for key in ("a" * 64, "not-a-token"):
        status, _, body = same_answer(ways, poll_env(key))
        assert status.startswith("404") and b'"queue_token_not_found"' in body


def test_a_mirrored_poll_on_the_lane_runs_no_sql(ways, line):
    _, tokens = line
    _, lane = ways
    run(lane, poll_env(tokens[0].key))  # the shared pacing estimates are warm
    with CaptureQueriesContext(connection) as queries:
        status, _, _ = run(lane, poll_env(tokens[1].key))
    assert status == "200 OK" and len(queries) == 0


def test_without_the_mirror_the_lane_reads_postgresql_and_answers_the_same(ways, line):
    _, tokens = line
    clear_own_cache_keys()  # Redis restarted: no mirror until beat rebuilds it
    assert not mirror.is_ready()
    with CaptureQueriesContext(connection) as queries:
        status, _, body = same_answer(ways, poll_env(tokens[2].key), key=tokens[2].key)
    assert status == "200 OK" and b'"position":3' in body
    assert len(queries) > 0


# --- a poll with an API token (a client that signs every request) ------------------


@pytest.fixture
def signed(leavers):
    """A fan in line with an API token the cache holds (the fan's earlier requests
    left it there): (concert, auth, token, another fan's token)."""
    from config.auth import credentials

    concert, [(auth, token), (_, other), _] = leavers
    credentials(auth[6:])
    return concert, auth, token, other


def test_a_signed_poll_answers_the_same_either_way_without_sql(ways, signed, monkeypatch):
    """On the lane: the API token's cache read, then the poll's read (two round trips
    to Redis, as the full way makes them, in the other order) and no SQL; the same
    answer as DRF's view."""
    _, auth, token, other = signed
    fallback, lane = ways
    run(lane, poll_env(other.key))  # the shared pacing estimates are warm
    status, headers, body = same_answer(
        ways, poll_env(token.key, HTTP_AUTHORIZATION=auth), key=token.key
    )
    assert status == "200 OK" and b'"position":5' in body and headers["Retry-After"]
    forget_poll(token.key)
    sent = round_trips(monkeypatch)
    with CaptureQueriesContext(connection) as queries:
        assert run(lane, poll_env(token.key, HTTP_AUTHORIZATION=auth))[0] == "200 OK"
    assert len(sent) == 2 and b"auth:token:" in b"".join(sent[0]) and len(queries) == 0
    assert fallback.calls == 0


def test_signed_poll_refusals_answer_the_same_either_way_on_the_lane(ways, signed):
    """Early (429, no SQL), another fan's token (403, after the poll, as DRF's view
    checks the owner), no such token (404)."""
    _, auth, token, other = signed
    fallback, _ = ways
    too_soon(token.key)
    with CaptureQueriesContext(connection) as queries:
        status, headers, body = same_answer(ways, poll_env(token.key, HTTP_AUTHORIZATION=auth))
    assert status.startswith("429") and b'"poll_too_soon"' in body and len(queries) == 0
    status, _, body = same_answer(ways, poll_env(other.key, HTTP_AUTHORIZATION=auth), key=other.key)
    assert status.startswith("403") and b'"queue_token_invalid"' in body
    status, _, body = same_answer(ways, poll_env("a" * 43, HTTP_AUTHORIZATION=auth))
    assert status.startswith("404") and b'"queue_token_not_found"' in body
    assert fallback.calls == 0  # the lane answered each itself


def test_a_signed_poll_with_a_key_the_cache_lacks_goes_the_full_way_and_fills_it(ways, leavers):
    """DRF authenticates a poll lazily, after it: an early poll is refused with no SQL
    even for a key the cache lacks. So the lane passes such a key on with the poll
    untouched (not paced: the full way must not find it early), and the full way
    reads the key from PostgreSQL, after the poll, and caches it: the fan's next poll
    takes the lane."""
    _, [(auth, token), (_, other), _] = leavers
    fallback, lane = ways
    run(lane, poll_env(other.key))  # the shared pacing estimates are warm: reads pace
    cache.delete(auth_cache_key(auth))
    status, _, body = run(lane, poll_env(token.key, HTTP_AUTHORIZATION=auth))
    assert status == "200 OK" and b'"position":5' in body and fallback.calls == 1
    assert cache.get(auth_cache_key(auth)) is not None
    forget_poll(token.key)
    assert run(lane, poll_env(token.key, HTTP_AUTHORIZATION=auth))[0] == "200 OK"
    assert fallback.calls == 1
    cache.delete(auth_cache_key(auth))
    with CaptureQueriesContext(connection) as queries:  # early: refused before the key
        status, _, _ = run(lane, poll_env(token.key, HTTP_AUTHORIZATION=auth))
    assert status.startswith("429") and len(queries) == 0 and fallback.calls == 2


@pytest.mark.parametrize("why", ["unknown key", "logged out"])
def test_a_signed_poll_with_a_bad_key_is_refused_401_the_full_way(ways, signed, why):
    _, auth, token, _ = signed
    fallback, lane = ways
    if why == "logged out":
        Token.objects.filter(key=auth[6:]).delete()  # its cache entry goes on commit
    else:
        auth = "Token " + "0" * 40
    status, headers, _ = run(lane, poll_env(token.key, HTTP_AUTHORIZATION=auth))
    assert status.startswith("401") and headers["WWW-Authenticate"] == "Token"
    assert fallback.calls == 1


def test_a_signed_poll_with_redis_down_goes_the_full_way_and_reads_postgresql(ways, signed):
    from django.test import override_settings

    from tests.config.test_redis_down import DOWN

    _, auth, token, _ = signed
    fallback, lane = ways
    with override_settings(CACHES=DOWN):
        status, _, body = run(lane, poll_env(token.key, HTTP_AUTHORIZATION=auth))
    assert status == "200 OK" and b'"position":5' in body and fallback.calls == 1


def test_security_headers_and_redirects_are_the_same_either_way(ways, line, settings):
    _, tokens = line
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_SSL_REDIRECT = True
    fallback = Fallback()  # the middleware reads these settings when it is made
    ways = (fallback, fastlane.FastLane(fallback, fastlane.lanes()))
    key = tokens[0].key
    _, headers, _ = same_answer(ways, poll_env(key, HTTP_X_FORWARDED_PROTO="https"), key=key)
    assert headers["Strict-Transport-Security"].startswith("max-age=3600")
    status, headers, _ = same_answer(ways, poll_env(key))  # plain http: redirected
    assert status.startswith("301") and headers["Location"].startswith("https://")


def test_control_without_the_middleware_chain_the_answers_differ(ways, line, monkeypatch):
    _, tokens = line
    monkeypatch.setattr(fastlane, "LANE_MIDDLEWARE", ())
    fallback = Fallback()
    bare_lane = fastlane.FastLane(fallback, fastlane.lanes())
    full = run(fallback.app, poll_env(tokens[0].key))
    forget_poll(tokens[0].key)
    fast = run(bare_lane, poll_env(tokens[0].key))
    assert fast[0] == full[0] and fast[2] == full[2]
    assert fast[1] != full[1] and "X-Frame-Options" not in fast[1]


@pytest.mark.parametrize(
    "extra",
    [
        {"HTTP_AUTHORIZATION": "Token x"},  # a signed-in poller must own the token
        {"HTTP_COOKIE": f"{settings.SESSION_COOKIE_NAME}=abc"},
        {"HTTP_ACCEPT": "text/html"},  # DRF answers 406
        {"QUERY_STRING": "format=json"},
        {"REQUEST_METHOD": "HEAD"},
        {"REQUEST_METHOD": "DELETE"},
    ],
)
def test_anything_but_a_plain_get_goes_the_full_way(ways, line, extra):
    fallback, lane = ways
    _, tokens = line
    run(lane, {**poll_env(tokens[0].key), **extra})
    assert fallback.calls == 1


def test_a_host_django_refuses_gets_the_same_400_either_way(ways, line):
    _, tokens = line
    status, _, _ = same_answer(ways, poll_env(tokens[0].key, HTTP_HOST="evil.example"))
    assert status.startswith("400")


def test_other_paths_go_the_full_way(ways):
    fallback, lane = ways
    status, _, _ = run(lane, RequestFactory(HTTP_HOST="testserver").get("/healthz").environ)
    assert fallback.calls == 1 and status == "200 OK"


def test_a_lane_request_has_djangos_request_lifecycle(ways, line):
    _, tokens = line
    _, lane = ways
    seen = []

    def started(**kwargs):
        seen.append("started")

    def finished(**kwargs):
        seen.append("finished")

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:
        run(lane, poll_env(tokens[0].key))
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    assert seen == ["started", "finished"]


def test_a_poll_from_the_lane_is_paced_like_any_other(ways, line):
    _, tokens = line
    _, lane = ways
    assert run(lane, poll_env(tokens[1].key))[0] == "200 OK"
    assert run(lane, poll_env(tokens[1].key))[0].startswith("429")
    assert QueueToken.objects.get(pk=tokens[1].pk).status == "waiting"


# --- the seat map's lane: an admitted fan's API token and queue token -------------


def gated_env(path: str, *, auth: str | None, queue_key: str | None, **extra) -> dict:
    """A GET's WSGI environ, with the fan's API token and turn if given."""
    headers = {}
    if auth:
        headers["HTTP_AUTHORIZATION"] = auth
    if queue_key:
        headers["HTTP_X_QUEUE_TOKEN"] = queue_key
    return RequestFactory(HTTP_HOST="testserver").get(path, **headers, **extra).environ


def seats_env(schedule_id: int, *, auth: str | None, queue_key: str | None, **extra) -> dict:
    return gated_env(
        f"/api/v1/schedules/{schedule_id}/seats", auth=auth, queue_key=queue_key, **extra
    )


@pytest.fixture
def booking(concert, schedule, fan, other_fan):
    """An admitted fan with an API token, on a date where another fan holds seat 2."""
    from tests.conftest import admit, hold_seat

    hold_seat(other_fan, schedule, 2)
    api_token, _ = Token.objects.get_or_create(user=fan)
    return schedule, f"Token {api_token.key}", admit(fan, concert.id).key


def test_the_seat_map_answers_the_same_either_way(ways, booking):
    schedule, auth, key = booking
    status, headers, body = same_answer(ways, seats_env(schedule.id, auth=auth, queue_key=key))
    assert status == "200 OK" and b'"number":2,' not in body and b'"number":3,' in body
    assert headers["Allow"] == "GET, HEAD, OPTIONS" and headers["ETag"]
    status, headers, body = same_answer(
        ways, seats_env(schedule.id, auth=auth, queue_key=key, HTTP_IF_NONE_MATCH=headers["ETag"])
    )
    assert status.startswith("304") and body == b""


def test_a_warm_seat_map_on_the_lane_runs_no_sql(ways, booking):
    schedule, auth, key = booking
    _, lane = ways
    run(lane, seats_env(schedule.id, auth=auth, queue_key=key))  # caches warm
    with CaptureQueriesContext(connection) as queries:
        status, _, _ = run(lane, seats_env(schedule.id, auth=auth, queue_key=key))
    assert status == "200 OK" and len(queries) == 0


def round_trips(monkeypatch) -> list:
    """Counts the Redis round trips this process makes (one packed send each: a single
    command, or a whole pipeline)."""
    from redis.connection import AbstractConnection

    sent: list = []
    real = AbstractConnection.send_packed_command

    def send(self, command, check_health=True):
        sent.append(command)
        return real(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", send)
    return sent


def test_a_warm_seat_map_on_the_lane_takes_one_redis_round_trip(ways, booking, monkeypatch):
    """The API token's user, the date's seats and the fan's turn, read together. The
    control: the full way reads the same three one by one."""
    schedule, auth, key = booking
    fallback, lane = ways
    run(lane, seats_env(schedule.id, auth=auth, queue_key=key))  # caches warm
    sent = round_trips(monkeypatch)
    assert same_answer(ways, seats_env(schedule.id, auth=auth, queue_key=key))[0] == "200 OK"
    full_way, on_the_lane = sent[:3], sent[3:]
    assert len(full_way) == 3 and len(on_the_lane) == 1


def test_a_cold_api_token_on_the_lane_is_read_from_postgresql_and_cached(ways, booking):
    schedule, auth, key = booking
    fallback, lane = ways
    cache.delete(auth_cache_key(auth))
    with CaptureQueriesContext(connection) as queries:
        status, _, _ = run(lane, seats_env(schedule.id, auth=auth, queue_key=key))
    assert status == "200 OK" and fallback.calls == 0
    assert any("authtoken_token" in q["sql"] for q in queries.captured_queries)
    assert cache.get(auth_cache_key(auth))[0].pk == Token.objects.get(key=auth[6:]).user_id


def auth_cache_key(auth: str) -> str:
    from config.auth import _cache_key

    return _cache_key(auth[len("Token ") :])


def gated_read(which: str, booking, *, queue_key: str | None, unknown: bool = False) -> dict:
    """The seat map's or the dates' request for the booking fan (`unknown`: for a date
    or a concert that is not there)."""
    schedule, auth, _ = booking
    if which == "seats":
        return seats_env(10**9 if unknown else schedule.id, auth=auth, queue_key=queue_key)
    return dates_env(10**20 if unknown else schedule.concert_id, auth=auth, queue_key=queue_key)


@pytest.mark.parametrize(
    "which, unknown",
    [
        ("seats", (b"404", b'"schedule_not_found"')),
        ("dates", (b"403", b'"queue_token_wrong_concert"')),
    ],
)
def test_gate_refusals_answer_the_same_either_way(
    ways, booking, concert, other_fan, which, unknown
):
    from queueing.models import QueueToken as Token_

    _, _, key = booking
    status, _, body = same_answer(ways, gated_read(which, booking, queue_key=None))
    assert status.startswith("403") and b'"queue_token_missing"' in body
    others = Token_.objects.get(user=other_fan, concert=concert).key
    status, _, body = same_answer(ways, gated_read(which, booking, queue_key=others))
    assert status.startswith("403") and b'"queue_token_invalid"' in body
    status, _, body = same_answer(ways, gated_read(which, booking, queue_key=key, unknown=True))
    assert status.encode().startswith(unknown[0]) and unknown[1] in body


@pytest.mark.parametrize("which", ["seats", "dates"])
def test_an_ended_turn_is_refused_on_the_lane_at_once(ways, booking, which):
    from queueing.models import QueueToken as Token_

    _, _, key = booking
    _, lane = ways
    assert run(lane, gated_read(which, booking, queue_key=key))[0] == "200 OK"
    services.queue_token_leave(token=Token_.objects.get(key=key), now=timezone.now())
    status, _, body = same_answer(ways, gated_read(which, booking, queue_key=key))
    assert status.startswith("403") and b'"queue_token_expired"' in body


@pytest.mark.parametrize(
    "auth",
    [None, "Token " + "0" * 40, "Bearer abc", "Token"],
    ids=["none", "unknown", "other", "bare"],
)
def test_without_a_good_api_token_the_seat_map_goes_the_full_way(ways, booking, auth):
    schedule, _, key = booking
    fallback, lane = ways
    status, headers, _ = run(lane, seats_env(schedule.id, auth=auth, queue_key=key))
    assert fallback.calls == 1
    assert status.startswith("401") and headers["WWW-Authenticate"] == "Token"


def test_a_logged_out_api_token_is_refused_on_the_lane_at_once(ways, booking):
    schedule, auth, key = booking
    fallback, lane = ways
    assert run(lane, seats_env(schedule.id, auth=auth, queue_key=key))[0] == "200 OK"
    Token.objects.filter(key=auth.split()[1]).delete()  # logout (the cache entry goes on commit)
    status, _, _ = run(lane, seats_env(schedule.id, auth=auth, queue_key=key))
    assert status.startswith("401") and fallback.calls == 1


def test_with_redis_down_every_lane_answers_from_postgresql(ways, booking, line):
    from django.test import override_settings

    from tests.config.test_redis_down import DOWN

    concert, tokens = line
    schedule, auth, key = booking
    with override_settings(CACHES=DOWN):
        fallback, lane = ways
        status, _, body = run(lane, poll_env(tokens[2].key))
        assert status == "200 OK" and b'"position":3' in body
        status, _, body = run(lane, seats_env(schedule.id, auth=auth, queue_key=key))
        assert status == "200 OK" and b'"number":3,' in body
        status, _, body = run(lane, dates_env(schedule.concert_id, auth=auth, queue_key=key))
        assert status == "200 OK" and b'"available_seats":49' in body
        twelve, two = ({"schedule_id": schedule.id, "seat_number": n} for n in (12, 2))
        assert run(lane, hold_env(auth, key, twelve))[0] == "201 Created"
        status, _, body = run(lane, hold_env(auth, key, two))
        assert status.startswith("409") and b'"seat_unavailable"' in body
        assert run(lane, charge_env(auth, {"amount": 1000}))[0] == "201 Created"
        status, _, body = run(lane, line_up_env(concert.id, api_fan()))
        assert status == "201 Created" and b'"position":5' in body
        leaver = api_fan()
        token, _ = services.queue_token_issue(
            user=Token.objects.get(key=leaver[6:]).user, concert_id=concert.id, now=timezone.now()
        )
        assert run(lane, leave_env(leaver, token.key))[0] == "204 No Content"
        assert fallback.calls == 0  # the lanes answered, slower, from the rows
    token.refresh_from_db()
    assert token.status == QueueToken.Status.LEFT


# --- the hold (POST /api/v1/reservations) ------------------------------------------


def post_env(path, auth, queue_key, body, *, content_type="application/json", **extra) -> dict:
    """A POST's WSGI environ, with the fan's API token and turn if given."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"HTTP_AUTHORIZATION": auth} if auth else {}
    if queue_key:
        headers["HTTP_X_QUEUE_TOKEN"] = queue_key
    environ = (
        RequestFactory(HTTP_HOST="testserver")
        .post(path, data=raw, content_type=content_type, **headers, **extra)
        .environ
    )
    environ["wsgi.input"] = io.BytesIO(raw)
    return environ


def hold_env(auth, queue_key, body, **extra) -> dict:
    return post_env("/api/v1/reservations", auth, queue_key, body, **extra)


def test_hold_refusals_answer_the_same_either_way(ways, booking, concert, other_fan):
    schedule, auth, key = booking
    # The fan's own hold, then each refusal, from the same state either way.
    seven = {"schedule_id": schedule.id, "seat_number": 7}
    assert run(ways[1], hold_env(auth, key, seven))[0].startswith("201")
    cases = {
        "409 seat_unavailable": {"schedule_id": schedule.id, "seat_number": 2},
        "409 seat_already_yours": {"schedule_id": schedule.id, "seat_number": 7},
        "404 schedule_not_found": {"schedule_id": 10**9, "seat_number": 1},
    }
    for expected, body in cases.items():
        for _ in range(2):  # cold, then from the cached seats
            status, headers, content = same_answer(ways, hold_env(auth, key, body))
            code, error = expected.split()
            assert status.startswith(code) and f'"{error}"'.encode() in content, content
            assert headers["Allow"] == "GET, POST, HEAD, OPTIONS"
    others = QueueToken.objects.get(user=other_fan, concert=concert).key
    for queue_key, error in ((None, "queue_token_missing"), (others, "queue_token_invalid")):
        body = {"schedule_id": schedule.id, "seat_number": 9}
        status, _, content = same_answer(ways, hold_env(auth, queue_key, body))
        assert status.startswith("403") and f'"{error}"'.encode() in content


def test_a_hold_on_the_lane_answers_as_the_full_way_does(ways, booking):
    """A write cannot be made twice from the same state: two seats, one each way."""

    schedule, auth, key = booking
    fallback, lane = ways
    ten, eleven = ({"schedule_id": schedule.id, "seat_number": n} for n in (10, 11))
    full = run(fallback.app, hold_env(auth, key, ten))
    fast = run(lane, hold_env(auth, key, eleven))
    assert fallback.calls == 0
    assert full[0] == fast[0] == "201 Created"
    differs = {"Location", "Content-Length"}
    assert {k: v for k, v in full[1].items() if k not in differs} == {
        k: v for k, v in fast[1].items() if k not in differs
    }
    full_body, fast_body = json.loads(full[2]), json.loads(fast[2])
    assert fast[1]["Location"] == f"/api/v1/reservations/{fast_body['reservation_id']}"
    assert fast_body["seat_number"] == 11 and fast_body["status"] == "held"
    same = {"schedule_id", "price", "status"}
    assert {k: full_body[k] for k in same} == {k: fast_body[k] for k in same}
    assert full_body.keys() == fast_body.keys()


def test_a_taken_seat_on_the_lane_is_refused_with_one_redis_round_trip_and_no_sql(
    ways, booking, monkeypatch
):
    schedule, auth, key = booking
    _, lane = ways
    body = {"schedule_id": schedule.id, "seat_number": 2}
    run(lane, hold_env(auth, key, body))  # the date's seats cached
    sent = round_trips(monkeypatch)
    with CaptureQueriesContext(connection) as queries:
        status, _, _ = run(lane, hold_env(auth, key, body))
    assert status.startswith("409") and len(queries) == 0 and len(sent) == 1


@pytest.mark.parametrize(
    "body, content_type",
    [
        ({"schedule_id": 1, "seat_number": 51}, "application/json"),
        ({"schedule_id": 1, "seat_number": 0}, "application/json"),
        ({"schedule_id": 1, "seat_number": "3"}, "application/json"),
        ({"schedule_id": 1, "seat_number": True}, "application/json"),
        ({"schedule_id": 1, "seat_number": 3.0}, "application/json"),
        ({"schedule_id": 1}, "application/json"),
        ({"schedule_id": 1, "seat_number": 3, "extra": 1}, "application/json"),
        ([1, 3], "application/json"),
        (b"{not json", "application/json"),
        ('{"schedule_id": 1, "seat_number": 3}'.encode("utf-16"), "application/json"),
        ({"schedule_id": 1, "seat_number": 3}, "application/json; charset=utf-8"),
        (b"schedule_id=1&seat_number=3", "application/x-www-form-urlencoded"),
        ({"schedule_id": 1, "seat_number": 3, "pad": "x" * 2000}, "application/json"),
    ],
    ids=[
        "seat-51",
        "seat-0",
        "text",
        "bool",
        "float",
        "missing",
        "extra",
        "list",
        "bad-json",
        "utf-16",
        "charset",
        "form",
        "too-big",
    ],  # fmt: skip
)
def test_anything_but_a_plain_hold_goes_the_full_way_with_its_body(
    ways, booking, body, content_type
):
    schedule, auth, key = booking
    if isinstance(body, dict) and body.get("schedule_id") == 1:
        body = {**body, "schedule_id": schedule.id}
    fallback, lane = ways
    status, _, content = run(lane, hold_env(auth, key, body, content_type=content_type))
    assert fallback.calls == 1
    # The full way read the same body: a refusal names what is wrong, or the hold is made.
    assert status.startswith(("400", "415", "201")), (status, content)
    if status.startswith("400"):
        assert b'"validation_error"' in content or b'"parse_error"' in content, content


@pytest.mark.parametrize(
    "auth", [None, "Token " + "0" * 40, "Bearer abc"], ids=["none", "unknown", "other"]
)
def test_a_hold_without_a_good_api_token_goes_the_full_way(ways, booking, auth):
    schedule, _, key = booking
    fallback, lane = ways
    body = {"schedule_id": schedule.id, "seat_number": 5}
    status, _, _ = run(lane, hold_env(auth, key, body))
    assert fallback.calls == 1 and status.startswith("401")


def cold(auth: str) -> str:
    """The API token's cache entry gone: the fan's next request is as their first."""
    cache.delete(auth_cache_key(auth))
    return auth


def reads_the_key(queries) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if "authtoken_token" in q["sql"]]


def test_a_hold_whose_key_the_cache_lacks_is_authenticated_in_its_first_statement(ways, booking):
    """A fan's first request of a sale is often the hold itself (pretix's shape): the
    date's read authenticates the key, with no statement of its own, and caches it.
    The control: the full way reads the key in a statement of its own."""
    schedule, auth, key = booking
    fallback, lane = ways
    ten, eleven = ({"schedule_id": schedule.id, "seat_number": n} for n in (10, 11))
    with CaptureQueriesContext(connection) as full_way:
        assert run(fallback.app, hold_env(cold(auth), key, ten))[0] == "201 Created"
    with CaptureQueriesContext(connection) as on_the_lane:
        assert run(lane, hold_env(cold(auth), key, eleven))[0] == "201 Created"
    assert fallback.calls == 0
    (alone,) = reads_the_key(full_way)
    assert "concerts_schedule" not in alone
    (together,) = reads_the_key(on_the_lane)
    assert "concerts_schedule d" in together and "concerts_seat s" in together
    assert len(on_the_lane) == len(full_way) - 1
    assert cache.get(auth_cache_key(auth))[0].pk == Token.objects.get(key=auth[6:]).user_id


def test_hold_answers_for_a_key_the_cache_lacks_are_the_same_either_way(ways, booking, fan):
    """Each refusal, and the hold, from a cold key, the lane against the full way; the
    date's read refuses a bad key first (DRF's 401, the full way answering it)."""
    schedule, auth, key = booking
    fallback, lane = ways
    seven = {"schedule_id": schedule.id, "seat_number": 7}
    assert run(lane, hold_env(cold(auth), key, seven))[0] == "201 Created"
    cases = {
        "409 seat_already_yours": seven,
        "409 seat_unavailable": {"schedule_id": schedule.id, "seat_number": 2},
        "404 schedule_not_found": {"schedule_id": 10**9, "seat_number": 1},
    }
    for expected, body in cases.items():
        for _ in range(2):  # the date read, then from the cached seats
            full = run(fallback.app, hold_env(cold(auth), key, body))
            fast = run(lane, hold_env(cold(auth), key, body))
            code, error = expected.split()
            assert fast == full and fast[0].startswith(code), fast
            assert f'"{error}"'.encode() in fast[2]
    assert fallback.calls == 0
    # An inactive fan, a deleted key: refused at once, by the full way's 401.
    get_user_model().objects.filter(pk=fan.pk).update(is_active=False)
    for body in (seven, cases["404 schedule_not_found"]):
        status, _, content = run(lane, hold_env(cold(auth), key, body))
        assert status.startswith("401") and b"inactive" in content
    assert fallback.calls == 2
    get_user_model().objects.filter(pk=fan.pk).update(is_active=True)
    Token.objects.filter(key=auth[6:]).delete()
    status, _, _ = run(lane, hold_env(auth, key, {"schedule_id": schedule.id, "seat_number": 8}))
    assert status.startswith("401") and fallback.calls == 3
    assert not Reservation.objects.filter(seat__schedule=schedule, seat__number=8).exists()


def test_a_hold_by_a_key_the_cache_lacks_outside_the_seats_is_refused_after_the_key():
    """The service alone (the lane never sends a seat outside 1 to 50): a bad key's 401
    outranks the 404, and a good key gets the 404."""
    from rest_framework.exceptions import AuthenticationFailed

    from concerts import services as concert_services
    from concerts.exceptions import SeatNotFound

    def hold(api_key: str) -> None:
        concert_services.seat_hold_create(
            user=None, api_key=api_key, schedule_id=1, seat_number=51, queue_key="x",
            now=timezone.now(),
        )  # fmt: skip

    with pytest.raises(AuthenticationFailed):
        hold("0" * 40)
    with pytest.raises(SeatNotFound):
        hold(Token.objects.create(user=UserFactory()).key)


def test_the_lane_never_takes_a_body_the_serializer_refuses():
    """plain_input(HoldInput) accepts a body only if HoldInput does, over a grid of
    bodies around every bound and type (what it declines, the full way answers)."""
    from config.api import MAX_ID
    from payments.api import HoldInput

    accept = fastlane.plain_input(HoldInput)
    values = [0, 1, 2, 49, 50, 51, MAX_ID, MAX_ID + 1, -1, True, False, 1.0, "1", None, [1]]
    accepted = 0
    for schedule_id in values:
        for seat_number in values:
            body = {"schedule_id": schedule_id, "seat_number": seat_number}
            if accept(body) is not None:
                accepted += 1
                assert HoldInput(data=body).is_valid(), body
    assert accepted == 6 * 4  # ids 1, 2, 49, 50, 51, MAX_ID; seats 1, 2, 49, 50
    for body in ({"schedule_id": 1}, {"schedule_id": 1, "seat_number": 1, "x": 1}, [], "x"):
        assert accept(body) is None


# --- the top-up (POST /api/v1/wallet/charges) --------------------------------------


def charge_env(auth, body, **extra) -> dict:

    raw = json.dumps(body).encode()
    environ = (
        RequestFactory(HTTP_HOST="testserver")
        .post(
            "/api/v1/wallet/charges",
            data=raw,
            content_type="application/json",
            **({"HTTP_AUTHORIZATION": auth} if auth else {}),
            **extra,
        )  # fmt: skip
        .environ
    )
    environ["wsgi.input"] = io.BytesIO(raw)
    return environ


@pytest.fixture
def payer(fan):
    api_token, _ = Token.objects.get_or_create(user=fan)
    return fan, f"Token {api_token.key}"


@pytest.mark.parametrize("amount", [0, -5, "1000", 1.5, None, True, 10**12])
def test_refused_top_ups_answer_the_same_either_way(ways, payer, amount):
    _, auth = payer
    status, _, content = same_answer(ways, charge_env(auth, {"amount": amount}))
    assert status.startswith("400") and b'"invalid_amount"' in content


def test_a_top_up_past_the_balance_cap_answers_the_same_either_way(ways, payer, settings):
    from wallet import services as wallet_services

    fan, auth = payer
    settings.WALLET_MAX_BALANCE = settings.WALLET_MIN_CHARGE + 500
    wallet_services.wallet_charge(user_id=fan.pk, amount=1000, now=timezone.now())
    status, _, content = same_answer(ways, charge_env(auth, {"amount": 1000}))
    assert status.startswith(("409", "422")) and b'"balance_limit_exceeded"' in content


def test_a_top_up_on_the_lane_answers_as_the_full_way_does(ways, payer):

    _, auth = payer
    fallback, lane = ways
    full = run(fallback.app, charge_env(auth, {"amount": 1000}))
    fast = run(lane, charge_env(auth, {"amount": 2000}))
    assert fallback.calls == 0 and full[0] == fast[0] == "201 Created"
    differs = {"Location", "Content-Length"}
    assert {k: v for k, v in full[1].items() if k not in differs} == {
        k: v for k, v in fast[1].items() if k not in differs
    }
    full_body, fast_body = json.loads(full[2]), json.loads(fast[2])
    assert full_body.keys() == fast_body.keys()
    assert fast_body["balance"] == 3000
    assert fast[1]["Location"] == f"/api/v1/wallet/ledger/{fast_body['entry']['entry_id']}"


def test_an_idempotent_replay_and_a_reused_key_answer_the_same_either_way(ways, payer):
    _, auth = payer
    fallback, lane = ways
    first = run(lane, charge_env(auth, {"amount": 1000}, HTTP_IDEMPOTENCY_KEY="k1"))
    assert first[0] == "201 Created" and "Idempotent-Replayed" not in first[1]
    status, headers, content = same_answer(
        ways, charge_env(auth, {"amount": 1000}, HTTP_IDEMPOTENCY_KEY="k1")
    )
    assert status == "201 Created" and headers["Idempotent-Replayed"] == "true"
    assert json.loads(content) == json.loads(first[2])  # the first answer: charged once
    reused = charge_env(auth, {"amount": 5000}, HTTP_IDEMPOTENCY_KEY="k1")
    status, _, content = same_answer(ways, reused)
    assert status.startswith("422") and b'"idempotency_key_reused"' in content


@pytest.mark.parametrize(
    "body, auth_ok",
    [({"amount": 1000, "note": "x"}, True), ([1000], True), ({}, True), ({"amount": 1000}, False)],
    ids=["extra-key", "list", "empty", "no-token"],
)
def test_anything_but_a_plain_top_up_goes_the_full_way(ways, payer, body, auth_ok):
    _, auth = payer
    fallback, lane = ways
    status, _, _ = run(lane, charge_env(auth if auth_ok else None, body))
    assert fallback.calls == 1
    assert status.startswith(("201", "400") if auth_ok else "401")


# --- the line-up (POST /api/v1/concerts/{id}/queue) --------------------------------


def line_up_env(concert_id: int, auth: str | None, **extra) -> dict:
    headers = {"HTTP_AUTHORIZATION": auth} if auth else {}
    return (
        RequestFactory(HTTP_HOST="testserver")
        .post(f"/api/v1/concerts/{concert_id}/queue", **headers, **extra)
        .environ
    )


def api_fan() -> str:
    return "Token " + Token.objects.create(user=UserFactory()).key


def test_a_line_up_on_the_lane_answers_as_the_full_way_does(ways, line):
    """Two new fans into the same full room, one each way: the same answer but for
    their own place."""
    concert, _ = line
    fallback, lane = ways
    full = run(fallback.app, line_up_env(concert.id, api_fan()))
    fast = run(lane, line_up_env(concert.id, api_fan()))
    assert fallback.calls == 0 and full[0] == fast[0] == "201 Created"
    differs = {"Content-Length"}
    assert {k: v for k, v in full[1].items() if k not in differs} == {
        k: v for k, v in fast[1].items() if k not in differs
    }
    full_body, fast_body = json.loads(full[2]), json.loads(fast[2])
    assert (full_body["position"], fast_body["position"]) == (5, 6)
    same = set(full_body) - {"token", "position", "estimated_wait_seconds"}
    assert {k: full_body[k] for k in same} == {k: fast_body[k] for k in same}


def fill_trips(sent: list) -> list[bytes]:
    """The round trips that carried an API token's cache fill (its Lua script)."""
    trips = [b"".join(packed) for packed in sent]
    return [trip for trip in trips if b"auth:token:" in trip and b"EVALSHA" in trip]


def test_a_first_line_up_authenticates_in_its_own_statement(ways, line, monkeypatch):
    """A fan's first request of a sale is a line-up with an API token the cache does
    not hold yet. The line-up's own statement authenticates the key as it writes
    (Lane.own_auth): one statement in PostgreSQL, and one round trip to Redis (the
    mirror's), with no cache read of the key and no fill."""
    concert, _ = line
    _, lane = ways
    run(lane, line_up_env(concert.id, api_fan()))  # the shared estimates are cached
    auth = api_fan()
    sent = round_trips(monkeypatch)
    with CaptureQueriesContext(connection) as queries:
        assert run(lane, line_up_env(concert.id, auth))[0] == "201 Created"
    [statement] = [q["sql"] for q in queries]
    assert "INSERT INTO" in statement and "authtoken_token" in statement
    own = [t for t in map(b"".join, sent) if b"EVALSHA" in t or b"auth:token:" in t]
    assert len(own) == 1 and b"ZCOUNT" in own[0] and b"auth:token:" not in own[0]
    token = QueueToken.objects.get(user__auth_token__key=auth[6:], concert=concert)
    assert token.status == QueueToken.Status.WAITING


def test_a_line_up_whose_key_was_deleted_is_refused_at_once_and_writes_nothing(ways, line):
    """The statement reads the key in PostgreSQL, never the cache: a key deleted after
    it was cached (a logout) is refused on the next line-up, by DRF, the full way."""
    concert, _ = line
    fallback, lane = ways
    auth = api_fan()
    user_id = Token.objects.get(key=auth[6:]).user_id
    cache.set(auth_cache_key(auth), (UserFactory.build(pk=user_id), None))  # a stale entry
    Token.objects.filter(key=auth[6:]).delete()  # bypasses the signal: the entry stays
    status, _, _ = run(lane, line_up_env(concert.id, auth))
    assert status.startswith("401") and fallback.calls == 1
    assert not QueueToken.objects.filter(user_id=user_id).exists()


def test_a_line_up_by_an_inactive_fan_is_refused_the_same_either_way(ways, line):
    from django.contrib.auth import get_user_model

    concert, _ = line
    fallback, lane = ways
    auth = api_fan()
    user_id = Token.objects.get(key=auth[6:]).user_id
    get_user_model().objects.filter(pk=user_id).update(is_active=False)
    full = run(fallback.app, line_up_env(concert.id, auth))
    fast = run(lane, line_up_env(concert.id, auth))
    assert fast == full and fallback.calls == 1  # the lane passed it on: DRF answered
    assert full[0].startswith("401") and b"inactive" in full[2]
    assert not QueueToken.objects.filter(user_id=user_id).exists()


@pytest.fixture
def first_auth(ways):
    """The line-up on a lane that authenticates first, as every other API-token lane
    does (a cache read, and on a miss the key from PostgreSQL), with the view's own
    round trip to Redis after it: the line-up lane as it was before Lane.own_auth."""
    from dataclasses import replace

    from config.errors import DomainError

    fallback, _ = ways

    def authenticated_first(request, concert_id):
        try:
            view, code, now = queueing_api._lined_up(request, concert_id)
        except DomainError as exc:
            return fastlane.error_response(exc, allow="POST, OPTIONS")
        return fastlane.json_response(
            queueing_api._answered(view, now=now), allow="POST, OPTIONS", status=code
        )

    [lane_def] = [d for d in fastlane.lanes() if d.view is queueing_api.line_up_lane]
    return fastlane.FastLane(
        fallback, [replace(lane_def, view=authenticated_first, own_auth=False)]
    )


def test_control_a_line_up_authenticated_first_takes_two_more_round_trips(
    first_auth, line, monkeypatch
):
    concert, _ = line
    run(first_auth, line_up_env(concert.id, api_fan()))
    auth = api_fan()
    sent = round_trips(monkeypatch)
    with CaptureQueriesContext(connection) as queries:
        assert run(first_auth, line_up_env(concert.id, auth))[0] == "201 Created"
    assert len(queries) == 2 and "authtoken_token" in queries[0]["sql"]  # the key, the line-up
    own = [t for t in map(b"".join, sent) if b"EVALSHA" in t or b"auth:token:" in t]
    assert len(own) == 2  # the cache read (a miss), the mirror's


def test_a_fill_rides_in_the_views_next_round_trip(first_auth, line, monkeypatch):
    """On a lane that reads the API token from the cache and misses, the key is read
    from PostgreSQL, and its cache fill rides in the view's own next round trip to
    Redis (here the line-up's mirror write, which counts the room's turns): two
    round trips in all. The next request finds the token cached."""
    concert, _ = line
    run(first_auth, line_up_env(concert.id, api_fan()))  # the shared estimates are cached
    auth = api_fan()
    sent = round_trips(monkeypatch)
    assert run(first_auth, line_up_env(concert.id, auth))[0] == "201 Created"
    [carrier] = fill_trips(sent)
    assert b"ZCOUNT" in carrier  # the mirror's own round trip
    own = [t for t in map(b"".join, sent) if b"EVALSHA" in t or b"auth:token:" in t]
    assert len(own) == 2
    monkeypatch.undo()
    assert cache.get(auth_cache_key(auth))[0].pk == Token.objects.get(key=auth[6:]).user_id


def test_control_a_fill_not_carried_is_a_round_trip_of_its_own(first_auth, line, monkeypatch):
    from config import auth as auth_module

    concert, _ = line
    monkeypatch.setattr(auth_module, "write_later", lambda client, call: False)
    sent = round_trips(monkeypatch)
    assert run(first_auth, line_up_env(concert.id, api_fan()))[0] == "201 Created"
    [alone] = fill_trips(sent)
    assert b"ZCOUNT" not in alone and alone.count(b"EVALSHA") == 1


def test_a_fill_no_round_trip_came_to_carry_is_sent_as_the_lane_returns(ways, booking):
    """A refused hold (no such date) makes no round trip after the token's: the
    token's fill still goes, once the view has answered."""
    _, auth, key = booking
    _, lane = ways
    cache.delete(auth_cache_key(auth))
    body = {"schedule_id": 10**9, "seat_number": 1}
    assert run(lane, hold_env(auth, key, body))[0].startswith("404")
    assert cache.get(auth_cache_key(auth))[0].pk == Token.objects.get(key=auth[6:]).user_id


def test_lining_up_again_and_refusals_answer_the_same_either_way(ways, line):
    concert, _ = line
    auth = api_fan()
    fallback, lane = ways
    assert run(lane, line_up_env(concert.id, auth))[0] == "201 Created"
    status, _, body = same_answer(ways, line_up_env(concert.id, auth))
    assert status == "200 OK" and b'"position":5' in body  # the fan's live token again
    status, _, body = same_answer(ways, line_up_env(10**9, auth))
    assert status.startswith("404") and b'"concert_not_found"' in body


@pytest.mark.parametrize("auth", [None, "Token " + "0" * 40], ids=["none", "unknown"])
def test_a_line_up_without_a_good_api_token_goes_the_full_way(ways, line, auth):
    concert, _ = line
    fallback, lane = ways
    status, _, _ = run(lane, line_up_env(concert.id, auth))
    assert fallback.calls == 1 and status.startswith("401")


def test_a_line_up_with_a_session_cookie_goes_the_full_way(ways, line):
    concert, _ = line
    fallback, lane = ways
    environ = line_up_env(concert.id, api_fan(), HTTP_COOKIE="sessionid=abc")
    status, _, _ = run(lane, environ)
    assert fallback.calls == 1 and status == "201 Created"


# --- the leave (DELETE /api/v1/queue) ------------------------------------------------


def leave_env(auth: str | None, queue_key: str | None, **extra) -> dict:
    headers = {"HTTP_AUTHORIZATION": auth} if auth else {}
    if queue_key is not None:
        headers["HTTP_X_QUEUE_TOKEN"] = queue_key
    return (
        RequestFactory(HTTP_HOST="testserver").delete("/api/v1/queue", **headers, **extra).environ
    )


@pytest.fixture
def leavers(line):
    """Three more fans in the full room's line, each with an API token, lined up
    through the service (so mirrored): (concert, [(auth, token)])."""
    concert, _ = line
    fans = []
    for _ in range(3):
        auth = api_fan()
        user = Token.objects.get(key=auth[6:]).user
        token, _ = services.queue_token_issue(user=user, concert_id=concert.id, now=timezone.now())
        fans.append((auth, token))
    return concert, fans


def test_a_leave_on_the_lane_answers_as_the_full_way_does(ways, leavers):
    """Two fans leave, one each way: the same 204, and each is out of the line, counted
    out of its bucket once and told so by the mirror."""
    concert, [(first_auth, first), (second_auth, second), _] = leavers
    fallback, lane = ways
    before = counted(concert)
    full = run(fallback.app, leave_env(first_auth, first.key))
    fast = run(lane, leave_env(second_auth, second.key))
    assert fallback.calls == 0 and full == fast and full[0] == "204 No Content"
    assert full[2] == b"" and "Content-Type" not in full[1]
    for token in (first, second):
        token.refresh_from_db()
        assert token.status == QueueToken.Status.LEFT and token.end_reason == "left"
        assert mirror.read(key=token.key, now=timezone.now(), presence=False).status == "left"
    assert counted(concert) == before - 2


def test_a_leave_on_the_lane_authenticates_in_its_own_statement(ways, leavers, monkeypatch):
    """A fan told the sale is sold out leaves with a key the cache does not hold (the
    line-up authenticated in its own statement too): one statement in PostgreSQL, the
    key read in it, and one round trip to Redis, the mirror's, with no cache read of
    the key and no fill."""
    _, [(auth, token), *_] = leavers
    _, lane = ways
    cache.delete(auth_cache_key(auth))
    sent = round_trips(monkeypatch)
    with CaptureQueriesContext(connection) as queries:
        assert run(lane, leave_env(auth, token.key))[0] == "204 No Content"
    [statement] = [q["sql"] for q in queries]
    assert "authtoken_token" in statement and "UPDATE" in statement
    assert not any(b"auth:token:" in b"".join(trip) for trip in sent)
    assert len(sent) == 1
    monkeypatch.undo()
    assert cache.get(auth_cache_key(auth)) is None


def test_leave_refusals_answer_the_same_either_way(ways, leavers):
    _, [(auth, token), (other_auth, other), _] = leavers
    fallback, lane = ways
    status, _, body = same_answer(ways, leave_env(auth, other.key))  # another fan's token
    assert status.startswith("403") and b'"queue_token_invalid"' in body
    status, _, body = same_answer(ways, leave_env(auth, "x" * 43))  # no such token
    assert status.startswith("404") and b'"queue_token_not_found"' in body
    assert run(lane, leave_env(auth, token.key))[0] == "204 No Content"
    status, _, _ = same_answer(ways, leave_env(auth, token.key))  # gone already: no change
    assert status == "204 No Content"
    other.refresh_from_db()
    assert other.status == QueueToken.Status.WAITING and fallback.calls == 0


@pytest.mark.parametrize("queue_key", [None, "", "not a token"], ids=["none", "empty", "bad"])
def test_a_leave_without_a_queue_token_of_its_shape_goes_the_full_way(ways, leavers, queue_key):
    """DRF authenticates before the view reads the header: the full way answers (403
    queue_token_missing, or 404 for a secret of no token's shape), and a bad API key
    with it is a 401, not the header's refusal."""
    _, [(auth, _), *_] = leavers
    fallback, lane = ways
    status, _, body = run(lane, leave_env(auth, queue_key))
    code = b"queue_token_not_found" if queue_key else b"queue_token_missing"
    assert fallback.calls == 1 and status[:3] in ("403", "404") and code in body
    status, _, _ = run(lane, leave_env("Token " + "0" * 40, queue_key))
    assert fallback.calls == 2 and status.startswith("401")


def test_a_leave_whose_key_was_deleted_is_refused_at_once_and_ends_nothing(ways, leavers):
    """The statement reads the key in PostgreSQL, never the cache: a key deleted after
    it was cached (a logout) is refused, by DRF, the full way, and the fan's place
    is kept."""
    _, [(auth, token), *_] = leavers
    fallback, lane = ways
    cache.set(auth_cache_key(auth), (token.user, None))  # a stale entry
    Token.objects.filter(key=auth[6:]).delete()  # bypasses the signal: the entry stays
    status, _, _ = run(lane, leave_env(auth, token.key))
    assert status.startswith("401") and fallback.calls == 1
    token.refresh_from_db()
    assert token.status == QueueToken.Status.WAITING


def test_a_leave_by_an_inactive_fan_is_refused_the_same_either_way(ways, leavers):
    from django.contrib.auth import get_user_model

    concert, [(auth, token), *_] = leavers
    fallback, lane = ways
    before = counted(concert)
    get_user_model().objects.filter(pk=token.user_id).update(is_active=False)
    full = run(fallback.app, leave_env(auth, token.key))
    fast = run(lane, leave_env(auth, token.key))
    assert fast == full and fallback.calls == 1 and full[0].startswith("401")
    token.refresh_from_db()
    assert token.status == QueueToken.Status.WAITING and counted(concert) == before


def test_control_a_leave_authenticated_first_reads_the_key_in_a_statement_of_its_own(ways, leavers):
    """The full way (DRF's token authentication, the cache missing the key): the key's
    read, then the leave's statement."""
    _, [(auth, token), *_] = leavers
    fallback, _ = ways
    cache.delete(auth_cache_key(auth))
    with CaptureQueriesContext(connection) as queries:
        assert run(fallback.app, leave_env(auth, token.key))[0] == "204 No Content"
    statements = [q["sql"] for q in queries]
    assert len(statements) == 2 and "authtoken_token" in statements[0]
    assert "authtoken_token" not in statements[1]


# --- the payment (POST /api/v1/payments) --------------------------------------------


def pay_env(auth, queue_key, body, **extra) -> dict:
    return post_env("/api/v1/payments", auth, queue_key, body, **extra)


@pytest.fixture
def holds(booking, fan):
    """The booking's fan holds seats 10, 11 and 12 (on the lane), with money for two."""
    from wallet import services as wallet_services

    schedule, auth, key = booking
    ids = []
    for number in (10, 11, 12):
        body = {"schedule_id": schedule.id, "seat_number": number}
        status, _, content = run(
            fastlane.FastLane(WSGIHandler(), fastlane.lanes()), hold_env(auth, key, body)
        )
        assert status == "201 Created", content
        ids.append(json.loads(content)["reservation_id"])
    price = schedule.seats.get(number=10).price
    wallet_services.wallet_charge(user_id=fan.pk, amount=2 * price, now=timezone.now())
    return auth, key, ids


def without(headers: dict, *names: str) -> dict:
    return {k: v for k, v in headers.items() if k not in names}


def test_a_payment_on_the_lane_answers_as_the_full_way_does(ways, holds):
    """A payment cannot be made twice from the same state: two seats, one each way."""
    auth, key, (ten, eleven, _) = holds
    fallback, lane = ways
    full = run(fallback.app, pay_env(auth, key, {"reservation_id": ten}))
    fast = run(lane, pay_env(auth, key, {"reservation_id": eleven}))
    assert fallback.calls == 0 and full[0] == fast[0] == "201 Created"
    assert without(full[1], "Location", "Content-Length") == without(
        fast[1], "Location", "Content-Length"
    )
    full_body, fast_body = json.loads(full[2]), json.loads(fast[2])
    assert full_body.keys() == fast_body.keys()
    assert fast_body["reservation_id"] == eleven and fast_body["status"] == "paid"
    assert fast[1]["Location"] == f"/api/v1/payments/{fast_body['payment_id']}"


def test_payment_refusals_answer_the_same_either_way(ways, holds, concert, other_fan):
    from tests.conftest import admit

    auth, key, (ten, eleven, _) = holds
    _, lane = ways
    assert run(lane, pay_env(auth, key, {"reservation_id": ten}))[0] == "201 Created"
    others = admit(other_fan, concert.id).key
    cases = [
        (key, {"reservation_id": ten}, "409", "already_paid"),
        (key, {"reservation_id": 10**9}, "404", "reservation_not_found"),
        (None, {"reservation_id": eleven}, "403", "queue_token_missing"),
        (others, {"reservation_id": eleven}, "403", "queue_token_invalid"),
    ]
    for queue_key, body, code, error in cases:
        status, headers, content = same_answer(ways, pay_env(auth, queue_key, body))
        assert status.startswith(code) and f'"{error}"'.encode() in content, content
        assert headers["Allow"] == "GET, POST, HEAD, OPTIONS"


def test_a_payment_the_wallet_cannot_cover_is_refused_the_same_either_way(ways, holds, fan):
    """The refusal releases the hold (a write), so one hold each way."""
    from wallet.models import Wallet

    auth, key, (ten, eleven, _) = holds
    fallback, lane = ways
    Wallet.objects.filter(user=fan).update(balance=0)  # as if spent elsewhere
    full = run(fallback.app, pay_env(auth, key, {"reservation_id": ten}))
    fast = run(lane, pay_env(auth, key, {"reservation_id": eleven}))
    assert fallback.calls == 0 and full[0] == fast[0] and full[0].startswith("402")
    assert without(full[1], "Content-Length") == without(fast[1], "Content-Length")
    full_body, fast_body = json.loads(full[2]), json.loads(fast[2])
    assert fast_body["error"]["details"]["released_reservation_ids"] == [eleven]
    for body in (full_body, fast_body):
        del body["error"]["details"]["released_reservation_ids"]
    assert full_body == fast_body and fast_body["error"]["code"] == "insufficient_balance"


def test_a_payment_replay_and_a_reused_key_answer_the_same_either_way(ways, holds):
    auth, key, (ten, eleven, _) = holds
    _, lane = ways
    first = run(lane, pay_env(auth, key, {"reservation_id": ten}, HTTP_IDEMPOTENCY_KEY="p1"))
    assert first[0] == "201 Created" and "Idempotent-Replayed" not in first[1]
    status, headers, content = same_answer(
        ways, pay_env(auth, key, {"reservation_id": ten}, HTTP_IDEMPOTENCY_KEY="p1")
    )
    assert status == "201 Created" and headers["Idempotent-Replayed"] == "true"
    assert json.loads(content) == json.loads(first[2])  # the first answer: paid once
    reused = pay_env(auth, key, {"reservation_id": eleven}, HTTP_IDEMPOTENCY_KEY="p1")
    status, _, content = same_answer(ways, reused)
    assert status.startswith("422") and b'"idempotency_key_reused"' in content
    bad = pay_env(auth, key, {"reservation_id": eleven}, HTTP_IDEMPOTENCY_KEY="x" * 500)
    status, _, content = same_answer(ways, bad)
    assert status.startswith("400") and b'"idempotency_key_invalid"' in content


def test_the_payment_lane_never_takes_a_body_pay_input_refuses():
    """plain_input(PayInput) takes a positive integer id a bigint holds, and nothing
    else: what it declines, the full way answers."""
    from config.api import MAX_ID
    from payments.api import PayInput

    accept = fastlane.plain_input(PayInput)
    values = [0, 1, 2, MAX_ID, MAX_ID + 1, -1, True, False, 1.0, "1", None, [1], {}]
    accepted = [v for v in values if accept({"reservation_id": v}) is not None]
    assert accepted == [1, 2, MAX_ID]
    assert all(PayInput(data={"reservation_id": v}).is_valid() for v in accepted)


PLAIN_PAYMENT_BODIES = {  # each made from the held reservation's id
    "text": lambda rid: {"reservation_id": str(rid)},
    "zero": lambda rid: {"reservation_id": 0},
    "float": lambda rid: {"reservation_id": float(rid)},
    "bool": lambda rid: {"reservation_id": True},
    "extra": lambda rid: {"reservation_id": rid, "extra": 1},
    "empty": lambda rid: {},
    "list": lambda rid: [rid],
    "bad-json": lambda rid: b"{not json",
}


@pytest.mark.parametrize("shape", PLAIN_PAYMENT_BODIES)
def test_anything_but_a_plain_payment_goes_the_full_way(ways, holds, shape):
    auth, key, (ten, _, _) = holds
    fallback, lane = ways
    status, _, _ = run(lane, pay_env(auth, key, PLAIN_PAYMENT_BODIES[shape](ten)))
    assert fallback.calls == 1
    assert status.startswith("201" if shape == "extra" else "400")


def test_a_payment_without_a_good_api_token_goes_the_full_way(ways, holds):
    _, key, (ten, _, _) = holds
    fallback, lane = ways
    status, _, _ = run(lane, pay_env("Token " + "0" * 40, key, {"reservation_id": ten}))
    assert fallback.calls == 1 and status.startswith("401")


def test_with_redis_down_a_payment_on_the_lane_answers_from_postgresql(ways, holds):
    from django.test import override_settings

    from tests.config.test_redis_down import DOWN

    auth, key, (ten, _, _) = holds
    with override_settings(CACHES=DOWN):
        fallback, lane = ways
        status, _, body = run(lane, pay_env(auth, key, {"reservation_id": ten}))
        assert status == "201 Created" and b'"status":"paid"' in body
        assert fallback.calls == 0


# --- the dates' lane: the same admitted fan's bookable dates ---------------------


def dates_env(concert_id: int, *, auth: str | None, queue_key: str | None) -> dict:
    return gated_env(f"/api/v1/concerts/{concert_id}/dates", auth=auth, queue_key=queue_key)


def test_the_dates_answer_the_same_either_way(ways, booking):
    schedule, auth, key = booking
    status, headers, body = same_answer(
        ways, dates_env(schedule.concert_id, auth=auth, queue_key=key)
    )
    assert status == "200 OK" and headers["Allow"] == "GET, HEAD, OPTIONS"
    assert json.loads(body)["dates"] == [
        {
            "schedule_id": schedule.id,
            "starts_at": json.loads(body)["dates"][0]["starts_at"],
            "available_seats": 49,
        }
    ]


def test_the_dates_body_is_the_documented_serializers(booking):
    from concerts import selectors
    from concerts.api import DatesOutput, _dates_body

    schedule, _, _ = booking
    dates = selectors.schedule_list_bookable(concert_id=schedule.concert_id, now=timezone.now())
    documented = DatesOutput({"concert_id": schedule.concert_id, "dates": dates}).data
    assert _dates_body(schedule.concert_id) == documented


def test_the_dates_lane_takes_one_redis_round_trip_and_one_statement(ways, booking, monkeypatch):
    """The API token's user and the fan's turn, read together, then the dates' one
    statement. The control: the full way reads the two one by one."""
    schedule, auth, key = booking
    fallback, lane = ways
    run(lane, dates_env(schedule.concert_id, auth=auth, queue_key=key))  # caches warm
    sent = round_trips(monkeypatch)
    env = dates_env(schedule.concert_id, auth=auth, queue_key=key)
    assert same_answer(ways, env)[0] == "200 OK"
    full_way, on_the_lane = sent[:2], sent[2:]
    assert len(full_way) == 2 and len(on_the_lane) == 1
    with CaptureQueriesContext(connection) as queries:
        assert run(lane, env)[0] == "200 OK"
    assert len(queries) == 1


def test_without_a_good_api_token_the_dates_go_the_full_way(ways, booking):
    schedule, _, key = booking
    fallback, lane = ways
    env = dates_env(schedule.concert_id, auth="Token " + "0" * 40, queue_key=key)
    status, headers, _ = run(lane, env)
    assert fallback.calls == 1
    assert status.startswith("401") and headers["WWW-Authenticate"] == "Token"
