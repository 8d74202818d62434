"""The waiting room's Redis mirror (issue 13): polls and gate passes answered from
Redis with no SQL, kept true by after-commit writes that only move forward, and
repaired from PostgreSQL when it is corrupted or lost."""

import math
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from config.cache import redis_client
from queueing import mirror, selectors, services
from queueing.models import QueueToken, WaitingRoom
from tests.config.test_fastlane import round_trips
from tests.conftest import clear_own_cache_keys
from tests.factories import ConcertFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def line():
    """Five fans waiting (capacity 0), issued through the service, so mirrored."""
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=0)
    now = timezone.now()
    tokens = [
        services.queue_token_issue(user=UserFactory(), concert_id=concert.id, now=now)[0]
        for _ in range(5)
    ]
    return concert, tokens


def poll(token):
    return APIClient().get("/api/v1/queue", HTTP_X_QUEUE_TOKEN=token.key)


def mirrored(token):
    return mirror.read(key=token.key, now=timezone.now(), presence=False)


def assert_mirror_matches_postgres(concert):
    for token in QueueToken.objects.filter(concert=concert):
        seen = mirrored(token)
        assert seen is not None, token.pk
        assert seen.status == token.status, token.pk
        if token.status == "waiting":
            assert seen.position_at_read == selectors.queue_position(token=token), token.pk


def test_a_poll_is_answered_from_redis_with_no_sql(line):
    _, tokens = line
    poll(tokens[0])  # the shared pacing estimates (admission rate, total waiting) are warm
    with CaptureQueriesContext(connection) as queries:
        response = poll(tokens[2])
    assert response.status_code == 200
    assert response.json()["position"] == 3
    assert response.json()["status"] == "waiting"
    assert len(queries) == 0
    with CaptureQueriesContext(connection) as queries:
        early = poll(tokens[2])
    assert early.status_code == 429
    assert len(queries) == 0


def test_positions_follow_admission_and_leaving(line):
    concert, tokens = line
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=2)
    services.queue_admit_next(concert_id=concert.id, now=timezone.now())
    services.queue_token_leave(token=tokens[3], now=timezone.now())
    assert mirrored(tokens[0]).status == "active"
    assert mirrored(tokens[3]).status == "left"
    assert mirrored(tokens[4]).position_at_read == 2  # tokens 3 and 5 wait: 5 is second
    assert_mirror_matches_postgres(concert)


def test_the_gate_reads_the_mirror_and_an_ending_is_refused_at_once(line):
    concert, tokens = line
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=1)
    services.queue_admit_next(concert_id=concert.id, now=timezone.now())
    first = QueueToken.objects.get(pk=tokens[0].pk)
    user = first.user
    with CaptureQueriesContext(connection) as queries:
        passed = services.queue_gate_pass(
            key=first.key, user=user, concert_id=concert.id, now=timezone.now()
        )
    assert passed.pk == first.pk and len(queries) == 0
    services.queue_tokens_end(ids=[first.pk], now=timezone.now(), reason="operator")
    from queueing.exceptions import QueueTokenExpired

    with pytest.raises(QueueTokenExpired):
        services.queue_gate_pass(
            key=first.key, user=user, concert_id=concert.id, now=timezone.now()
        )


def test_writes_landing_out_of_order_never_move_a_token_back(line):
    """Two processes' after-commit writes can reach Redis in either order."""
    _, tokens = line
    token = tokens[0]
    row = mirror.Row.of(token)
    until = timezone.now() + timedelta(minutes=10)
    mirror.put([mirror.Row(row.id, row.key, row.concert_id, row.user_id, "active", until)])
    mirror.put([row])  # the older "waiting" write arrives late
    assert mirrored(token).status == "active"
    earlier = until - timedelta(minutes=5)
    mirror.put([mirror.Row(row.id, row.key, row.concert_id, row.user_id, "active", earlier)])
    assert mirrored(token).active_until == until.replace(
        microsecond=until.microsecond // 1000 * 1000
    )
    mirror.put([mirror.Row(row.id, row.key, row.concert_id, row.user_id, "ended", until)])
    mirror.put([mirror.Row(row.id, row.key, row.concert_id, row.user_id, "active", until)])
    assert mirrored(token).status == "ended"


def test_control_a_plain_overwrite_would_move_a_token_back(line, monkeypatch):
    """Without the forward-only rule, the late write wins: the guard is what holds."""
    _, tokens = line
    token = tokens[0]
    row = mirror.Row.of(token)
    plain = mirror._PUT.replace("if r > rank then return 0 end", "")
    monkeypatch.setattr(mirror, "_PUT", plain)
    until = timezone.now() + timedelta(minutes=10)
    mirror.put([mirror.Row(row.id, row.key, row.concert_id, row.user_id, "active", until)])
    mirror.put([row])
    assert mirrored(token).status == "waiting"  # moved back: wrong


def test_a_corrupted_mirror_misleads_until_the_rebuild_repairs_it(line):
    concert, tokens = line
    client = redis_client()
    base = mirror._base()
    # Corrupt it four ways: a status that is false, a missing place in line, a
    # place for a token that does not exist, and a token the mirror has lost.
    client.hset(f"{base}:t:{tokens[1].key}", mapping={"r": "2", "s": "active"})
    client.zrem(f"{base}:w:{concert.id}", tokens[1].pk)
    client.zrem(f"{base}:w:{concert.id}", tokens[3].pk)
    client.zadd(f"{base}:w:{concert.id}", {"999999999": 999999999})
    client.delete(f"{base}:t:{tokens[4].key}")
    # The control: the corruption is visible to readers.
    assert mirrored(tokens[1]).status == "active"  # PostgreSQL says waiting
    assert mirrored(tokens[3]) is None  # no place in line: read from PostgreSQL instead
    assert mirrored(tokens[4]) is None
    assert services.queue_mirror_repair() > 0  # the counts drifted: the beat job rebuilds
    assert_mirror_matches_postgres(concert)
    assert client.zscore(f"{base}:w:{concert.id}", "999999999") is None
    assert mirrored(tokens[4]).position_at_read == 5


def test_a_status_corruption_that_keeps_the_counts_is_repaired_by_a_full_rebuild(line):
    concert, tokens = line
    client = redis_client()
    client.hset(f"{mirror._base()}:t:{tokens[1].key}", mapping={"r": "3", "s": "ended"})
    assert mirrored(tokens[1]).status == "ended"
    assert mirror.rebuild() == 1
    assert_mirror_matches_postgres(concert)


def test_a_restarted_redis_is_read_around_then_rebuilt_without_a_manual_step(line):
    concert, tokens = line
    clear_own_cache_keys()  # Redis restarted: it keeps nothing on disk
    assert not mirror.is_ready()
    with CaptureQueriesContext(connection) as queries:
        response = poll(tokens[3])
    assert response.status_code == 200 and response.json()["position"] == 4
    assert len(queries) > 0  # answered by PostgreSQL
    services.queue_mirror_repair()  # the next beat tick
    assert mirror.is_ready()
    assert_mirror_matches_postgres(concert)
    with CaptureQueriesContext(connection) as queries:
        assert poll(tokens[2]).json()["position"] == 3
    assert len(queries) == 0


def test_presence_seen_by_redis_reaches_postgres_before_the_idle_sweep(line, settings):
    concert, tokens = line
    settings.QUEUE_WAITING_IDLE_TIMEOUT = 60
    token = QueueToken.objects.get(pk=tokens[0].pk)
    polled_at = token.last_seen_at + timedelta(seconds=50)
    assert services.queue_token_poll(key=token.key, now=polled_at).from_mirror
    assert QueueToken.objects.get(pk=token.pk).last_seen_at == token.last_seen_at  # Redis only
    # 61 s after line-up, but only 11 s after the poll: still here.
    later = token.last_seen_at + timedelta(seconds=61)
    result = services.queue_expire_stale(now=later)
    fresh = QueueToken.objects.get(pk=token.pk)
    assert fresh.status == "waiting"
    assert fresh.last_seen_at == polled_at.replace(microsecond=polled_at.microsecond // 1000 * 1000)
    # The four who never polled are gone.
    assert result["idle_expired"] == 4
    assert_mirror_matches_postgres(concert)


def test_the_poll_body_is_what_the_documented_serializer_says(line):
    from queueing.api import QueueTokenOutput, token_body

    concert, tokens = line
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=1)
    services.queue_admit_next(concert_id=concert.id, now=timezone.now())
    services.queue_token_leave(token=tokens[4], now=timezone.now())
    now = timezone.now()
    for token in QueueToken.objects.filter(concert=concert):  # active, waiting, left
        view = selectors.queue_token_view(token=token, now=now)
        assert token_body(view) == QueueTokenOutput(view).data


# --- a poll paced in the read's own round trip ----------------------------------


def test_the_scripts_pacing_equals_poll_after_seconds(monkeypatch):
    """mirror._POLL_AFTER is selectors.poll_after_seconds in Lua: the same answer for
    every place, rate and budget floor tried (waiting, and -1 for everyone else)."""
    client = redis_client()
    script = client.register_script(
        mirror._POLL_AFTER
        + "return poll_after(tonumber(ARGV[1]), tonumber(ARGV[2]) / tonumber(ARGV[6]),"
        " tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))"
    )
    checked = 0
    for floor in (0, 1, 3, 7, 40):
        monkeypatch.setattr(selectors, "budget_floor_seconds", lambda floor=floor: floor)
        for rate in (1, 17, 167, 1000, 2500, 50_000):
            for position in (-1, 1, 2, 9, 10, 11, 40, 99, 101, 1_000, 9_999, 250_000):
                lua = script(
                    args=[position, rate, floor, selectors.FRONT_POLL, selectors.MAX_BASE_POLL,
                          selectors.RATE_SCALE],
                )  # fmt: skip
                if position < 0:
                    python = selectors.poll_after_seconds(position=None, eta=None)
                else:
                    eta = math.ceil(position / (rate / selectors.RATE_SCALE))
                    python = selectors.poll_after_seconds(position=position, eta=eta)
                assert lua == python, (floor, rate, position)
                checked += 1
    assert checked == 5 * 6 * 12


def test_a_mirrored_poll_is_paced_in_the_same_round_trip(line, monkeypatch):
    _, tokens = line
    poll(tokens[0])  # the shared admission rate now exists for the script to use
    sent = round_trips(monkeypatch)
    monkeypatch.setattr(services, "queue_poll_record", lambda **kw: pytest.fail("paced twice"))
    response = poll(tokens[3])
    assert response.status_code == 200
    # One round trip, one script: the read, the presence and the next deadline.
    assert len(sent) == 1 and b"".join(sent[0]).count(b"EVALSHA") == 1
    body = response.json()
    rate = selectors.admission_rate(concert_id=tokens[3].concert_id, now=timezone.now())
    assert body["poll_after_seconds"] == selectors.poll_after_seconds(
        position=4, eta=math.ceil(4 / rate)
    )
    assert body["estimated_wait_seconds"] == math.ceil(4 / rate)
    assert response["Retry-After"] == str(body["poll_after_seconds"])
    early = poll(tokens[3])  # the deadline the script set holds
    assert early.status_code == 429
    assert early.json()["error"]["code"] == "poll_too_soon"


def test_without_a_shared_rate_the_poll_is_paced_by_python(line, monkeypatch):
    concert, tokens = line
    selectors.clear_local_estimates()
    clear_own_cache_keys()  # no shared rate, and no mirror: rebuild it
    mirror.rebuild()
    recorded = []
    real = services.queue_poll_record
    monkeypatch.setattr(
        services, "queue_poll_record", lambda **kw: recorded.append(kw) or real(**kw)
    )
    response = poll(tokens[1])
    assert response.status_code == 200
    assert [r["poll_after"] for r in recorded] == [response.json()["poll_after_seconds"]]
    assert poll(tokens[1]).status_code == 429


def test_a_line_up_into_a_full_room_is_mirrored_read_and_paced_in_one_round_trip(line, monkeypatch):
    concert, tokens = line  # capacity 0: nobody is admitted here
    poll(tokens[0])  # the shared admission rate exists
    sent = round_trips(monkeypatch)
    monkeypatch.setattr(services, "queue_poll_record", lambda **kw: pytest.fail("paced twice"))
    fan = UserFactory()
    api = APIClient()
    api.force_authenticate(fan)
    response = api.post(f"/api/v1/concerts/{concert.id}/queue")
    assert response.status_code == 201
    assert len(sent) == 1  # the token's first write and its first read, together
    body = response.json()
    assert body["position"] == 6 and body["status"] == "waiting"
    token = QueueToken.objects.get(key=body["token"])
    assert mirrored(token).position_at_read == 6
    monkeypatch.undo()
    assert APIClient().get("/api/v1/queue", HTTP_X_QUEUE_TOKEN=token.key).status_code == 429


def test_a_line_up_with_a_free_slot_reads_its_place_after_the_admission_run(line):
    concert, tokens = line
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=2)  # two slots free
    fan = UserFactory()
    api = APIClient()
    api.force_authenticate(fan)
    body = api.post(f"/api/v1/concerts/{concert.id}/queue").json()
    # The run admitted the first two in line; the newcomer is behind the other three.
    assert (body["status"], body["position"]) == ("waiting", 4)
    assert QueueToken.objects.filter(concert=concert, status="active").count() == 2


INCR = "return redis.call('INCR', KEYS[1])"
INCR_BY_TWO = "return redis.call('INCRBY', KEYS[1], 2)"


def test_scripts_in_a_pipeline_take_one_round_trip(monkeypatch):
    from django.core.cache import cache
    from redis.client import Pipeline

    from config.cache import redis_scripts_pipelined

    client = redis_client()
    key = cache.make_key("test:pipelined")
    extra: list = []
    real = Pipeline.immediate_execute_command

    def immediate(self, *args, **kwargs):
        extra.append(args[0])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "immediate_execute_command", immediate)
    assert redis_scripts_pipelined(client, [(INCR, [key], []), (INCR_BY_TWO, [key], [])]) == [1, 3]
    assert extra == []  # EVALSHA only, no SCRIPT EXISTS first
    # Control: redis-py's own way asks SCRIPT EXISTS before every execute.
    pipe = client.pipeline(transaction=False)
    client.register_script(INCR)(keys=[key], client=pipe)
    pipe.execute()
    assert extra == ["SCRIPT EXISTS"]
    client.delete(key)


def test_a_script_redis_lacks_is_loaded_and_only_its_calls_run_again():
    from django.core.cache import cache

    from config.cache import redis_script, redis_scripts_pipelined

    client = redis_client()
    first, second = cache.make_key("test:first"), cache.make_key("test:second")
    redis_script(client, INCR_BY_TWO).sha = "0" * 40  # as if Redis had restarted
    results = redis_scripts_pipelined(
        client, [(INCR, [first], []), (INCR_BY_TWO, [second], []), (INCR, [first], [])]
    )
    assert results == [1, 2, 2]  # the calls that ran are not run again
    assert client.get(first) == b"2" and client.get(second) == b"2"
    assert redis_script(client, INCR_BY_TWO).sha != "0" * 40
    client.delete(first, second)


def test_a_token_read_from_the_mirror_is_the_instance_keywords_would_make(line):
    _, tokens = line
    token = tokens[1]
    seen = mirror.read(key=token.key, now=timezone.now(), presence=False)
    by_keywords = QueueToken(
        id=token.pk, key=token.key, concert_id=token.concert_id, user_id=token.user_id,
        status=token.status, active_until=token.active_until, ended_at=token.ended_at,
        end_reason=token.end_reason, last_seen_at=seen.last_seen_at,
    )  # fmt: skip
    columns = [field.attname for field in QueueToken._meta.concrete_fields]
    assert [getattr(seen, c) for c in columns] == [getattr(by_keywords, c) for c in columns]
    assert seen.created_at is None and seen.admitted_at is None
    assert seen._state.adding and seen.pk == token.pk
