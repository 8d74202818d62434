"""The admission reads the line along its waiting-order index, however many fans
were admitted before (docs/performance.md, round six).

By FIFO every fan admitted or gone is earlier in line than every fan still waiting,
which PostgreSQL's statistics cannot know. Without a hint, the planner read the line
from the concert's first token (by primary key, or sequentially) and filtered out
every fan admitted so far: a cost that grew with the sale, paid after every payment
in a busy room. Each test's control is the same statement without the hint. The sale is the
`sale_under_way` fixture (tests/queueing/conftest.py).
"""

import pytest
from django.db import connection
from django.utils import timezone

from queueing import selectors, services

pytestmark = pytest.mark.django_db


def plan(sql: str, params) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def statement_of(call, needle: str) -> tuple[str, list]:
    """The SQL (with %s) and parameters of the statement `call` sends containing `needle`."""
    sent = []

    def wrapper(execute, sql, params, many, context):
        if needle in sql:
            sent.append((sql, list(params)))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        call()
    assert sent, needle
    return sent[0]


def without_hint(sql: str, params: list) -> tuple[str, list]:
    for alias in ("t", "q"):
        hint = selectors.WAITING_ORDER_HINT.format(t=alias)
        if hint in sql:
            index = sql[: sql.index(hint)].count("%s")
            return sql.replace(hint + " AND ", "", 1), params[:index] + params[index + 1 :]
    raise AssertionError("no hint in " + sql)


def test_the_admission_takes_the_head_of_the_line_from_its_index(sale_under_way):
    sql, params = statement_of(
        lambda: services._waiting_head(
            concert_id=sale_under_way.pk, cutoff=timezone.now(), limit=1
        ),
        "ORDER BY t.concert_id, t.id",
    )
    assert "queue_waiting_order" in plan(sql, params)
    # Control: without the hint, the planner walks past the 20,000 admitted fans.
    bare_sql, bare_params = without_hint(sql, params)
    assert "queue_waiting_order" not in plan(bare_sql, bare_params)


def test_the_admission_check_asks_the_index_whether_anyone_waits(sale_under_way):
    sql, params = statement_of(
        lambda: selectors.waiting_room_with_active(
            concert_id=sale_under_way.pk, now=timezone.now()
        ),
        "anyone_waiting",
    )
    assert "queue_waiting_order" in plan(sql, params)
    bare_sql, bare_params = without_hint(sql, params)
    assert "queue_waiting_order" not in plan(bare_sql, bare_params)


def test_the_head_of_the_line_is_still_first_come_first_served(sale_under_way):
    waiting = list(
        sale_under_way.queue_tokens.filter(status="waiting")
        .order_by("id")
        .values_list("id", flat=True)[:5]
    )
    rows = services._waiting_head(concert_id=sale_under_way.pk, cutoff=timezone.now(), limit=5)
    assert [row[0] for row in rows] == waiting
