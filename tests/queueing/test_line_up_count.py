"""A line-up's admission pre-check counts the room's turns from the mirror, in the
round trip that mirrors the new token, not in its SQL statement (O(turns)): the
count is a hint, and an admission still decides from PostgreSQL under the room
lock (docs/performance.md, round six). Real commits: the line-up's statement is
its own transaction only outside a caller's."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from queueing import services
from queueing.models import WaitingRoom
from tests.factories import ConcertFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def room_of(capacity: int):
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=capacity)
    return concert


def line_up(concert, now=None):
    return services.queue_token_issue(
        user=UserFactory(), concert_id=concert.id, now=now or timezone.now()
    )[0]


def line_up_statement(queries) -> str:
    (sql,) = [q["sql"] for q in queries if "INSERT INTO queueing_queuetoken" in q["sql"]]
    return sql


def test_a_full_room_is_seen_from_the_mirror_and_the_statement_counts_nothing():
    concert = room_of(1)
    assert line_up(concert).status == "active"
    with CaptureQueriesContext(connection) as queries:
        second = line_up(concert)
    assert second.status == "waiting"
    assert second.position_at_read == 1
    assert "COUNT(*)" not in line_up_statement(queries)  # no count in SQL
    # Nothing else asked PostgreSQL about the room: no admission check ran.
    assert not [
        q for q in queries if "queueing_waitingroom" in q["sql"] and "INSERT" not in q["sql"]
    ]


def test_a_free_slot_is_seen_and_the_fan_is_admitted_at_once():
    concert = room_of(2)
    assert line_up(concert).status == "active"
    assert line_up(concert).status == "active"
    assert line_up(concert).status == "waiting"


def test_a_turn_that_lapsed_with_no_write_frees_its_slot_for_the_next_line_up():
    concert = room_of(1)
    first = line_up(concert)
    assert first.status == "active"
    # Nothing is written when a turn lapses: the next fan comes after its end.
    later = first.active_until + timedelta(seconds=1)
    assert line_up(concert, now=later).status == "active"


def test_with_redis_down_the_room_is_read_from_postgresql():
    from tests.config.test_redis_down import DOWN

    concert = room_of(1)
    with override_settings(CACHES=DOWN):
        assert line_up(concert).status == "active"
        with CaptureQueriesContext(connection) as queries:
            second = line_up(concert)
        assert second.status == "waiting"
        # Redis did not answer the count: the admission's own check asked PostgreSQL.
        assert [q for q in queries if "anyone_waiting" in q["sql"]]
