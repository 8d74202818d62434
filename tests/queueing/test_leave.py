"""A fan's leave by the token's secret (queueing.services.queue_leave), the API's and
the page's: one statement on PostgreSQL, deciding from the token under its lock. (An
admitted fan's leave refilling the slot, and a fan leaving the line running no
admission: test_services, for both ways of leaving.)"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from queueing import mirror, selectors, services
from queueing.exceptions import QueueTokenInvalid, QueueTokenUnknown
from queueing.models import QueueToken, new_token_key
from tests.factories import UserFactory
from tests.queueing.conftest import counted, line_up, set_capacity

pytestmark = pytest.mark.django_db
Status = QueueToken.Status


def leave(token, now, *, user_id=None):
    services.queue_leave(key=token.key, user_id=user_id or token.user_id, now=now)
    token.refresh_from_db()


def test_a_waiting_fan_leaves_in_one_statement_and_everyone_behind_moves_up(concert, now):
    set_capacity(concert, 0)
    _, second, third = line_up(concert, 3, now)
    with CaptureQueriesContext(connection) as queries:
        services.queue_leave(key=second.key, user_id=second.user_id, now=now)
    assert len(queries) == 1
    second.refresh_from_db()
    assert (second.status, second.end_reason, second.ended_at) == (Status.LEFT, "left", now)
    assert counted(concert) == 2
    assert selectors.queue_position(token=third) == 2


def test_another_fans_token_is_refused_and_left_as_it_was(concert, now):
    set_capacity(concert, 0)
    (token,) = line_up(concert, 1, now)
    with pytest.raises(QueueTokenInvalid):
        leave(token, now, user_id=UserFactory().pk)
    assert token.status == Status.WAITING
    assert counted(concert) == 1


@pytest.mark.parametrize("key", ["", "not a token", "x" * 65, new_token_key()])
def test_a_malformed_or_unknown_secret_is_not_found(key, now):
    with pytest.raises(QueueTokenUnknown):
        services.queue_leave(key=key, user_id=UserFactory().pk, now=now)


def test_leaving_twice_changes_nothing_the_second_time(concert, now):
    set_capacity(concert, 0)
    (token,) = line_up(concert, 1, now)
    leave(token, now)
    ended_at = token.ended_at
    leave(token, now.replace(year=now.year + 1))
    assert (token.status, token.ended_at) == (Status.LEFT, ended_at)
    assert counted(concert) == 0  # counted out once


def test_the_mirror_says_the_fan_left_once_the_leave_commits(
    concert, now, django_capture_on_commit_callbacks
):
    set_capacity(concert, 0)
    with django_capture_on_commit_callbacks(execute=True):
        first, second = line_up(concert, 2, now)  # mirrored as they commit
    assert mirror.read(key=second.key, now=now, presence=False).position_at_read == 2
    with django_capture_on_commit_callbacks(execute=True):
        leave(first, now)
    assert mirror.read(key=first.key, now=now, presence=False).status == Status.LEFT
    assert mirror.read(key=second.key, now=now, presence=False).position_at_read == 1
