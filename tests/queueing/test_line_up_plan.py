"""PostgreSQL plans the line-up's statement once per connection, not once per fan
(docs/performance.md, round nine).

A prepared statement is planned for each call's parameters five times; then
PostgreSQL caches one generic plan, unless the custom plans look cheaper. A
parameter that switches part of a statement off (`CASE WHEN NOT $5 THEN 0 ELSE
(SELECT COUNT(*) ...)`) makes every custom plan look cheaper, since each folds that
part away, so the line-up's statement was planned again for every fan: 0.15 ms of
its 0.27 ms in PostgreSQL. The count is now in the text or not. The control runs
the old shape, a count switched off by a parameter, and is planned on every call.
The admission check is held to the same rule, with its plans checked in
tests/queueing/test_admission_plans.py.
"""

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from queueing import selectors, services
from queueing.models import WaitingRoom
from tests.factories import ConcertFactory, UserFactory

pytestmark = pytest.mark.django_db

CALLS = 12  # psycopg prepares on the 6th call; PostgreSQL then plans 5 more times


def plans_of(needle: str) -> tuple[int, int]:
    """(generic, custom) plans made for this connection's prepared statement with `needle`."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE %s",
            [f"%{needle}%"],
        )
        rows = cursor.fetchall()
    assert len(rows) == 1, rows
    return rows[0]


@pytest.fixture(autouse=True)
def _prepared_statements():
    if settings.DATABASES["default"].get("OPTIONS", {}).get("prepare_threshold") is None:
        pytest.fail("statements are not prepared (DB_PREPARED_STATEMENTS=0)")


@pytest.mark.django_db(transaction=True)
def test_the_line_up_statement_is_planned_once_then_its_plan_is_kept(sale_under_way):
    """The sale-day line-up, in a sale well under way (50,000 tokens: a count is
    worth folding away): its statement commits by itself and the mirror counts the
    turns, so the statement has no count (it had one, switched off)."""
    with connection.cursor() as cursor:  # the fixture made its fans by SQL
        cursor.execute("SELECT setval('auth_user_id_seq', (SELECT max(id) FROM auth_user))")
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=0)
    now = timezone.now()
    for _ in range(CALLS):
        services.queue_token_issue(user=UserFactory(), concert_id=concert.id, now=now)
    generic, custom = plans_of("INSERT INTO queueing_queuetoken")
    assert custom == 5
    assert generic == CALLS - 5 - 5


@pytest.mark.django_db(transaction=True)
def test_the_line_up_by_api_key_is_planned_once_then_its_plan_is_kept(sale_under_way):
    """The fast lane's line-up, which authenticates the fan's API token in the same
    statement (a text of its own): planned five times, then its cached plan."""
    from rest_framework.authtoken.models import Token

    with connection.cursor() as cursor:  # the fixture made its fans by SQL
        cursor.execute("SELECT setval('auth_user_id_seq', (SELECT max(id) FROM auth_user))")
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=0)
    keys = [Token.objects.create(user=UserFactory()).key for _ in range(CALLS)]
    now = timezone.now()
    for key in keys:
        token, created = services.queue_token_issue_by_api_key(
            api_key=key, concert_id=concert.id, now=now
        )
        assert created
    generic, custom = plans_of("authtoken_token t")
    assert custom == 5
    assert generic == CALLS - 5 - 5


def test_control_a_count_switched_off_by_a_parameter_is_planned_on_every_call(sale_under_way):
    with connection.cursor() as cursor:
        for _ in range(CALLS):
            cursor.execute(
                "SELECT CASE WHEN NOT %s THEN 0 ELSE (SELECT COUNT(*) FROM queueing_queuetoken a"
                " WHERE a.concert_id = %s AND a.status = 'active' AND a.active_until > %s) END"
                " AS switched_count",
                [False, sale_under_way.pk, timezone.now()],
            )
            cursor.fetchone()
    generic, custom = plans_of("switched_count")
    assert generic == 0
    assert custom == CALLS - 5


def test_the_after_commit_admission_check_is_planned_once_too(sale_under_way):
    """The check that runs after every freed slot (a payment's turn end). Its
    variant with the turns' count (beat's runs, Redis down) may still be planned per
    call, as PostgreSQL judges by the clock it is given; both variants' plans read
    the waiting-order index (tests/queueing/test_admission_plans.py)."""
    for _ in range(CALLS):
        selectors.waiting_room_with_active(
            concert_id=sale_under_way.pk, now=timezone.now(), count_active=False
        )
    generic, custom = plans_of("anyone_waiting")
    assert (generic, custom) == (CALLS - 5 - 5, 5)
