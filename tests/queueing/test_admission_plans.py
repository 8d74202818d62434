"""The admission reads the line along its waiting-order index, however many fans
were admitted before (docs/performance.md, round six).

By FIFO every fan admitted or gone is earlier in line than every fan still waiting,
which PostgreSQL's statistics cannot know. Without a hint, the planner read the line
from the concert's first token (by primary key, or sequentially) and filtered out
every fan admitted so far: a cost that grew with the sale, paid after every payment
in a busy room. Each test's control is the same statement without the hint. The sale is
the `sale_under_way` fixture (tests/queueing/conftest.py).

Both the plan made for a call's parameters and the plan PostgreSQL caches for the
prepared statement after five calls (its generic plan) are checked: with the concert
a parameter, the admission check switched to a cached plan that read the line from
its start (round nine); the concert is now written into the text
(selectors.waiting_line).
"""

import re

import pytest
from django.utils import timezone

from queueing import selectors, services
from tests.plans import generic_plan, plan, statement_of

pytestmark = pytest.mark.django_db


HINT = re.compile(r"\((\w+)\.concert_id, \1\.id\) > \(\d+, 0\) AND ")


def without_hint(sql: str) -> str:
    assert HINT.search(sql), "no hint in " + sql
    return HINT.sub("", sql, count=1)


def assert_on_the_index_with_a_control(sql: str, params) -> None:
    for planned in (plan, generic_plan):
        assert "queue_waiting_order" in planned(sql, params), planned.__name__
        # Control: without the hint, the planner walks past the 20,000 admitted fans.
        assert "queue_waiting_order" not in planned(without_hint(sql), params), planned.__name__


def test_the_admission_takes_the_head_of_the_line_from_its_index(sale_under_way):
    sql, params = statement_of(
        lambda: services._waiting_head(
            concert_id=sale_under_way.pk, cutoff=timezone.now(), limit=1
        ),
        "ORDER BY t.concert_id, t.id",
    )
    assert_on_the_index_with_a_control(sql, params)


@pytest.mark.parametrize("count_active", [True, False])
def test_the_admission_check_asks_the_index_whether_anyone_waits(sale_under_way, count_active):
    sql, params = statement_of(
        lambda: selectors.waiting_room_with_active(
            concert_id=sale_under_way.pk, now=timezone.now(), count_active=count_active
        ),
        "anyone_waiting",
    )
    assert_on_the_index_with_a_control(sql, params)


def test_the_head_of_the_line_is_still_first_come_first_served(sale_under_way):
    waiting = list(
        sale_under_way.queue_tokens.filter(status="waiting")
        .order_by("id")
        .values_list("id", flat=True)[:5]
    )
    rows = services._waiting_head(concert_id=sale_under_way.pk, cutoff=timezone.now(), limit=5)
    assert [row[0] for row in rows] == waiting
